"""Tables of the freeze study, computed from result rows alone (never from models).

Inputs are the JSONL rows a sweep writes (``kind = "fit"`` per finished fit, ``kind = "cohort"`` per cohort with
its stable-rank profile). Statistics are mean ± sample std (:func:`inrlens.rules.mean_std`: ddof = 1, 0 for one
value) over test images × seeds of the rows with ``status == "ok"``; a diverged fit is counted in ``n_bad`` and
left out of the means. Intervals are 95 % Student-t intervals of *paired* differences: two regimes of one
source → target pair are compared on the (test image, seed) units both have (:mod:`inrlens.stats`).

* Table 1: per backbone, source → target: no-freeze PSNR, the best freeze depth k and its PSNR (the better of
  the two in bold), the paired gain of the best k over no freeze with its interval and n, the best-k set (the
  depths not significantly worse than the best), the random-init PSNR, and, for each of the four stable-rank
  predictors of the source cohort (:data:`PREDICTORS`: argmax sr(W), argmax sr(H) uncentred, argmax sr(H)
  centred, argmax Δsr), whether its depth is inside the best-k set (✓), significantly worse (✗) or undecided
  (?: every depth is inside the set); "—" where the cohort row predates the predictor. Per backbone, the mean
  over pairs with a t interval of the gain across pairs.
* Regime check: per (backbone, target), this run's no-freeze PSNR beside the paper's band, flagged in words.
* Predictions: per (source, backbone), the four predicted depths beside the empirical best depth, argmax over
  k of the target-averaged mean PSNR, and its best-k set over all targets; the caption counts, per predictor,
  the configurations where it agrees, is significantly worse and is undecided (:func:`predictor_counts`).
* Per-combination tables: k, sr(W_k), sr(H_k), centred sr(H_k), Δsr_k, PSNR, SSIM, LPIPS for every regime of
  one source → target.
* Noise-trained vs image-trained encoders (:func:`noise_table`, only when a source is noise): per (backbone,
  target) and each (noise source, image source), the paired difference noise − image of the no-freeze PSNR and
  of the best-k PSNR (each source at its own best k), matched on (test image, seed), with its interval.

Any number of backbones: every table groups them in registry order (:func:`inrlens.backbones.backbone_order`);
a backbone a run lacks is simply absent. A *noise source* is a source whose encoder was trained on a
``noise:…`` dataset: its cohort row records ``source_path`` (the dataset's path or ``noise:``/``sample:`` spec),
a sweep folder's ``run.json`` names its datasets (:func:`sweep_noise_sources`), or the caller names it
(``summarise(..., noise=[...])``). Table 1 marks it "(noise)".
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .. import stats as S
from ..rules import mean_std

Key = tuple[str, str, str, str]  # (backbone, source, target, depth tag)

PREDICTORS: tuple[tuple[str, str, str], ...] = (
    ("w", "k_w", "argmax sr(W)"),
    ("h", "k_h", "argmax sr(H)"),
    ("hc", "k_h_centred", "argmax sr(H) centred"),
    ("d", "k_delta", "argmax Δsr"),
)
"""The freeze-depth predictors of a cohort row: (tag, the row's depth field, label). The summary holds the
depth under the same field and its status under ``<tag>_status`` ('agrees', 'disagrees', 'undecided', or
'n/a' where the cohort row lacks the field, e.g. rows written before the field existed)."""
PROFILES: tuple[str, ...] = ("sr_w", "sr_h", "sr_h_centred", "sr_w_init", "delta_sr")
"""Per-layer profiles a cohort row may hold (the last three are absent from older rows)."""
STATUSES = ("agrees", "disagrees", "undecided")


def depth_tag(row: dict[str, Any]) -> str:
    """'none', 'random' or the freeze depth as a string."""
    if row.get("regime") == "random":
        return "random"
    return "none" if row.get("freeze") is None else str(int(row["freeze"]))


def split_rows(rows: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[tuple[str, str], dict[str, Any]]]:
    """(fit rows, first one per key) and {(source, backbone): cohort row (the last one written)}."""
    fits, seen, cohorts = [], set(), {}
    for r in rows:
        kind = r.get("kind", "fit")
        if kind == "cohort":
            cohorts[(r["source"], r["backbone"])] = r
        elif kind == "fit" and r.get("key") not in seen:
            seen.add(r.get("key"))
            fits.append(r)
    return fits, cohorts


def groups(fits: Sequence[dict[str, Any]]) -> dict[Key, list[dict[str, Any]]]:
    """Fit rows per (backbone, source, target, depth), every status. Random-init rows (no source) are listed
    under every source that has transfer rows for that (backbone, target), so each source → target block is
    complete."""
    out: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for r in fits:
        out[(r["backbone"], r.get("source") or "", r["target"], depth_tag(r))].append(r)
    pairs = {(b, s, t) for (b, s, t, d) in out if s}
    for (b, s, t) in pairs:
        if (b, "", t, "random") in out:
            out[(b, s, t, "random")] = out[(b, "", t, "random")]
    return {k: v for k, v in out.items() if k[1]}


def aggregate(fits: Sequence[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """Statistics per (backbone, source, target, depth) (see :func:`groups`): n, n_bad and mean ± std of PSNR,
    SSIM and LPIPS."""
    out: dict[Key, dict[str, Any]] = {}
    for k, rs in groups(fits).items():
        ok = [r for r in rs if r.get("status", "ok") == "ok"]
        st: dict[str, Any] = {"n": len(ok), "n_bad": len(rs) - len(ok)}
        for m in ("psnr", "ssim", "lpips"):
            st[m], st[m + "_std"] = mean_std([r.get(m) for r in ok])
        out[k] = st
    return out


def _unit_key(u: tuple) -> str:
    return "|".join(str(x) for x in u)


def units(fits: Sequence[dict[str, Any]]) -> dict[Key, dict[str, float]]:
    """Per (backbone, source, target, depth): {"image|seed": PSNR} of the ok fits — the units that paired
    comparisons match on (a unit that repeats keeps its first row)."""
    return {k: {_unit_key(u): v for u, v in S.unit_values(rs).items()} for k, rs in groups(fits).items()}


def backbone_order(name: str) -> int:
    """Registry position of a backbone (the grouping order of every table); unknown names last."""
    from ..backbones import backbone_order as order  # imported here: the registry pulls in torch

    return order(name)


def backbone_in(text: Any) -> str | None:
    """The registered backbone a name such as a condition ("cohort-gauss", "single_siren") contains between
    separators ('-', '_', '/', '.', space) or the name's ends (the longest such backbone name, so that a plug-in
    "my-siren" wins over "siren"); None when it names none."""
    import re

    from ..backbones import backbone_names

    t = str(text or "")
    hits = [b for b in backbone_names() if re.search(rf"(?:^|[-_/.\s]){re.escape(b)}(?:$|[-_/.\s])", t)]
    return max(hits, key=len) if hits else None


def combos(stats: dict[Key, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(backbone, source, target) triples in a stable order (backbones in registry order: siren, ffmlp, …)."""
    return sorted({k[:3] for k in stats}, key=lambda c: (backbone_order(c[0]), c[0], c[1], c[2]))


