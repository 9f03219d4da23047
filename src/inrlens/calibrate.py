"""Calibration of a study's test-time settings against the paper's no-freeze PSNR.

The freeze study's findings compare like with like only when its fits sit in the paper's PSNR regime: the
no-freeze fits (every layer starts from the cohort and trains) should land near the paper's no-freeze column
(``inrlens.stats.PAPER_NO_FREEZE_DB``). A reduced study (smaller images, widths, step counts) moves that
baseline, so its test-time settings are chosen by measuring it. This module measures exactly that and nothing
else: for candidate widths, learning rates and step counts it trains the cohorts of the sweep and runs the
no-freeze fits of a few test images per target, and tables each candidate's mean PSNR beside the paper's band.
Only the baseline is calibrated; the freeze-k fits and the findings are never looked at.

How it runs (in this process, one fit stack at a time, with the sweep's own plan and job functions, so that the
split, the FFMLP σ, the learning-rate rules and the keys are those of ``inrlens sweep``):

* per (backbone, width): one sweep plan with depths = ["none"], the test-time lr of the candidate, and
  ``steps`` = the largest candidate step count, logging the PSNR at every step; cohorts are trained once per
  (source, backbone, width) into ``OUT/runs/<backbone>-w<width>/cohorts`` and reused by every lr;
* the PSNR of a shorter step count s is read from the same fit's training curve after s updates (the
  unclamped output, which is at most the clamped PSNR the sweep reports; the difference is small), so the step
  candidates cost nothing extra; the largest step count uses the fit's final, clamped test PSNR;
* rows go to ``OUT/runs/<backbone>-w<width>/results/*.jsonl`` keyed like a sweep's, so a rerun skips finished
  fits and a wider grid only adds what is new.

Outputs: ``OUT/calibration.json`` (every unit's PSNR and the table) and ``OUT/calibration.md``. A candidate is
marked inside when its mean no-freeze PSNR (over every source's cohort × test images × seeds of the target) is
within ``inrlens.stats.BAND_TOL_DB`` (3 dB) of the paper's values, as the report's regime check says.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import stats as S
from .rules import backbone_spec, lr_for, mean_std


@dataclass(frozen=True)
class Candidate:
    """One test-time setting of one backbone: hidden width, learning rate, steps."""

    backbone: str
    width: int
    lr: float
    steps: int

    @property
    def label(self) -> str:
        return f"width {self.width}, lr {self.lr:g}, {self.steps} steps"


def grid(spec: Any, backbones: Sequence[str] = (), widths: Sequence[int] = (), lrs: Sequence[float] = (),
         steps: Sequence[int] = ()) -> list[Candidate]:
    """Candidates per backbone: widths × lrs × steps, each list defaulting to the backbone's own setting in
    ``spec`` (its ``per_backbone`` entry applied). Lists are sorted and de-duplicated; bad values are one-line
    ValueErrors."""
    out = []
    for name, vals, ok in (("widths", widths, lambda v: isinstance(v, int) and v >= 1),
                           ("steps", steps, lambda v: isinstance(v, int) and v >= 1),
                           ("lrs", lrs, lambda v: isinstance(v, (int, float)) and math.isfinite(v) and v > 0)):
        bad = [v for v in vals if isinstance(v, bool) or not ok(v)]
        if bad:
            raise ValueError(f"--{name.rstrip('s') if name != 'steps' else 'steps'}: {bad[0]!r} is not a positive "
                             f"{'number' if name == 'lrs' else 'integer'}")
    for b in backbones or spec.backbones:
        if b not in spec.backbones:
            raise ValueError(f"--backbones: {b!r} is not swept by this preset ({', '.join(spec.backbones)})")
        eff = backbone_spec(spec, b)
        for w in sorted(set(widths or (eff.net.width,))):
            for lr in sorted(set(float(x) for x in (lrs or (lr_for("transfer", b, eff.train.lr),)))):
                for s in sorted(set(steps or (eff.train.steps,))):
                    out.append(Candidate(b, int(w), lr, int(s)))
    return out


def candidate_spec(spec: Any, backbone: str, width: int, lr: float, steps: int) -> Any:
    """The single-backbone, no-freeze sweep that measures a candidate: ``spec``'s settings for ``backbone``
    with the width (and, where the spec ties them, the FFMLP features m = width), test-time lr and steps
    replaced, the PSNR logged at every step."""
    eff = backbone_spec(spec, backbone)
    ff = width if eff.net.ff_features == eff.net.width else eff.net.ff_features
    net = replace(eff.net, width=int(width), ff_features=int(ff))
    train = replace(eff.train, steps=int(steps), lr=float(lr), log_every=1)
    return replace(eff, backbones=(backbone,), depths=("none",), net=net, train=train, per_backbone=None)


def measure(spec: Any, candidates: Sequence[Candidate], out: str | Path, threads: int = 1, device: str = "cpu",
            log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Train the cohorts and run the no-freeze fits the candidates need; returns one unit per (candidate,
    source, target, test image, seed): {backbone, width, lr, steps, source, target, image, seed, psnr, exact,
    fit_seconds}. ``exact`` is False where the PSNR was read from a longer fit's curve (see the module)."""
    from .store import read_rows
    from .sweep import chunk_fits, make_plan, run_fits_job, train_cohort_job

    out = Path(out)
    groups: dict[tuple[str, int, float], list[int]] = {}
    for c in candidates:
        groups.setdefault((c.backbone, c.width, c.lr), []).append(c.steps)
    units: list[dict[str, Any]] = []
    for i, ((b, w, lr), step_list) in enumerate(groups.items()):
        S_max = max(step_list)
        cspec = candidate_spec(spec, b, w, lr, S_max)
        run = out / "runs" / f"{b}-w{w}"
        plan = make_plan(cspec, run)
        t0 = time.perf_counter()
        for co in plan.cohorts:
            train_cohort_job(co, str(run / "results"), threads, device)
        t1 = time.perf_counter()
        run_fits_job(chunk_fits(plan.fits, None, cspec), str(run / "results" / f"fits-lr{lr:g}-s{S_max}.jsonl"), cspec,
                     threads, device)
        keys = {f.key: f for f in plan.fits}
        rows = {r["key"]: r for r in read_rows(run / "results") if r.get("kind") == "fit" and r.get("key") in keys}
        log(f"calibrate [{i + 1}/{len(groups)}] {b} width {w} lr {lr:g}: {len(plan.cohorts)} cohort(s) {t1 - t0:.0f} s, "
            f"{len(rows)} no-freeze fits of {S_max} steps {time.perf_counter() - t1:.0f} s")
        for key, f in keys.items():
            r = rows.get(key)
            if r is None:
                continue
            ok = r.get("status", "ok") == "ok"
            curve = dict(zip(r.get("curve_steps") or [], r.get("curve") or []))
            for s in step_list:
                if s == S_max:
                    p, exact = r.get("psnr"), True
                else:
                    p, exact = curve.get(s), False
                units.append({"backbone": b, "width": w, "lr": lr, "steps": s, "source": f.source, "target": f.target,
                              "image": f.image, "seed": f.seed, "psnr": float(p) if ok and p is not None else math.nan,
                              "exact": exact, "fit_seconds": r.get("fit_seconds")})
    return units


