"""The scale ladder: does freezing at the best depth beat no freeze as the resolution and the width grow?

A ladder repeats one freeze sweep on a grid of *rungs*, each a (resolution scale, hidden width) pair: the images
are loaded at ``DataConfig.scale = scale`` (every image's native size times the scale, docs/datasets.md) and the
networks have ``NetConfig.width = width``; everything else is the ladder's base :class:`~inrlens.sweep.SweepSpec`.
Only the source → target pairs the ladder names are computed.

Run folder ``RUN`` (docs/ladder.md)::

    RUN/run.json                       the ladder's identity (datasets, pairs, backbones, base sweep); the rung
                                       grid is not part of it, so a later run may add rungs (e.g. on a GPU)
    RUN/grid.json                      every scale and width asked for so far
    RUN/rungs/s{scale}_w{width}/       one sweep run folder per rung: run.json, plan.json (the planned keys),
                                       cohorts/, results/*.jsonl, as `inrlens sweep` writes them
    RUN/ladder.md|.csv|.json           the summary (:func:`write_ladder`)
    RUN/ladder.png|.pdf                the figure (:func:`inrlens.report.ladder_figures.ladder_figure`)

Pairs and sweeps. A sweep computes every source × every target. A rung instead plans one sweep per source
(that source, the targets the pairs give it), merges the plans (a random-init fit belongs to its target alone,
so a target shared by two sources keeps one copy, by key) and runs the merged plan with one
:func:`~inrlens.sweep.run_sweep` into the rung's folder. That computes exactly the named pairs: with the pairs
celeba:celeba, celeba:kodak, kodak:kodak the unused kodak → celeba pair (more fits than either Kodak pair, as
CelebA-HQ has more test images) is never fitted. The keys are the sweep's own, so a rerun skips every finished
fit, and an interrupted ladder continues where it stopped.

Rungs run in increasing order of scale² · width² (pixels times the hidden layers' cost), so that a ladder cut
short has its cheap rungs complete at several scales and widths.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from tyro.conf import UseAppendAction

from .config import from_dict, key_dict
from .sweep import ExecSpec, SweepSpec

FULL_SCALES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
"""The ladder up to the datasets' native resolution; rungs of these scales that a ladder has not run are listed
as missing in its summary (the 1/2 and 1 rungs are GPU-sized at the paper's widths)."""
RUNGS_DIR = "rungs"
GRID_NAME = "grid.json"
PLAN_NAME = "plan.json"


def _base_default() -> SweepSpec:
    return SweepSpec(lpips=False)


@dataclass(frozen=True)
class LadderSpec:
    """What a scale ladder computes. The base sweep holds everything a rung does not change."""

    data: UseAppendAction[tuple[str, ...]] = ()
    """Named datasets NAME=PATH, as for `inrlens sweep` (a folder, file, sample:NAME or noise:KIND, see
    docs/datasets.md); repeat the flag for several."""
    pairs: tuple[str, ...] = ()
    """Source → target pairs to compute, as SOURCE:TARGET dataset names (e.g. celeba:celeba celeba:kodak
    kodak:kodak); only these pairs are fitted."""
    backbones: tuple[str, ...] = ("siren", "ffmlp")
    """Backbones of every rung (registered names, docs/extending.md)."""
    scales: tuple[float, ...] = (0.125, 0.25)
    """Resolution scales of the rungs: every image's native height and width times the scale (DataConfig.scale,
    docs/datasets.md) [ours: 1/8 and 1/4 fit a CPU; 1/2 and 1 need a GPU]."""
    widths: tuple[int, ...] = (64, 128, 256)
    """Hidden widths of the rungs (NetConfig.width) [ours; the paper uses 256]."""
    base: SweepSpec = field(default_factory=_base_default)
    """Everything else, as a sweep has it: depths, seeds, n_cohort, n_test, the cohort and test-time schedules,
    sigma_at_256, random_lr, net depth and FFMLP features, image loading, LPIPS (off by default here). Its data,
    sources, targets and backbones stay unset, and so do net.width, images.scale and images.size: the ladder
    sets them per rung."""

    def __post_init__(self) -> None:
        for s in self.scales:
            ok = isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s > 0
            if not ok:
                raise ValueError(f"scales: each scale must be a finite number > 0, got {s!r}")
        if len(set(self.scales)) != len(self.scales):
            raise ValueError(f"scales: a scale is given twice ({', '.join(map(_num, self.scales))})")
        for w in self.widths:
            if isinstance(w, bool) or not isinstance(w, int) or w < 1:
                raise ValueError(f"widths: each width must be an integer >= 1, got {w!r}")
        if len(set(self.widths)) != len(self.widths):
            raise ValueError(f"widths: a width is given twice ({', '.join(map(str, self.widths))})")
        names = [rung_name(s, 1) for s in self.scales]
        if len(set(names)) != len(names):
            raise ValueError(f"scales: {', '.join(map(repr, self.scales))} give the same folder names; use scales that "
                             "differ in their first 6 significant digits")
        b, d = self.base, SweepSpec()
        for name, hint in (("data", "--data NAME=PATH"), ("sources", "--pairs SOURCE:TARGET"),
                           ("targets", "--pairs SOURCE:TARGET")):
            if getattr(b, name):
                raise ValueError(f"base.{name}: the ladder sets it; give {hint} instead")
        if b.backbones != d.backbones and b.backbones != self.backbones:
            raise ValueError("base.backbones: the ladder sets it; give --backbones instead")
        if b.net.width != d.net.width:
            raise ValueError(f"base.net.width = {b.net.width}: the ladder sets the width per rung; give --widths instead")
        if b.images.scale is not None or b.images.size is not None:
            raise ValueError("base.images.scale / base.images.size: the ladder sets the scale per rung; give --scales "
                             "instead and leave both unset")
        replace(b, backbones=self.backbones)  # the sweep's own checks of the backbone names

    def datasets(self) -> dict[str, str]:
        """{name: path} of ``data`` (one-line errors for malformed or repeated names, or none given)."""
        from .sweep import parse_data

        return parse_data(self.data)

    def pair_list(self) -> list[tuple[str, str]]:
        """The pairs as (source, target), checked against the datasets."""
        return parse_pairs(self.pairs, self.datasets())


def _num(x: float) -> str:
    return f"{float(x):g}"


def rung_name(scale: float, width: int) -> str:
    """Folder name of a rung: ``s{scale}_w{width}`` with the scale in %g form (s0.125_w64, s1_w256)."""
    return f"s{_num(scale)}_w{int(width)}"


def scale_label(scale: float) -> str:
    """'1/8' for 0.125, '3/8' for 0.375, '1' for 1.0, '0.3' for 0.3 (a fraction when the scale is exactly one
    with a power of two up to 64 as denominator, else %g)."""
    f = Fraction(float(scale)).limit_denominator(64)
    if float(f) != float(scale) or f.denominator & (f.denominator - 1):
        return _num(scale)
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def parse_pairs(pairs: Sequence[str], datasets: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """['celeba:kodak', ...] → [('celeba', 'kodak'), ...]; one-line errors for malformed, repeated or undefined
    names (checked against ``datasets`` when given)."""
    out: list[tuple[str, str]] = []
    if not pairs:
        raise ValueError("no pairs: give --pairs SOURCE:TARGET ... (dataset names, e.g. celeba:celeba celeba:kodak)")
    for p in pairs:
        s, sep, t = str(p).partition(":")
        s, t = s.strip(), t.strip()
        if not sep or not s or not t or ":" in t:
            raise ValueError(f"--pairs expects SOURCE:TARGET dataset names, got {p!r}")
        if (s, t) in out:
            raise ValueError(f"pair {p!r} is given twice")
        if datasets is not None:
            for n in (s, t):
                if n not in datasets:
                    raise ValueError(f"pair {p!r}: dataset {n!r} is not defined; define it with --data {n}=PATH")
        out.append((s, t))
    return out


@dataclass(frozen=True)
class Rung:
    """One (scale, width) of the ladder."""

    scale: float
    width: int

    @property
    def name(self) -> str:
        return rung_name(self.scale, self.width)

    @property
    def cost(self) -> float:
        """scale² · width²: the order rungs run in (smaller first)."""
        return float(self.scale) ** 2 * float(self.width) ** 2


def sort_rungs(rungs: Sequence[Rung]) -> list[Rung]:
    """Cheaper first: by scale² · width², ties by scale, then width."""
    return sorted(rungs, key=lambda r: (r.cost, r.scale, r.width))


def rung_grid(spec: LadderSpec) -> list[Rung]:
    """Every (scale, width) of the spec, in run order (:func:`sort_rungs`)."""
    return sort_rungs([Rung(float(s), int(w)) for s in spec.scales for w in spec.widths])


def select_rungs(grid: Sequence[Rung], items: Sequence[str]) -> list[Rung]:
    """The rungs named by ``items`` (all when empty), in the grid's order. An item is a rung name (s0.125_w64),
    a scale (s0.125: every width at that scale) or a width (w64: every scale at that width)."""
    if not items:
        return list(grid)
    chosen: set[str] = set()
    for it in items:
        it = str(it).strip()
        hit = [r for r in grid if it in (r.name, f"s{_num(r.scale)}", f"w{r.width}")]
        if not hit:
            raise ValueError(f"--rungs: {it!r} names no rung of this ladder; its rungs are {', '.join(r.name for r in grid)} "
                             "(or s<scale> / w<width> for a row or column)")
        chosen.update(r.name for r in hit)
    return [r for r in grid if r.name in chosen]


# ------------------------------------------------------------------------------------------------ plans
def source_specs(spec: LadderSpec, rung: Rung) -> list[SweepSpec]:
    """One sweep per source of the pairs: that source, the targets the pairs give it, the rung's scale and width."""
    pairs = spec.pair_list()
    sources = list(dict.fromkeys(s for s, _ in pairs))
    b = spec.base
    out = []
    for s in sources:
        targets = tuple(dict.fromkeys(t for s2, t in pairs if s2 == s))
        out.append(replace(b, data=tuple(spec.data), sources=(s,), targets=targets, backbones=tuple(spec.backbones),
                           net=replace(b.net, width=rung.width), images=replace(b.images, scale=rung.scale)))
    return out


def rung_spec(spec: LadderSpec, rung: Rung) -> SweepSpec:
    """The rung's sweep with every source and target of the pairs: what the fits' shared settings (schedule,
    image loading, LPIPS, net) are read from. Its plan would hold every source × target; the rung runs
    :func:`rung_plan` instead."""
    pairs = spec.pair_list()
    s0 = source_specs(spec, rung)[0]
    return replace(s0, sources=tuple(dict.fromkeys(s for s, _ in pairs)), targets=tuple(dict.fromkeys(t for _, t in pairs)))


def rung_plan(spec: LadderSpec, rung: Rung, run_dir: str | Path):
    """The merged plan of the rung's per-source sweeps (:func:`source_specs`), cohorts and fits deduplicated by
    key: exactly the pairs' fits plus one random-init baseline per (backbone, target, image, seed)."""
    from .sweep import Plan, make_plan

    cohorts: dict[str, Any] = {}
    fits: dict[str, Any] = {}
    folder = rung_dir(run_dir, rung)
    for sp in source_specs(spec, rung):
        p = make_plan(sp, folder)
        for c in p.cohorts:
            cohorts.setdefault(c.key, c)
        for f in p.fits:
            fits.setdefault(f.key, f)
    return Plan(tuple(cohorts.values()), tuple(fits.values()))


def rung_dir(run_dir: str | Path, rung: Rung) -> Path:
    return Path(run_dir) / RUNGS_DIR / rung.name


def identity(spec: LadderSpec) -> dict[str, Any]:
    """What the ladder's run.json holds: every field but the rung grid (scales, widths), so that a rerun may add
    rungs; a rerun with other datasets, pairs, backbones or base sweep is refused."""
    return {"data": spec.datasets(), "pairs": [f"{s}:{t}" for s, t in spec.pair_list()], "backbones": list(spec.backbones),
            "base": key_dict(spec.base)}


def run_config(spec: LadderSpec) -> dict[str, Any]:
    """The ladder root's run.json."""
    return {"cmd": "ladder", "spec": identity(spec)}


def rung_config(spec: LadderSpec, rung: Rung) -> dict[str, Any]:
    """A rung folder's run.json: the ladder's identity, the rung, and the per-source sweeps it merges."""
    return {"cmd": "ladder", "spec": identity(spec), "rung": rung.name, "scale": rung.scale, "width": rung.width,
            "sweeps": [key_dict(s) for s in source_specs(spec, rung)]}


def _macs_per_pixel(net: Any, channels: int) -> int:
    from .nets import layer_dims

    return int(sum(i * o for i, o in layer_dims(net, channels)))


def estimate(spec: LadderSpec, plan: Any, done: set[str] | None = None) -> dict[str, Any]:
    """Fits, cohorts and an upper bound on the floating-point work of one rung's plan.

    FLOP ≈ 6 · steps · pixels · (multiply-adds per pixel of the network), summed over every cohort member (at
    the cohort's full step budget; cohorts may stop early at their target PSNR) and every fit (counting the
    frozen layers' backward pass too). ``done``: keys already finished, left out of the "to run" numbers."""
    done = done or set()
    b = spec.base
    flop_c = flop_f = 0.0
    nets: dict[str, Any] = {}
    todo_c = todo_f = 0
    for c in plan.cohorts:
        nets[c.key] = c.net
        if c.key in done:
            continue
        todo_c += 1
        px = c.grid[0] * c.grid[1]
        flop_c += 6.0 * b.cohort_train.steps * len(c.images) * px * _macs_per_pixel(c.net, 3)
    for f in plan.fits:
        if f.key in done:
            continue
        todo_f += 1
        net = f.net if f.net is not None else nets.get(f.cohort_key)
        if net is None:
            continue
        flop_f += 6.0 * b.train.steps * f.shape[0] * f.shape[1] * _macs_per_pixel(net, f.channels)
    shapes = sorted({tuple(f.shape) for f in plan.fits}, key=lambda s: (s[0] * s[1], s))
    return {"cohorts": len(plan.cohorts), "fits": len(plan.fits), "cohorts_to_train": todo_c, "fits_to_run": todo_f,
            "tflop": (flop_c + flop_f) / 1e12, "shapes": [f"{h}x{w}" for h, w in shapes]}


# ------------------------------------------------------------------------------------------------ running
def _merge_grid(run_dir: Path, rungs: Sequence[Rung]) -> None:
    from .store import atomic_write_json

    path = run_dir / GRID_NAME
    try:
        old = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        old = {}
    scales = sorted({float(x) for x in old.get("scales", [])} | {r.scale for r in rungs})
    widths = sorted({int(x) for x in old.get("widths", [])} | {r.width for r in rungs})
    atomic_write_json(path, {"scales": scales, "widths": widths})


def plan_rungs(spec: LadderSpec, run_dir: str | Path, rungs: Sequence[str] = ()) -> list[tuple[Rung, Any]]:
    """(rung, merged plan) of the selected rungs in run order; every input error (datasets, pairs, depths,
    unreadable images) surfaces here, before anything is written."""
    spec.pair_list()
    chosen = select_rungs(rung_grid(spec), rungs)
    return [(r, rung_plan(spec, r, run_dir)) for r in chosen]


def run_ladder(spec: LadderSpec, ex: ExecSpec, run_dir: str | Path, rungs: Sequence[str] = (),
               log: Callable[..., Any] = print, overwrite: bool = False,
               planned: list[tuple[Rung, Any]] | None = None) -> dict[str, Any]:
    """Run the selected rungs (all by default) in order; finished fits are skipped, so a rerun continues.

    Prepares RUN (its run.json must match unless ``overwrite``), then per rung its folder (run.json, plan.json)
    and :func:`~inrlens.sweep.run_sweep` on the merged plan. A rung whose jobs fail is reported and the next
    rung still runs. Returns {'rungs': [{'rung', 'fits', 'done', 'errors', 'seconds'}], 'errors': [...]}."""
    from .store import atomic_write_json, prepare_run
    from .sweep import run_sweep

    planned = planned if planned is not None else plan_rungs(spec, run_dir, rungs)
    root = prepare_run(run_dir, run_config(spec), resume=True, overwrite=overwrite)
    _merge_grid(root, rung_grid(spec))  # the whole grid asked for, also the rungs not selected this time
    out: list[dict[str, Any]] = []
    errors: list[str] = []
    for i, (rung, plan) in enumerate(planned, 1):
        folder = prepare_run(rung_dir(root, rung), rung_config(spec, rung), resume=True, overwrite=overwrite)
        atomic_write_json(folder / PLAN_NAME, {"rung": rung.name, "scale": rung.scale, "width": rung.width,
                                               "cohorts": [c.key for c in plan.cohorts], "fits": [f.key for f in plan.fits]})
        log(f"ladder: rung {i}/{len(planned)} {rung.name} (scale {scale_label(rung.scale)}, width {rung.width})")
        res = run_sweep(rung_spec(spec, rung), ex, folder, log=log, plan=plan)
        errs = [f"{rung.name}: {e}" for e in res["errors"]]
        errors += errs
        out.append({"rung": rung.name, "fits": res["fits"], "done": res["done"], "errors": errs, "seconds": res["seconds"]})
    return {"rungs": out, "errors": errors}


# ------------------------------------------------------------------------------------------------ summary
def _rung_status(planned: int, done: int) -> str:
    if planned and done >= planned:
        return "complete"
    if done == 0:
        return "not started"
    return f"partial ({done}/{planned} fits)"


def summarise_rungs(rungs: Sequence[tuple[Rung, Sequence[tuple[str, str]] | None, Sequence[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """One row per (backbone, pair, scale, width) from each rung's result rows.

    Each entry of ``rungs`` is (rung, pairs or None for every pair found, rows). Per row: ``n`` (matched
    (image, seed) units of the gain), no-freeze mean ± std and its n, the best freeze depth k* (highest mean
    PSNR), its mean, the best-k set (depths not significantly worse than k*), the paired gain k* − no freeze
    with its 95% Student-t interval (:func:`inrlens.stats.mean_ci`), a verdict on gain > 0
    (:func:`inrlens.stats.verdict`) and the random-init mean ± std. Computed by
    :func:`inrlens.report.tables.summarise`, the report's Table 1, on the rung's rows."""
    from . import stats as S
    from .report import tables

    out = []
    for rung, pairs, rows in rungs:
        summ = tables.summarise(rows)
        want = None if pairs is None else {tuple(p) for p in pairs}
        for r in summ["table1"]:
            if want is not None and (r["source"], r["target"]) not in want:
                continue
            st = summ["stats"].get("|".join((r["backbone"], r["source"], r["target"], "none")), {})
            shapes = sorted({tuple(x["shape"]) for x in rows if x.get("kind", "fit") == "fit" and x.get("target") == r["target"]
                             and x.get("shape")}, key=lambda s: (s[0] * s[1], s))
            g = r["gain"]
            cf = r.get("gain_crossfit") or {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
            out.append({"backbone": r["backbone"], "source": r["source"], "target": r["target"],
                        "pair": f"{r['source']}:{r['target']}", "scale": rung.scale, "width": rung.width, "rung": rung.name,
                        "target_size": ", ".join(f"{h}x{w}" for h, w in shapes), "n": g["n"],
                        "none": r["none"], "none_std": r["none_std"], "n_none": st.get("n", 0),
                        "best_k": r["best_k"], "best": r["best"], "best_std": r["best_std"], "best_set": list(r["best_set"]),
                        "gain": g["mean"], "gain_lo": g["lo"], "gain_hi": g["hi"],
                        "verdict": S.verdict(g["lo"], g["hi"], True, n=g["n"], unit="fits"),
                        "gain_cf": cf["mean"], "gain_cf_lo": cf["lo"], "gain_cf_hi": cf["hi"], "n_cf": cf["n"],
                        "cf_picks": list(r.get("crossfit_picks", [])),
                        "verdict_cf": S.verdict(cf["lo"], cf["hi"], True, n=cf["n"], unit="fits"),
                        "random": r["random"], "random_std": r["random_std"]})
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def ladder_summary(run_dir: str | Path) -> dict[str, Any]:
    """Every number of the ladder's table and figure, from its rung folders' result rows alone.

    Returns {'rows': :func:`summarise_rungs` rows (backbone order, pair order, scale, width), 'rungs': the
    status of every rung folder and of every missing rung of the grid ('complete', 'partial (d/N fits)',
    'not started', 'not run', 'not in this ladder'), 'pairs', 'backbones', 'level'}. Rungs of
    :data:`FULL_SCALES` × the ladder's widths without a folder are listed as missing."""
    from . import stats as S
    from .identity import read_current_rows
    from .store import RESULTS_DIR

    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such ladder run folder")
    conf = _read_json(root / "run.json")
    if not isinstance(conf, dict) or conf.get("cmd") != "ladder":
        raise ValueError(f"{root}: not an `inrlens ladder` run folder (its run.json is missing or names another command)")
    ident = conf.get("spec", {})
    pairs = [tuple(p.split(":", 1)) for p in ident.get("pairs", [])]
    grid = _read_json(root / GRID_NAME) or {}
    entries, status = [], []
    found: dict[str, Rung] = {}
    for folder in sorted((root / RUNGS_DIR).glob("s*_w*")):
        rc = _read_json(folder / "run.json")
        if not isinstance(rc, dict) or "scale" not in rc or "width" not in rc:
            continue
        rung = Rung(float(rc["scale"]), int(rc["width"]))
        found[rung.name] = rung
        rows = read_current_rows(folder / RESULTS_DIR) if (folder / RESULTS_DIR).is_dir() else []
        plan = _read_json(folder / PLAN_NAME) or {}
        keys = set(plan.get("fits", []))
        done = {r.get("key") for r in rows if r.get("kind", "fit") == "fit"} & keys
        status.append({"rung": rung.name, "scale": rung.scale, "width": rung.width, "planned": len(keys), "done": len(done),
                       "status": _rung_status(len(keys), len(done))})
        entries.append((rung, pairs or None, rows))
    widths = sorted({int(w) for w in grid.get("widths", [])} | {r.width for r in found.values()})
    asked = {float(s) for s in grid.get("scales", [])}
    for s in sorted(set(FULL_SCALES) | asked):
        for w in widths:
            r = Rung(s, w)
            if r.name in found:
                continue
            status.append({"rung": r.name, "scale": s, "width": w, "planned": 0, "done": 0,
                           "status": "not run" if s in asked else "not in this ladder"})
    status = sorted(status, key=lambda x: (x["scale"], x["width"]))
    rows = summarise_rungs(entries)
    order = {p: i for i, p in enumerate(f"{s}:{t}" for s, t in pairs)}

    from .report.tables import backbone_order

    rows.sort(key=lambda r: (backbone_order(r["backbone"]), r["backbone"], order.get(r["pair"], len(order)), r["pair"],
                             r["scale"], r["width"]))
    return {"rows": rows, "rungs": status, "pairs": [f"{s}:{t}" for s, t in pairs],
            "backbones": list(dict.fromkeys(r["backbone"] for r in rows)) or list(ident.get("backbones", [])),
            "level": S.LEVEL}


# ------------------------------------------------------------------------------------------------ rendering
CAPTION = ("Gain = PSNR(k*) − PSNR(no freeze) in dB, paired per (test image, seed) within one rung; [lo, hi] = 95% "
           "Student-t interval of the mean paired difference (t quantile with n − 1 degrees of freedom, sample std ddof = 1); "
           "n = matched fits. k* = the freeze depth with the highest mean PSNR, picked on these same fits, so the gain "
           "is optimistic (an upward bias when depths are close). Best-k set = depths whose paired difference to k* is not "
           "significantly negative. Verdict on gain > 0: agrees when lo > 0, disagrees when hi < 0. Held-out gain = the same "
           "paired gain with the depth for each test image chosen on the other test images' fits (the depths so chosen in "
           "braces), which removes that bias; its verdict uses the same rule. ± = sample std over test images × seeds.")


def _f(x: Any, d: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{d}f}"


def _pm(m: Any, s: Any) -> str:
    return "n/a" if _f(m) == "n/a" else f"{_f(m)} ± {_f(s)}"


def _held_out(r: dict[str, Any]) -> str:
    """'+0.12 [-0.30, 0.54] (n=6) {0, 1}': the held-out gain and the depths chosen for it; n/a for a summary
    written before it was computed."""
    from .stats import fmt_ci

    if "gain_cf" not in r:
        return "n/a"
    picks = "{" + ", ".join(str(k) for k in r.get("cf_picks", [])) + "}" if r.get("cf_picks") else ""
    return f"{fmt_ci(r['gain_cf'], r['gain_cf_lo'], r['gain_cf_hi'], r['n_cf'])} {picks}".strip()


def ladder_table(summary: dict[str, Any]) -> str:
    """The summary as Markdown: the per-rung table and the rung status list."""
    from .stats import fmt_ci

    lines = ["# Scale ladder", "", CAPTION, "",
             "| backbone | pair | scale | width | target size | n | no freeze | k* | PSNR at k* | gain of k* (95% CI) | "
             "best-k set | gain > 0? | held-out gain (95% CI) {depths} | held-out gain > 0? | random init |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        ks = "{" + ", ".join(str(k) for k in r["best_set"]) + "}" if r["best_set"] else "n/a"
        lines.append(f"| {r['backbone']} | {r['source']} → {r['target']} | {scale_label(r['scale'])} | {r['width']} | "
                     f"{r['target_size'] or 'n/a'} | {r['n']} | {_pm(r['none'], r['none_std'])} | "
                     f"{r['best_k'] if r['best_k'] is not None else 'n/a'} | {_pm(r['best'], r['best_std'])} | "
                     f"{fmt_ci(r['gain'], r['gain_lo'], r['gain_hi'], r['n'])} | {ks} | {r['verdict']} | "
                     f"{_held_out(r)} | {r.get('verdict_cf', 'n/a')} | {_pm(r['random'], r['random_std'])} |")
    if not summary["rows"]:
        lines.append("| (no finished fits yet) |" + " |" * 14)
    lines += ["", "## Rungs", "", "| rung | scale | width | fits done / planned | status |", "|---|---|---|---|---|"]
    for s in summary["rungs"]:
        dp = f"{s['done']}/{s['planned']}" if s["planned"] else "—"
        lines.append(f"| {s['rung']} | {scale_label(s['scale'])} | {s['width']} | {dp} | {s['status']} |")
    missing = [s["rung"] for s in summary["rungs"] if s["status"] in ("not run", "not in this ladder")]
    if missing:
        lines += ["", f"Missing rungs: {', '.join(missing)}. Add them by rerunning the ladder into the same folder with "
                      "their --scales / --widths (scales 1/2 and 1 at the paper's widths need a GPU: --device cuda)."]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ("backbone", "source", "target", "scale", "width", "rung", "target_size", "n", "none", "none_std", "n_none",
               "best_k", "best", "best_std", "best_set", "gain", "gain_lo", "gain_hi", "verdict", "gain_cf", "gain_cf_lo",
               "gain_cf_hi", "n_cf", "cf_picks", "verdict_cf", "random", "random_std")


def ladder_csv(summary: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in summary["rows"]:
        w.writerow([" ".join(map(str, r.get(c, []))) if c in ("best_set", "cf_picks") else ("" if r.get(c) is None else r[c])
                    for c in CSV_COLUMNS])
    return buf.getvalue()


def write_ladder(run_dir: str | Path) -> list[Path]:
    """RUN/ladder.md, .csv, .json and the figure RUN/ladder.png, .pdf from the rung folders' rows."""
    from .report.ladder_figures import ladder_figure
    from .store import atomic_write_json, atomic_write_text

    root = Path(run_dir)
    summary = ladder_summary(root)
    paths = [atomic_write_text(root / "ladder.md", ladder_table(summary)),
             atomic_write_text(root / "ladder.csv", ladder_csv(summary)),
             atomic_write_json(root / "ladder.json", summary, indent=1)]
    return paths + ladder_figure(summary, root / "ladder")


# ------------------------------------------------------------------------------------------------ files
def _merge(file_obj: Any, flags: Any, default: Any) -> Any:
    """Fields of ``flags`` that differ from ``default`` override ``file_obj``, nested dataclasses field by field."""
    kw = {}
    for f in fields(flags):
        fv, dv, ov = getattr(flags, f.name), getattr(default, f.name), getattr(file_obj, f.name)
        if is_dataclass(fv) and is_dataclass(dv) and is_dataclass(ov):
            merged = _merge(ov, fv, dv)
            if merged != ov:
                kw[f.name] = merged
        elif fv != dv:
            kw[f.name] = fv
    return replace(file_obj, **kw) if kw else file_obj


def load_ladder_file(path: str | Path) -> tuple[LadderSpec, ExecSpec | None]:
    """A ladder definition (TOML or YAML): the LadderSpec fields at the top level (``data`` as a table
    {name = path} or a list of "name=path"), the base sweep as a ``[base]`` table (SweepSpec fields, nested tables
    overriding the ladder's defaults field by field) and an optional ``[exec]`` table. Unknown keys and wrong
    types are one-line errors naming the file and the field."""
    from .config import read_table_file
    from .sweep import spec_from_dict

    path = Path(path)
    d = read_table_file(path, "ladder definition")
    d = dict(d)
    exd = d.pop("exec", None)
    based = d.pop("base", {})
    if not isinstance(based, dict):
        raise ValueError(f"{path}: base: expected a table of sweep fields")
    base, _ = spec_from_dict(based, base=_base_default(), source=f"{path}: base")
    if isinstance(d.get("data"), dict):
        d["data"] = [f"{n}={p}" for n, p in d["data"].items()]
    try:
        spec = from_dict(LadderSpec, {**d, "base": base}, "ladder")
        ex = None if exd is None else from_dict(ExecSpec, exd, "exec")
    except ValueError as e:
        msg = str(e)
        msg = msg[len("ladder."):] if msg.startswith("ladder.") else msg
        raise ValueError(f"{path}: {msg}") from None
    return spec, ex


def resolve_ladder(config: str | Path | None, flags: LadderSpec, exec_flags: ExecSpec) -> tuple[LadderSpec, ExecSpec]:
    """The (LadderSpec, ExecSpec) of a command line: the definition file when given, overridden by the flags that
    differ from the defaults."""
    if config is None:
        return flags, exec_flags
    spec, ex = load_ladder_file(config)
    return _merge(spec, flags, LadderSpec()), _merge(ex or ExecSpec(), exec_flags, ExecSpec())


__all__ = ["LadderSpec", "Rung", "FULL_SCALES", "rung_name", "scale_label", "parse_pairs", "rung_grid", "sort_rungs",
           "select_rungs", "source_specs", "rung_spec", "rung_plan", "rung_dir", "run_config", "rung_config", "estimate",
           "plan_rungs", "run_ladder", "summarise_rungs", "ladder_summary", "ladder_table", "ladder_csv", "write_ladder",
           "load_ladder_file", "resolve_ladder", "CAPTION"]