def depths_of(stats: dict[Key, dict[str, Any]], combo: tuple[str, str, str]) -> list[int]:
    return sorted(int(k[3]) for k in stats if k[:3] == combo and k[3].isdigit())


def best_k(stats: dict[Key, dict[str, Any]], combo: tuple[str, str, str]) -> int | None:
    """The freeze depth with the highest mean PSNR (first on ties); None when no depth was run."""
    ks = [k for k in depths_of(stats, combo) if not math.isnan(stats[(*combo, str(k))]["psnr"])]
    if not ks:
        return None
    return max(ks, key=lambda k: (stats[(*combo, str(k))]["psnr"], -k))


def empirical_k(stats: dict[Key, dict[str, Any]], backbone: str, source: str) -> int | None:
    """argmax over k of the mean (over targets) of the per-target mean PSNR, for one source cohort."""
    per_k: dict[int, list[float]] = defaultdict(list)
    for c in combos(stats):
        if c[0] == backbone and c[1] == source:
            for k in depths_of(stats, c):
                per_k[k].append(stats[(*c, str(k))]["psnr"])
    vals = {k: float(np.mean(v)) for k, v in per_k.items() if v and not any(math.isnan(x) for x in v)}
    if not vals:
        return None
    return max(vals, key=lambda k: (vals[k], -k))


def _unit_image(unit: str) -> str:
    """The test image of an "image|seed" unit (the group a cross-fitted depth is held out by)."""
    return unit.rsplit("|", 1)[0]


def _ci(ci: tuple[float, float, float, int]) -> dict[str, Any]:
    m, lo, hi, n = ci
    return {"mean": m, "lo": lo, "hi": hi, "n": n}