def table(units: Iterable[Mapping[str, Any]], analogues: Mapping[str, str] | None = None,
          tol: float = S.BAND_TOL_DB) -> list[dict[str, Any]]:
    """One row per (backbone, width, lr, steps, target): mean and std (ddof = 1) of the finite PSNRs over
    sources × images × seeds, n, the paper dataset and band (:func:`inrlens.stats.paper_band` with
    ``analogues``), the distance to the band widened by ``tol`` (0 inside) and ``inside``: True inside, False
    outside, None without a band. Rows in the order the candidates first appear."""
    acc: dict[tuple, list[float]] = {}
    exact: dict[tuple, bool] = {}
    for u in units:
        k = (u["backbone"], int(u["width"]), float(u["lr"]), int(u["steps"]), u["target"])
        acc.setdefault(k, []).append(float(u["psnr"]))
        exact[k] = exact.get(k, True) and bool(u.get("exact", True))
    rows = []
    for k, vals in acc.items():
        b, w, lr, s, t = k
        m, sd = mean_std(vals)
        band = S.paper_band(b, t, analogues)
        dist = S.band_distance(m, band, tol)
        rows.append({"backbone": b, "width": w, "lr": lr, "steps": s, "target": t, "paper_dataset": S.paper_name(t, analogues),
                     "mean": m, "std": sd, "n": sum(math.isfinite(v) for v in vals), "paper": list(band) if band else None,
                     "distance": dist, "inside": None if band is None or not math.isfinite(m) else dist == 0.0,
                     "flag": S.regime_flag(m, band, tol), "exact": exact[k]})
    return rows


def best(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per backbone, the candidate closest to the paper: most targets inside, then the smallest summed distance
    outside the widened bands, then the smallest summed distance to the bands' centres, then the cheapest
    (width² · steps). {backbone: {width, lr, steps, inside, targets, distance}}."""
    per: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        per.setdefault((r["backbone"], r["width"], r["lr"], r["steps"]), []).append(r)
    out: dict[str, dict[str, Any]] = {}
    for (b, w, lr, s), rs in per.items():
        banded = [r for r in rs if r["inside"] is not None]
        centre = sum(abs(r["mean"] - (r["paper"][0] + r["paper"][1]) / 2) for r in banded)
        score = (-sum(bool(r["inside"]) for r in banded), sum(r["distance"] for r in banded), round(centre, 6), w * w * s)
        if b not in out or score < out[b]["_score"]:
            out[b] = {"width": w, "lr": lr, "steps": s, "inside": -score[0], "targets": len(banded),
                      "distance": score[1], "_score": score}
    for v in out.values():
        v.pop("_score")
    return out


def _band(p: Sequence[float] | None) -> str:
    if not p:
        return "—"
    return f"{p[0]:g}" if p[0] == p[1] else f"{p[0]:g}–{p[1]:g}"


def markdown(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any] | None = None, tol: float = S.BAND_TOL_DB) -> str:
    """calibration.md: per backbone, one line per candidate and one column per target (mean ± std, ✓ inside the
    band ±tol, else the distance in dB), the paper band in the header, and the closest candidate."""
    md = ["# inrlens calibration: no-freeze PSNR vs the paper's baseline", ""]
    for k, v in (meta or {}).items():
        md.append(f"- {k}: `{v}`")
    md += ["", f"✓ = mean within ±{tol:g} dB of the paper's no-freeze values; otherwise the distance (dB) to that widened "
           "band, − below, + above. Mean ± sample std (ddof = 1) over every source's cohort × test images × seeds. "
           "* = read from the training curve of a longer fit (unclamped output, ≤ the clamped PSNR the sweep reports).", ""]
    picks = best(rows)
    for b in dict.fromkeys(r["backbone"] for r in rows):
        rs = [r for r in rows if r["backbone"] == b]
        targets = list(dict.fromkeys(r["target"] for r in rs))
        heads = []
        for t in targets:
            r0 = next(r for r in rs if r["target"] == t)
            pd = r0["paper_dataset"]
            heads.append(f"{t if pd in (None, t.lower()) else f'{t} (as {pd})'}, paper {_band(r0['paper'])}")
        md += [f"## {b}", "", "| width | lr | steps | " + " | ".join(heads) + " | inside |",
               "|---:|---:|---:|" + "---|" * len(targets) + "---:|"]
        cands = list(dict.fromkeys((r["width"], r["lr"], r["steps"]) for r in rs))
        for w, lr, s in cands:
            cells, n_in, n_b = [], 0, 0
            for t in targets:
                r = next((x for x in rs if (x["width"], x["lr"], x["steps"], x["target"]) == (w, lr, s, t)), None)
                if r is None or not math.isfinite(r["mean"]):
                    cells.append("n/a")
                    continue
                d = r["distance"]
                mark = "✓" if r["inside"] else ("" if r["inside"] is None else
                                                 f"{'+' if r['mean'] > r['paper'][1] else '−'}{d:.{1 if d >= 0.1 else 2}f}")
                n_in += bool(r["inside"])
                n_b += r["inside"] is not None
                cells.append(f"{r['mean']:.1f} ± {r['std']:.1f}{'' if r['exact'] else '*'} {mark}".rstrip())
            md.append(f"| {w} | {lr:g} | {s} | " + " | ".join(cells) + f" | {n_in}/{n_b} |")
        p = picks.get(b)
        if p:
            md += ["", f"Closest: width {p['width']}, lr {p['lr']:g}, {p['steps']} steps — {p['inside']}/{p['targets']} "
                   f"targets inside, {p['distance']:.1f} dB outside in all. As a preset entry: "
                   f"`per_backbone = {{ {b} = {{ width = {p['width']}, lr = {p['lr']:g}, steps = {p['steps']} }} }}`"]
        md.append("")
    return "\n".join(md)


def calibrate(spec: Any, out: str | Path, analogues: Mapping[str, str] | None = None, backbones: Sequence[str] = (),
              widths: Sequence[int] = (), lrs: Sequence[float] = (), steps: Sequence[int] = (), threads: int = 1,
              device: str = "cpu", meta: Mapping[str, Any] | None = None,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure the candidates (:func:`grid`, :func:`measure`), table them (:func:`table`) and write
    OUT/calibration.json and OUT/calibration.md. The caller owns OUT (``inrlens calibrate`` prepares it as a run
    folder). Returns {"units", "table", "best", "seconds"}."""
    from .store import atomic_write_json, atomic_write_text

    analogues = S.check_analogues(analogues)
    cands = grid(spec, backbones, widths, lrs, steps)
    t0 = time.perf_counter()
    units = measure(spec, cands, out, threads, device, log)
    rows = table(units, analogues)
    seconds = time.perf_counter() - t0
    meta = {**(meta or {}), "analogues": ", ".join(f"{k} → {v}" for k, v in analogues.items()) or "none",
            "wall time": f"{seconds:.0f} s"}
    res = {"meta": meta, "candidates": [c.__dict__ for c in cands], "units": units, "table": rows, "best": best(rows),
           "seconds": seconds}
    atomic_write_json(Path(out) / "calibration.json", res, indent=1)
    atomic_write_text(Path(out) / "calibration.md", markdown(rows, meta))
    return res


__all__ = ["Candidate", "grid", "candidate_spec", "measure", "table", "best", "markdown", "calibrate"]