def regime_check(fits: Sequence[dict[str, Any]], analogues: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Per (backbone, target): this run's no-freeze PSNR (mean ± std, n over every source's no-freeze fits)
    beside the paper's (low, high) band for that dataset (None when the paper has none) and a flag in words
    (:func:`inrlens.stats.regime_flag`). ``analogues`` {target: paper dataset} names the paper dataset a target
    stands in for (:func:`inrlens.stats.paper_name`); ``paper_dataset`` records which one was used."""
    vals: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (b, _s, t, d), rs in groups(fits).items():
        if d == "none":
            vals[(b, t)] += [float(r["psnr"]) for r in rs if r.get("status", "ok") == "ok" and S._finite(r.get("psnr"))]
    out = []
    for (b, t) in sorted(vals, key=lambda x: (backbone_order(x[0]), x[0], x[1])):
        m, sd = mean_std(vals[(b, t)])
        band = S.paper_band(b, t, analogues)
        out.append({"backbone": b, "target": t, "mean": m, "std": sd, "n": len(vals[(b, t)]),
                    "paper": list(band) if band else None, "paper_dataset": S.paper_name(t, analogues),
                    "flag": S.regime_flag(m, band)})
    return out


NOISE_PREFIX = "noise:"
"""How a dataset path names a noise source (docs/datasets.md)."""


def is_noise_path(path: Any) -> bool:
    """Whether a dataset path is a ``noise:…`` spec."""
    return isinstance(path, str) and path.strip().lower().startswith(NOISE_PREFIX)


def noise_sources(rows: Iterable[dict[str, Any]], names: Iterable[str] = ()) -> list[str]:
    """Sources whose encoders were trained on noise, sorted: those whose rows record a ``source_path`` that is a
    ``noise:`` spec (cohort rows of a sweep), plus ``names``."""
    out = {str(n) for n in names}
    for r in rows:
        if r.get("source") and is_noise_path(r.get("source_path")):
            out.add(str(r["source"]))
    return sorted(out)


def sweep_noise_sources(sweep_dir: Any) -> list[str]:
    """Dataset names whose path is a ``noise:`` spec in a sweep folder's ``run.json`` (``spec.data``: NAME=PATH
    entries); [] when the folder has no readable run.json."""
    import json
    from pathlib import Path

    p = Path(sweep_dir) / "run.json"
    try:
        data = json.loads(p.read_text()).get("spec", {}).get("data", [])
    except (OSError, ValueError, AttributeError):
        return []
    out = []
    for item in data if isinstance(data, list) else []:
        name, sep, path = str(item).partition("=")
        if sep and is_noise_path(path):
            out.append(name.strip())
    return sorted(out)


def summarise(rows: Iterable[dict[str, Any]], analogues: dict[str, str] | None = None, noise: Iterable[str] = ()) -> dict[str, Any]:
    """Every number the tables and figures show, as one JSON-able dict.

    Besides means and stds (``stats``), it holds the per-unit PSNRs (``units``: "b|s|t|d" → {"image|seed": dB})
    that every paired interval is computed from, so the findings can be recomputed from summary.json alone.
    ``noise``: source names to treat as noise-trained besides those the rows mark (:func:`noise_sources`);
    ``noise_sources`` lists them, and ``noise_vs_image`` holds their comparisons (:func:`noise_comparison`).
    """
    rows = list(rows)
    noisy = set(noise_sources(rows, noise))
    fits, cohorts = split_rows(rows)
    stats = aggregate(fits)
    U = units(fits)
    t1, per_bb = [], defaultdict(lambda: {"none": [], "best": [], "random": [], "gain": [], "gain_crossfit": []})
    for c in combos(stats):
        b, s, t = c
        none = stats.get((*c, "none"))
        rnd = stats.get((*c, "random"))
        k = best_k(stats, c)
        co = cohorts.get((s, b))
        row = {"backbone": b, "source": s, "target": t, "noise": s in noisy, "best_k": k,
               "none": none["psnr"] if none else math.nan, "none_std": none["psnr_std"] if none else math.nan,
               "best": stats[(*c, str(k))]["psnr"] if k is not None else math.nan,
               "best_std": stats[(*c, str(k))]["psnr_std"] if k is not None else math.nan,
               "random": rnd["psnr"] if rnd else math.nan, "random_std": rnd["psnr_std"] if rnd else math.nan}
        row.update({f: (co.get(f) if co else None) for _t, f, _l in PREDICTORS})
        row["w_agrees"] = row["k_w"] is not None and row["k_w"] == k
        row["h_agrees"] = row["k_h"] is not None and row["k_h"] == k
        ks = [d for d in depths_of(stats, c) if U.get((*c, str(d)))]
        bs = S.best_set({d: U[(*c, str(d))] for d in ks}, best=k) if k is not None else {"best": None, "set": [], "diffs": {}}
        row["best_set"] = bs["set"]
        for tag, f, _l in PREDICTORS:
            row[f"{tag}_status"] = S.agreement(row[f], bs, ks)
        if k is not None and U.get((*c, "none")):
            row["gain"] = _ci(S.mean_ci(S.pair_diffs(U[(*c, str(k))], U[(*c, "none")])))
            cf = S.crossfit_gain({d: U[(*c, str(d))] for d in ks}, U[(*c, "none")], group=_unit_image)
            row["gain_crossfit"] = {f: cf[f] for f in ("mean", "lo", "hi", "n")}
            row["crossfit_picks"] = sorted(set(cf["picks"].values()))
        else:
            row["gain"] = _ci((math.nan, math.nan, math.nan, 0))
            row["gain_crossfit"], row["crossfit_picks"] = _ci((math.nan, math.nan, math.nan, 0)), []
        t1.append(row)
        for name in ("none", "best", "random"):
            if not math.isnan(row[name]):
                per_bb[b][name].append(row[name])
        for g in ("gain", "gain_crossfit"):
            if not math.isnan(row[g]["mean"]):
                per_bb[b][g].append(row[g]["mean"])
    preds = []
    for (s, b), co in sorted(cohorts.items(), key=lambda x: (backbone_order(x[0][1]), x[0][0])):
        ek = empirical_k(stats, b, s)
        per_depth: dict[int, dict[tuple[str, str], float]] = defaultdict(dict)
        for c in combos(stats):
            if c[0] == b and c[1] == s:
                for d in depths_of(stats, c):
                    per_depth[d].update({(c[2], u): v for u, v in U.get((*c, str(d)), {}).items()})
        ks = sorted(d for d in per_depth if per_depth[d])
        bs = (S.best_set({d: per_depth[d] for d in ks}, best=ek, stratum=lambda u: u[0])
              if ek is not None and per_depth.get(ek) else {"best": None, "set": [], "diffs": {}})
        p = {"source": s, "backbone": b, "noise": s in noisy, "empirical_k": ek, "w_agrees": ek is not None and co["k_w"] == ek,
             "h_agrees": ek is not None and co["k_h"] == ek, "best_set": bs["set"]}
        for tag, f, _l in PREDICTORS:
            p[f] = co.get(f)
            p[f"{tag}_status"] = S.agreement(p[f], bs, ks)
        p.update({f: co.get(f) for f in PROFILES})
        net = co.get("net")
        p.update(grid=co.get("grid"), width=net.get("width") if isinstance(net, dict) else None, cohort_psnr=co.get("psnr_mean"),
                 cohort_steps=co.get("steps_run"))
        preds.append(p)
    averages: dict[str, dict[str, Any]] = {}
    for b, d in per_bb.items():
        averages[b] = {k: float(np.mean(v)) if v else math.nan for k, v in d.items() if not k.startswith("gain")}
        averages[b]["gain"] = _ci(S.mean_ci(d["gain"]))
        averages[b]["gain_crossfit"] = _ci(S.mean_ci(d["gain_crossfit"]))
    units_s = {"|".join(k): v for k, v in U.items()}
    present = sorted({r["backbone"] for r in t1} | {b for (_s, b) in cohorts}, key=lambda b: (backbone_order(b), b))
    return {"table1": t1, "predictions": preds, "averages": averages, "regime": regime_check(fits, analogues), "level": S.LEVEL,
            "stats": {"|".join(k): v for k, v in stats.items()}, "units": units_s, "backbones": present,
            "noise_sources": sorted(noisy & ({r["source"] for r in t1} | {s for (s, _b) in cohorts})),
            "noise_vs_image": noise_comparison(t1, units_s, noisy), "n_fits": len(fits), "n_cohorts": len(cohorts)}


def gain_by_depth(summary: dict[str, Any], backbone: str, source: str | None = None) -> dict[int, tuple[float, float, float, int]]:
    """Per freeze depth k: PSNR(k) − PSNR(no freeze) of one backbone, paired per fit within each source → target
    pair (of ``source`` only, when given) and averaged over the pairs with :func:`inrlens.stats.stratified_ci`:
    {k: (mean, lo, hi, n)}."""
    U = summary.get("units", {})
    per_k: dict[int, list[Any]] = defaultdict(list)
    for r in summary.get("table1", []):
        if r["backbone"] != backbone or (source is not None and r["source"] != source):
            continue
        pre = f"{backbone}|{r['source']}|{r['target']}|"
        none = U.get(pre + "none", {})
        for key, vals in U.items():
            d = key[len(pre):] if key.startswith(pre) else ""
            if d.isdigit() and vals and none:
                per_k[int(d)].append(S.pair_diffs(vals, none))
    return {k: S.stratified_ci(per_k[k]) for k in sorted(per_k)}


def _diff_word(ci: tuple[float, float, float, int], better: str, worse: str) -> str:
    """``better`` when the interval of a difference is above 0, ``worse`` when below, else "inconclusive (n = …)"."""
    v = S.verdict(ci[1], ci[2], True, n=ci[3], unit="fits")
    return {"agrees": better, "disagrees": worse}.get(v, v)


def noise_comparison(t1: Sequence[dict[str, Any]], units: dict[str, dict[str, float]], noise: Iterable[str]) -> list[dict[str, Any]]:
    """Per (backbone, target) of Table 1 and each (noise source, image source) pair of its sources: the paired
    difference noise − image of the no-freeze PSNR and of the best-k PSNR (each source at its own best k), over
    the (test image, seed) units both have, with its 95% t interval (:func:`inrlens.stats.mean_ci`) and a word:
    'noise-trained better', 'image-trained better' or 'inconclusive (n = …)'."""
    noisy = set(noise)
    out = []
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in t1:
        by[(r["backbone"], r["target"])].append(r)
    for (b, t), rs in by.items():
        for rn in (r for r in rs if r["source"] in noisy):
            for ri in (r for r in rs if r["source"] not in noisy):
                pn, pi = f"{b}|{rn['source']}|{t}|", f"{b}|{ri['source']}|{t}|"
                none = S.mean_ci(S.pair_diffs(units.get(pn + "none", {}), units.get(pi + "none", {})))
                if rn["best_k"] is not None and ri["best_k"] is not None:
                    best = S.mean_ci(S.pair_diffs(units.get(pn + str(rn["best_k"]), {}), units.get(pi + str(ri["best_k"]), {})))
                else:
                    best = (math.nan, math.nan, math.nan, 0)
                out.append({"backbone": b, "target": t, "noise_source": rn["source"], "image_source": ri["source"],
                            "k_noise": rn["best_k"], "k_image": ri["best_k"], "none": _ci(none), "best": _ci(best),
                            "none_word": _diff_word(none, "noise-trained better", "image-trained better"),
                            "best_word": _diff_word(best, "noise-trained better", "image-trained better")})
    return out


def predictor_counts(preds: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per predictor tag (:data:`PREDICTORS`): how many configurations it agrees in, is significantly worse in
    and is undecided in, and ``n``, the configurations that have the predictor (status other than 'n/a')."""
    out = {}
    for tag, f, _l in PREDICTORS:
        st = [predictor_status(p, tag, f) for p in preds]
        out[tag] = {k: st.count(k) for k in STATUSES}
        out[tag]["n"] = sum(x != "n/a" for x in st)
    return out


def predictor_status(r: dict[str, Any], tag: str, field: str) -> str:
    """A row's status for one predictor (older summaries without ``<tag>_status`` fall back on ``<tag>_agrees``)."""
    if f"{tag}_status" in r:
        return r[f"{tag}_status"]
    if r.get(field) is None:
        return "n/a"
    return "agrees" if r.get(f"{tag}_agrees") else "disagrees"


# ------------------------------------------------------------------------------------------------ rendering
CONVENTION = ("± = sample standard deviation (ddof = 1) over test images × seeds; [lo, hi] = 95% Student-t interval of "
              "the mean paired difference, fits matched on (test image, seed); n = matched fits.")
"""The statistics convention, stated once in the report (Table 1's caption)."""


def _f(x: float, d: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"


def _pm(m: float, s: float, d: int = 2) -> str:
    return f"{_f(m, d)} ± {_f(s, d)}" if not math.isnan(m) else "n/a"


def _bold(text: str, on: bool, latex: bool) -> str:
    if not on:
        return text
    return f"\\textbf{{{text}}}" if latex else f"**{text}**"


_SYM = {"agrees": "✓", "disagrees": "✗", "undecided": "?"}


def _mark(status: str, k: int | None, latex: bool, missing: str = "n/a") -> str:
    """'k ✓' inside the best-k set, 'k ✗' significantly worse, 'k ?' undecided; ``missing`` without a k."""
    if k is None:
        return missing
    sym = _SYM.get(status, "?")
    if latex:
        sym = {"✓": "$\\checkmark$", "✗": "$\\times$"}.get(sym, sym)
    return f"{k} {sym}"


MISSING = "—"
"""Shown for a predictor or profile that a cohort row does not record (rows written before it existed)."""


def _pmark(r: dict[str, Any], tag: str, field: str, latex: bool) -> str:
    """The mark of one predictor in a Table 1 / predictions row; "—" for the newer predictors a row lacks."""
    return _mark(predictor_status(r, tag, field), r.get(field), latex, "n/a" if tag in ("w", "h") else MISSING)


def count_phrase(label: str, cnt: dict[str, int], total: int, unit: str = "configurations") -> str:
    """'argmax sr(W) agrees in a/n (significantly worse in d, undecided in u)'; says so when only some (or none)
    of the ``total`` units record the predictor. ``cnt``: one entry of :func:`predictor_counts`."""
    n = cnt["n"]
    if n == 0:
        return f"{label}: not recorded (cohort rows written before it existed)"
    of = "" if n == total else f" of the {n} {unit} whose cohort row records it"
    return (f"{label} agrees in {cnt['agrees']}/{n}{of} (significantly worse in {cnt['disagrees']}, "
            f"undecided in {cnt['undecided']})")


def _layers(values: Sequence[float] | None, d: int = 1) -> str:
    return MISSING if not values else " / ".join(_f(x, d) for x in values)


def _set(ks: Sequence[int], latex: bool) -> str:
    if not ks:
        return "n/a"
    inner = ", ".join(str(k) for k in ks)
    return f"\\{{{inner}\\}}" if latex else f"{{{inner}}}"


def _gain(g: dict[str, Any] | None) -> str:
    return "n/a" if not g else S.fmt_ci(g["mean"], g["lo"], g["hi"], g["n"])


_TEX = {"±": "$\\pm$", "×": "$\\times$", "→": "$\\to$", "_": "\\_", "✓": "$\\checkmark$", "✗": "$\\times$", "%": "\\%",
        "−": "$-$", "Δ": "$\\Delta$", "≥": "$\\geq$", ">": "$>$", "<": "$<$", "∈": "$\\in$", "–": "--", "—": "---", "²": "$^2$"}


def _esc(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def _table(header: list[str], rows: list[list[str]], latex: bool, caption: str = "", align: str | None = None) -> str:
    if latex:
        al = align or ("l" * 3 + "r" * (len(header) - 3))
        lines = ["\\begin{table}[t]", "\\centering", "\\small", f"\\begin{{tabular}}{{{al}}}", "\\toprule",
                 " & ".join(_esc(h) for h in header) + " \\\\", "\\midrule"]
        lines += [" & ".join(_esc(c) for c in r) + " \\\\" for r in rows]
        lines += ["\\bottomrule", "\\end{tabular}"]
        if caption:
            lines.append(f"\\caption{{{_esc(caption)}}}")
        lines.append("\\end{table}")
        return "\n".join(lines) + "\n"
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return ("" if not caption else f"{caption}\n\n") + "\n".join(out) + "\n"


def table1(summary: dict[str, Any], latex: bool = False) -> str:
    """Table 1: no-freeze vs best k per source → target and backbone (PSNR dB, mean ± std), the paired gain of the
    best k with its 95% interval and n, the best-k set, random init, and the stable-rank predictions' status."""
    header = ["backbone", "source → target", "no freeze", "best k", "PSNR at best k", "gain of best k (95% CI)",
              "held-out gain (95% CI)", "best-k set", "random init", *(label for _t, _f, label in PREDICTORS)]
    rows = []
    for r in summary["table1"]:
        better_k = not math.isnan(r["best"]) and (math.isnan(r["none"]) or r["best"] >= r["none"])
        none_bold = not better_k and not math.isnan(r["none"])
        rows.append([r["backbone"], f"{source_label(r)} → {r['target']}", _bold(_pm(r["none"], r["none_std"]), none_bold, latex),
                     str(r["best_k"]) if r["best_k"] is not None else "n/a", _bold(_pm(r["best"], r["best_std"]), better_k, latex),
                     _gain(r.get("gain")), _gain(r.get("gain_crossfit")), _set(r.get("best_set", []), latex),
                     _pm(r["random"], r["random_std"]),
                     *(_pmark(r, tag, f, latex) for tag, f, _l in PREDICTORS)])
    for b, a in summary["averages"].items():
        g = a.get("gain")
        gc = a.get("gain_crossfit")
        rows.append([b, "mean over pairs", _f(a["none"]), "", _f(a["best"]), _gain(g) if g else "", _gain(gc) if gc else "", "",
                     _f(a["random"]),
                     *([""] * len(PREDICTORS))])
    cnt = predictor_counts(summary["table1"])
    n = len(summary["table1"])
    counts = "; ".join(count_phrase(label, cnt[tag], n, "pairs") for tag, _f, label in PREDICTORS)
    cap = ("Table 1. Test PSNR (dB). " + CONVENTION + " Bold = better of no freeze and the best k. Gain = best k − no freeze, "
           "paired per fit (the best k is picked on these same fits, so the gain is optimistic). Held-out gain = the same, with "
           "the depth for each test image picked on the other test images' fits (no such bias; n/a with one test image). "
           "Best-k set = the depths whose "
           "paired difference to the best k is not significantly negative. Predictors of the source cohort: argmax sr(W) (the "
           "paper's k*), argmax sr(H) of the uncentred and of the centred activations, argmax Δsr = argmax (sr(W) − sr(W) at "
           "initialisation). ✓ = the predicted depth is inside the best-k set, ✗ = significantly worse than the best k, ? = "
           f"undecided (every measured depth is inside the set), {MISSING} = not recorded by the cohort row (written before "
           "the predictor existed). Mean over pairs: plain means of the pairs' values; the gain's interval there is across "
           f"pairs (n = pairs). Over the {n} pairs: {counts}." + (NOISE_NOTE if any(r.get("noise") for r in summary["table1"]) else ""))
    return _table(header, rows, latex, cap, "llrrrrrcr" + "c" * len(PREDICTORS))


NOISE_NOTE = " (noise) = a source whose cohort encoder was trained on a noise: dataset, not on images."


def source_label(r: dict[str, Any]) -> str:
    """A row's source, marked "(noise)" when its encoder was trained on noise."""
    return f"{r['source']} (noise)" if r.get("noise") else str(r["source"])


def noise_table(summary: dict[str, Any], latex: bool = False) -> str:
    """Noise-trained vs image-trained encoders (:func:`noise_comparison`): per (backbone, target, noise source,
    image source) the paired noise − image differences of the no-freeze and of the best-k PSNR; "" when the run
    has no noise source or no image source beside it."""
    rs = summary.get("noise_vs_image") or []
    if not rs:
        return ""
    header = ["backbone", "target", "noise source", "image source", "no freeze: noise − image (95% CI)", "",
              "best k (noise / image)", "best k: noise − image (95% CI)", ""]
    rows = [[r["backbone"], r["target"], r["noise_source"], r["image_source"], _gain(r["none"]), r["none_word"],
             f"{_k(r['k_noise'])} / {_k(r['k_image'])}", _gain(r["best"]), r["best_word"]] for r in rs]
    cap = ("Noise-trained vs image-trained encoders: test PSNR (dB) of fits from the noise source's encoder minus fits from "
           "the image source's encoder, paired on the same (test image, seed) of the target; best k = each source's own best "
           "depth for the target (picked on these fits). " + CONVENTION)
    return _table(header, rows, latex, cap, "llllrlcrl")


def _k(k: int | None) -> str:
    return "n/a" if k is None else str(k)


def regime_table(summary: dict[str, Any], latex: bool = False) -> str:
    """Regime check: this run's no-freeze PSNR per (backbone, target) beside the paper's band, flagged in words."""
    header = ["backbone", "target", "no-freeze PSNR (dB)", "n", "paper (dB)", "regime"]
    rows = []
    for r in summary.get("regime", []):
        p = r.get("paper")
        paper = "—" if not p else (f"{p[0]:g}" if p[0] == p[1] else f"{p[0]:g}–{p[1]:g}")
        pd = r.get("paper_dataset")
        target = r["target"] if pd in (None, str(r["target"]).lower()) else f"{r['target']} (as {pd})"
        rows.append([r["backbone"], target, _pm(r["mean"], r["std"]), str(r["n"]), paper, r["flag"]])
    cap = (f"Regime check: no-freeze test PSNR (mean ± std over every source's no-freeze fits of the target) beside the "
           f"paper's no-freeze column. Inside the band = within ±{S.BAND_TOL_DB:g} dB of the paper's values; saturated = "
           f"above {S.SATURATED_DB:g} dB (fits near lossless, depth effects compressed); failed = below {S.FAILED_DB:g} dB. "
           "(as X) = this run's stand-in for the paper's dataset X (a preset's [study] analogues). "
           "— = the paper reports no value for this target (band unknown; the paper's datasets are "
           + ", ".join(sorted({t for d in S.PAPER_NO_FREEZE_DB.values() for t in d})) + ") or for this backbone (it reports "
           + " and ".join(b.upper() for b in S.PAPER_NO_FREEZE_DB) + " only).")
    return _table(header, rows, latex, cap, "llrrrl")


def predictions_table(summary: dict[str, Any], latex: bool = False) -> str:
    """Per (source, backbone): the four predicted depths with their marks, the empirical best depth and its best-k
    set, and the per-layer profiles (sr(W), sr(H), centred sr(H), sr(W) at initialisation, Δsr); the caption counts
    each predictor's agreements."""
    header = ["source", "backbone", "k* = argmax sr(W)", "argmax sr(H)", "argmax sr(H) centred", "argmax Δsr", "empirical best k",
              "best-k set", "sr(W) per layer", "sr(H) per layer", "sr(H) centred per layer", "sr(W) at init per layer",
              "Δsr per layer"]
    rows = []
    ps = summary["predictions"]
    for p in ps:
        rows.append([source_label(p), p["backbone"], *(_pmark(p, tag, f, latex) for tag, f, _l in PREDICTORS),
                     str(p["empirical_k"]) if p["empirical_k"] is not None else "n/a", _set(p.get("best_set", []), latex),
                     *(_layers(p.get(f)) for f in PROFILES)])
    n = len(ps)
    cnt = predictor_counts(ps)
    w, *rest = [count_phrase(label, cnt[tag], n) for tag, _f, label in PREDICTORS]
    rest = [x.replace(" agrees in ", " in ", 1) for x in rest]
    cap = ("Predicted vs empirical freeze depth per (source, backbone): " + ", ".join([w, *rest]) + ". "
           "Empirical k = argmax over k of the target-averaged mean PSNR; best-k set = depths not significantly worse than it "
           "(paired per target, combined over targets, 95%); agrees = the predicted depth is inside that set. sr(H) centred = "
           "the stable rank of the activations with their mean over the grid subtracted; Δsr = sr(W) − sr(W) of the same "
           f"encoder at initialisation (drawn again from the cohort seed). {MISSING} = not recorded by the cohort row.")
    return _table(header, rows, latex, cap, "ll" + "c" * (len(PREDICTORS) + 2) + "l" * len(PROFILES))


def _at(p: dict[str, Any] | None, field: str, d: str) -> str:
    """Layer d's value of a profile for a per-combination row: "" for no freeze / random init or without a cohort
    row, "—" when the cohort row lacks the profile."""
    if not p or not d.isdigit():
        return ""
    vals = p.get(field)
    if not vals:
        return MISSING
    return _f(vals[int(d)]) if int(d) < len(vals) else ""


def combo_tables(summary: dict[str, Any], latex: bool = False) -> str:
    """One table per (backbone, source, target): k, sr(W), sr(H), centred sr(H), Δsr, PSNR, SSIM, LPIPS (mean ±
    std), n and the paired difference to no freeze with its 95% interval."""
    stats = summary["stats"]
    U = summary.get("units", {})
    preds = {(p["source"], p["backbone"]): p for p in summary["predictions"]}
    by_combo: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for key in stats:
        b, s, t, d = key.split("|")
        by_combo[(b, s, t)].append(d)
    order = lambda d: (-1 if d == "none" else (999 if d == "random" else int(d)))  # noqa: E731
    parts = []
    for r in summary["table1"]:
        c = (r["backbone"], r["source"], r["target"])
        p = preds.get((c[1], c[0]))
        none_u = U.get("|".join((*c, "none")), {})
        rows = []
        for d in sorted(by_combo[c], key=order):
            st = stats["|".join((*c, d))]
            srw, srh, srhc, dsr = (_at(p, f, d) for f in ("sr_w", "sr_h", "sr_h_centred", "delta_sr"))
            label = {"none": "no freeze", "random": "random init"}.get(d, d)
            best = d.isdigit() and r["best_k"] == int(d)
            vs = "" if d == "none" or not none_u else S.fmt_ci(*S.mean_ci(S.pair_diffs(U.get("|".join((*c, d)), {}), none_u)))
            rows.append([_bold(label, best, latex), srw, srh, srhc, dsr, _pm(st["psnr"], st["psnr_std"]),
                         _pm(st["ssim"], st["ssim_std"], 4), _pm(st["lpips"], st["lpips_std"], 4), str(st["n"]), vs])
        grid = f" (sr(H) on the cohort's {p['grid'][0]}x{p['grid'][1]} grid)" if p and p.get("grid") else ""
        cap = f"{c[0]}: {source_label(r)} → {c[2]}{grid}"
        header = ["k", "sr(W_k)", "sr(H_k)", "sr(H_k) centred", "Δsr_k", "PSNR (dB)", "SSIM", "LPIPS", "n", "PSNR − no freeze (95% CI)"]
        parts.append(_table(header, rows, latex, cap, "lrrrrrrrrr"))
    return "\n".join(parts)


__all__ = ["summarise", "table1", "regime_table", "predictions_table", "combo_tables", "noise_table", "noise_comparison",
           "noise_sources", "sweep_noise_sources", "is_noise_path", "source_label", "gain_by_depth",
           "backbone_in", "aggregate", "groups", "units", "regime_check",
           "split_rows", "best_k", "empirical_k", "mean_std", "depth_tag", "CONVENTION", "PREDICTORS", "PROFILES",
           "predictor_counts", "predictor_status", "count_phrase", "MISSING"]
