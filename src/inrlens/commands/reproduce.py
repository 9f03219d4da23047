"""``inrlens reproduce``: the whole study in one command, from images to report and atom atlas.

Stages (each resumable; a rerun with ``--resume`` skips what is already on disk)::

    1 sweep      cohorts + freeze-k / no-freeze / random-init fits       RUN/sweep/      (inrlens.sweep.run_sweep)
    2 figures    Table 1, per-combination tables, sweep and rank figures RUN/sweep/report/
    3 single     single-signal INRs of the decomposed image              RUN/single/<backbone>/
    4 sae        one TopK SAE per (condition, hidden layer)              RUN/sae/<condition>/
    5 atoms      atom maps, galleries, health and SAE-statistics plots   RUN/sae/<condition>/saes/*/, RUN/sae/figures/
    6 ablate     single-atom ablations                                   RUN/sae/<condition>/ablations.jsonl
      depth_width  only with a [depth_width] table: single INRs × depths × widths, one SAE per layer  RUN/depth_width/
    7 report     RUN/report.md, RUN/report.html (findings F1–F5 computed from the results)
    8 atlas      RUN/atlas/index.html

A preset is a TOML file (``inrlens/presets/demo.toml``, ``cpu.toml`` and ``paper.toml``; any path works) with the
tables [datasets], [sweep], [exec], [sae] and [study] described in docs/presets.md, and the optional
[depth_width] (:class:`inrlens.depth_width.DepthWidthConfig`; absent = that study is not run). The conditions that are
decomposed are {single, cohort} × backbones: the cohort of ``study.source`` (head ``study.member``) and a
single-signal INR fitted to that same image. ``--plan`` prints what a preset would run and an estimate of its wall
time, and writes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from tyro.conf import UseAppendAction

from ..config import TrainConfig, from_dict
from ..depth_width import DepthWidthConfig
from ..probes.sae import SAEConfig

# the sweep package: every name this module uses from it is imported here
from ..sweep import ExecSpec, SweepSpec, net_for, parse_data, run_config, run_sweep, spec_from_dict
from ..sweep import make_plan as sweep_plan

STAGES = ("sweep", "figures", "single", "sae", "atoms", "ablate", "report", "atlas")


@dataclass(frozen=True)
class StudyConfig:
    """The [study] table of a preset: which INRs are decomposed, how many atoms the atlas and ablations cover."""

    source: str = ""
    """Dataset whose cohort is decomposed (and whose cohort image the single-signal fits use); '' = the first
    dataset."""
    member: int = 0
    """Cohort head (= cohort image) index, 0..n_cohort−1."""
    conditions: tuple[Literal["single", "cohort"], ...] = ("single", "cohort")
    """Which INRs are decomposed, each × every swept backbone: 'cohort' (the cohort's encoder at head
    ``member``) and/or 'single' (a single-signal INR fitted to that head's image)."""
    single_steps: int = 500
    """Adam steps of the single-signal fits that are decomposed (lr: the backbone's single-signal lr)."""
    layers: tuple[int, ...] = ()
    """Hidden layers with SAEs (0..L−1); empty = every layer."""
    atlas_top: int = 16
    """Atoms per layer stored as maps (atlas, galleries), by mean magnitude."""
    ablate_top: int = 10
    """Atoms per layer ablated one at a time, by mean magnitude [paper: 10]."""
    ablate_all_layers: bool = False
    """Ablate at every layer with SAEs (False: only at ``ablate_layers``)."""
    ablate_layers: tuple[int, ...] = (2,)
    """Layers whose atoms are ablated when ``ablate_all_layers`` is false [paper: layer 2]."""
    analogues: dict[str, str] = dataclasses.field(default_factory=dict)
    """Which dataset stands in for which of the paper's datasets (celeba, oasis, kodak), e.g. ``{faces = "celeba"}``:
    the report's regime check compares that target's no-freeze PSNR with the paper's band for it, and
    ``--data celeba=PATH`` replaces the dataset that plays CelebA. Datasets named celeba, oasis or kodak need
    no entry. It changes no result, so it is not part of the run's recorded configuration."""

    def __post_init__(self) -> None:
        from ..stats import check_analogues

        object.__setattr__(self, "analogues", check_analogues(self.analogues))
        if not self.conditions or len(set(self.conditions)) != len(self.conditions):
            raise ValueError(f"conditions: give 'single' and/or 'cohort' once each, got {list(self.conditions)}")
        for name in ("single_steps", "atlas_top", "ablate_top"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.member < 0:
            raise ValueError(f"member must be >= 0, got {self.member}")


@dataclass(frozen=True)
class Preset:
    """A preset file: its tables, typed (``load_preset``). [datasets] maps names to paths or sample:NAME; [sweep]
    is read as a sweep definition file is (``inrlens.sweep.spec_from_dict``: nested tables replace single fields
    of the defaults), without ``data`` (the datasets come from [datasets] and --data)."""

    datasets: dict[str, str] = dataclasses.field(default_factory=dict)
    sweep: SweepSpec = SweepSpec()
    exec: ExecSpec = ExecSpec()
    sae: SAEConfig = SAEConfig()
    study: StudyConfig = StudyConfig()
    depth_width: DepthWidthConfig | None = None
    """The optional depth × width SAE study (None: not run)."""


def _table_message(msg: str) -> str:
    """from_dict's 'preset.study.member: …' → '[study] member: …'; 'preset: unknown field(s) x' → 'unknown table(s) x'."""
    if msg.startswith("preset: unknown field(s)"):
        return "unknown table(s)" + msg[len("preset: unknown field(s)"):]
    m = re.match(r"preset\.(\w+)(?:\.([^:]+))?: (.*)$", msg)
    if not m:
        return msg
    table, fld, rest = m.groups()
    if fld is None and rest.startswith("unknown field(s)"):
        return f"unknown [{table}] field(s)" + rest[len("unknown field(s)"):]
    return f"[{table}] {fld}: {rest}" if fld else f"[{table}] {rest}"


def load_preset(preset: str) -> tuple[str, Preset]:
    """'demo' | 'paper' | PATH.toml → (name, Preset). Unknown tables or fields and values of the wrong type are
    one-line ValueErrors naming the table and field (``preset NAME: [sweep] net.width: expected an integer …``)."""
    import tomllib

    if preset.endswith(".toml") or "/" in preset or Path(preset).exists():
        path = Path(preset)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such preset file")
        text, name = path.read_text(), path.stem
    else:
        names = sorted(p.name[:-5] for p in resources.files("inrlens.presets").iterdir() if p.name.endswith(".toml"))
        if preset not in names:
            raise ValueError(f"unknown preset {preset!r}; choose {' | '.join(names)} or give a .toml path")
        text, name = resources.files("inrlens.presets").joinpath(f"{preset}.toml").read_text(), preset
    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"preset {preset}: invalid TOML ({e})") from None
    sweep = tables.get("sweep")
    if isinstance(sweep, dict):
        for key, where in (("data", "the [datasets] table"), ("exec", "the [exec] table")):
            if key in sweep:
                raise ValueError(f"preset {name}: [sweep] {key}: give it in {where}")
        try:
            tables["sweep"], _ = spec_from_dict(sweep, source="[sweep]")
        except ValueError as e:
            raise ValueError(f"preset {name}: {str(e).replace('[sweep]: ', '[sweep] ', 1)}") from None
    try:
        p = from_dict(Preset, tables, "preset")
    except ValueError as e:
        raise ValueError(f"preset {name}: {_table_message(str(e))}") from None
    for k, v in p.datasets.items():
        if not isinstance(v, str):
            raise ValueError(f"preset {name}: [datasets] {k}: expected a path or sample:NAME string, got {v!r}")
    return name, p


@dataclass(frozen=True)
class Resolved:
    """A preset resolved against the command line (--data, --cluster, --jobs, --device) and checked: everything
    the stages need. ``spec`` is the sweep (its ``data`` = the datasets), ``ex`` how it runs."""

    name: str
    datasets: dict[str, str]
    spec: SweepSpec
    ex: ExecSpec
    sae: SAEConfig
    study: StudyConfig
    depth_width: DepthWidthConfig | None = None
    """[depth_width] with every unset field filled in (inrlens.depth_width.check); None: not run."""


def check_study(study: StudyConfig, spec: SweepSpec, datasets: dict[str, str]) -> StudyConfig:
    """[study] against the sweep, before any work: the source trains a cohort, ``member`` is one of its heads,
    ``layers`` and ``ablate_layers`` are hidden layers of the swept net. Returns it with ``source`` filled in."""
    source = study.source or next(iter(datasets))
    if source not in datasets:
        raise ValueError(f"[study] source {source!r} is not a dataset ({', '.join(datasets)})")
    if spec.sources and source not in spec.sources:
        raise ValueError(f"[study] source {source!r} trains no cohort: [sweep] sources = {list(spec.sources)}")
    if study.member >= spec.n_cohort:
        raise ValueError(f"[study] member {study.member} is outside 0..{spec.n_cohort - 1} (the cohort has [sweep] n_cohort = "
                         f"{spec.n_cohort} heads)")
    from ..stats import check_analogues

    check_analogues(study.analogues, datasets)
    L = spec.net.depth
    for name in ("layers", "ablate_layers"):
        bad = [ell for ell in getattr(study, name) if not 0 <= ell < L]
        if bad:
            raise ValueError(f"[study] {name} {bad} outside 0..{L - 1} (the [sweep] net has depth {L})")
    if study.layers and not study.ablate_all_layers:
        missing = [ell for ell in study.ablate_layers if ell not in study.layers]
        if missing:
            raise ValueError(f"[study] ablate_layers {missing} have no SAE: add them to [study] layers {list(study.layers)}")
    return replace(study, source=source)


def with_data(datasets: dict[str, str], study: StudyConfig, given: dict[str, str]) -> tuple[dict[str, str], StudyConfig]:
    """The preset's datasets with the command line's --data merged in: a name already there is replaced; a name of
    one of the paper's datasets (celeba, oasis, kodak) replaces, in its place, the preset dataset whose
    ``[study] analogues`` entry plays it (``--data celeba=PATH`` on the demo replaces faces, whose analogue is
    celeba; [study] source follows); any other name is added. Returns (datasets, study)."""
    out = dict(datasets)
    analogues = dict(study.analogues)
    source = study.source
    for name, path in given.items():
        if name not in out:
            stand_ins = [d for d, paper in analogues.items() if paper == name.lower() and d in out]
            if stand_ins:
                out = {(name if d == stand_ins[0] else d): v for d, v in out.items() if d not in stand_ins[1:]}
                for d in stand_ins:
                    analogues.pop(d)
                    source = name if source == d else source
        out[name] = path
    return out, replace(study, analogues=analogues, source=source)


def resolve_preset(preset: str, data: tuple[str, ...] = (), cluster: str | None = None, jobs: int | None = None,
                   device: str | None = None) -> Resolved:
    """Load a preset, merge the command line's datasets and [exec] overrides, and check everything (one-line
    ValueError) before any file is written."""
    name, p = load_preset(preset)
    datasets, study = with_data(p.datasets, p.study, parse_data(data) if data else {})
    if not datasets:
        raise ValueError(f"preset {name!r} names no datasets; give them with --data NAME=PATH (e.g. --data celeba=/data/celeba)")
    spec = replace(p.sweep, data=tuple(f"{k}={v}" for k, v in datasets.items()))
    overrides = {k: v for k, v in (("cluster", cluster), ("jobs", jobs), ("device", device)) if v is not None}
    try:
        ex = replace(p.exec, **overrides)
    except ValueError as e:
        raise ValueError(f"--{' --'.join(overrides)}: {e}") from None
    try:
        sae = p.sae.validate()
    except ValueError as e:
        raise ValueError(f"preset {name}: [sae] {e}") from None
    try:
        study = check_study(study, spec, datasets)
    except ValueError as e:
        raise ValueError(f"preset {name}: {e}") from None
    dw = None
    if p.depth_width is not None:
        from ..depth_width import check as check_depth_width

        try:
            dw = check_depth_width(p.depth_width, spec, study, datasets, sae)
        except ValueError as e:
            raise ValueError(f"preset {name}: [depth_width] {e}") from None
    return Resolved(name, datasets, spec, ex, sae, study, dw)


class _Sweeper:
    """The progress bar of the sweep stage, kept up to date by a thread that counts the rows and cohorts on disk.

    The sweep itself runs in the main thread (:func:`stage_sweep`): a Ctrl-C or SIGTERM raises there, and
    run_sweep cancels its jobs and waits until they are gone before the exception goes on."""

    def __init__(self, bar, sweep_dir: Path, grid_plan, every: float = 2.0):
        self.bar, self.results, self.every = bar, sweep_dir / "results", every
        self.keys = {f.key for f in grid_plan.fits}
        self.cohorts = [Path(c.dir) for c in grid_plan.cohorts]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="inrlens-sweep-progress", daemon=True)

    def count(self) -> int:
        from ..store import done_keys

        n_c = sum((c / "model.safetensors").exists() for c in self.cohorts)
        return n_c + (len(done_keys(self.results) & self.keys) if self.results.exists() else 0)

    def update(self) -> None:
        try:
            self.bar.n = self.count()
            self.bar.refresh()
        except Exception:  # noqa: BLE001 - a progress bar never stops the sweep
            pass

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.update()

    def __enter__(self) -> _Sweeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def stage_sweep(plan: Resolved, run: Path, bar_factory) -> dict[str, Any]:
    from ..store import prepare_run

    sw = prepare_run(run / "sweep", run_config(plan.spec), resume=True)
    grid_plan = sweep_plan(plan.spec, sw)
    total = len({f.key for f in grid_plan.fits}) + len(grid_plan.cohorts)
    with bar_factory(total, "sweep: cohorts + fits") as bar, _Sweeper(bar, sw, grid_plan) as progress:
        summary = run_sweep(plan.spec, plan.ex, sw, log=lambda *a: None, plan=grid_plan)
        progress.update()
    if summary.get("errors"):
        raise RuntimeError("sweep: " + "; ".join(summary["errors"][:3]) + " (rerun with --resume to retry)")
    if summary.get("done", 0) < summary.get("fits", 0):
        raise RuntimeError(f"sweep: {summary['fits'] - summary['done']} fits missing; rerun with --resume")
    return summary


def _cohort_dir(run: Path, source: str, backbone: str) -> Path:
    return run / "sweep" / "cohorts" / f"{source}_{backbone}"


def stage_single(plan: Resolved, run: Path, bar_factory) -> dict[str, Path]:
    """Single-signal INRs of the decomposed image (the cohort's head ``study.member``), one per backbone, fitted
    by :func:`inrlens.workflows.fit_images` into RUN/single/<backbone>/ (checkpoint at the folder's root)."""
    from ..data import resolve
    from ..store import load_stack
    from ..workflows import fit_images

    src = plan.study.source
    out: dict[str, Path] = {}
    todo = list(plan.spec.backbones) if "single" in plan.study.conditions else []
    with bar_factory(len(todo), "single-signal fits") as bar:
        for b in todo:
            folder = run / "single" / b
            _, meta = load_stack(_cohort_dir(run, src, b))
            image = meta["members"][plan.study.member]
            sig = {s.name: s for s in resolve(plan.datasets[src], plan.spec.images)}[image]
            net = net_for(plan.spec, b, plan.spec.images.size or max(sig.shape))
            train = TrainConfig(steps=plan.study.single_steps, device=plan.ex.device)
            # resume: a finished fit is kept; overwrite: the run root's config already guards this folder's
            fit_images([sig], folder, net, train, (0,), data=plan.spec.images, lpips=False, resume=True, overwrite=True,
                       checkpoint="root", progress=False)
            out[b] = folder
            bar.update(1)
    return out


def conditions(plan: Resolved, run: Path) -> list[tuple[str, Path, Path]]:
    """(condition name, INR folder, SAE run folder) for every decomposed INR: {single, cohort} × backbones."""
    out = []
    for regime in plan.study.conditions:
        for b in plan.spec.backbones:
            inr = _cohort_dir(run, plan.study.source, b) if regime == "cohort" else run / "single" / b
            out.append((f"{regime}-{b}", inr, run / "sae" / f"{regime}-{b}"))
    return out


def stage_sae(plan: Resolved, run: Path, bar_factory) -> None:
    """One TopK SAE (plan.sae) per hidden layer of each condition: the cohort's head study.member and the
    single-signal INR of that head's image, each on that image's grid (resumable)."""
    from ..fit import resolve_device
    from ..probes.decompose import SaeRun, decompose, load_member
    from ..report.sae_figures import render_sweep

    dev = resolve_device(plan.ex.device)
    conds = conditions(plan, run)
    images = (plan.datasets[plan.study.source],)
    with bar_factory(len(conds), "SAEs (all layers of each condition)") as bar:
        for name, inr, out in conds:
            member = int(plan.study.member) if name.startswith("cohort") else 0
            ctx = load_member(inr, images, member, plan.spec.images, dev, name)
            decompose(ctx, tuple(plan.study.layers), plan.sae, (), out, resume=True)
            render_sweep(SaeRun(out), f"{name}: n × k sweep")
            bar.update(1)


def stage_atoms(plan: Resolved, run: Path, bar_factory) -> None:
    """Atom maps of the study.atlas_top atoms of every SAE, galleries, and the overlaid health and
    SAE-statistics plots in RUN/sae/figures."""
    from ..fit import resolve_device
    from ..probes.decompose import SaeRun, atom_maps_for
    from ..report.sae_figures import render_atoms

    dev = resolve_device(plan.ex.device)
    layers = tuple(plan.study.layers)
    with bar_factory(1, "atom maps + galleries") as bar:
        maps, stat_rows = [], []
        for sae_run in (SaeRun(c[2]) for c in conditions(plan, run)):
            maps += atom_maps_for(sae_run, int(plan.study.atlas_top), layers, dev)
            stat_rows += sae_run.read_results(layers)
        render_atoms(maps, stat_rows, run / "sae" / "figures")
        bar.update(1)


def stage_ablate(plan: Resolved, run: Path, bar_factory) -> None:
    """Single-atom ablations of the study.ablate_top atoms at study.ablate_layers (or every layer)."""
    from ..fit import resolve_device
    from ..probes.decompose import SaeRun, ablate_atoms
    from ..report.sae_figures import render_ablations

    dev = resolve_device(plan.ex.device)
    layers = () if plan.study.ablate_all_layers else tuple(plan.study.ablate_layers)
    conds = conditions(plan, run)
    with bar_factory(len(conds), "single-atom ablations") as bar:
        for _, _, out in conds:
            render_ablations(ablate_atoms(SaeRun(out), layers, int(plan.study.ablate_top), dev))
            bar.update(1)


def stage_depth_width(plan: Resolved, run: Path, bar_factory) -> list[dict[str, Any]]:
    """The [depth_width] study (:func:`inrlens.depth_width.run_study`) in RUN/depth_width/: per (backbone, depth,
    width) one single-signal INR and one SAE per hidden layer, then table.md and depth_width.png (resumable)."""
    from ..depth_width import DIR, cells, run_study

    dw = plan.depth_width
    with bar_factory(2 * len(cells(dw, run / DIR)), "depth × width: INRs + SAEs") as bar:
        return run_study(dw, plan.spec, plan.sae, plan.datasets, run / DIR, plan.ex.device, step=lambda _w: bar.update(1))


def stage_report(plan: Resolved, run: Path, meta: dict[str, Any], atlas: Path | None) -> tuple[Path, Path, list[Any]]:
    from ..report import document
    from ..store import read_rows

    sweep_rows = read_rows(run / "sweep" / "results") if (run / "sweep" / "results").exists() else []
    sae_rows, abl_rows, galleries, abl_figs = [], [], [], []
    for name, _, out in conditions(plan, run):
        sae_rows += read_rows(out / "results.jsonl") if (out / "results.jsonl").exists() else []
        abl_rows += read_rows(out / "ablations.jsonl") if (out / "ablations.jsonl").exists() else []
        for g in sorted((out / "saes").glob("L*/gallery.png")):
            galleries.append((f"{name} {g.parent.name}", g))
        for g in sorted((out / "saes").glob("L*/ablation.png")):
            abl_figs.append((f"{name} {g.parent.name} ablations", g))
    rep = run / "sweep" / "report"
    figs = sorted(rep.glob("*.png")) if rep.exists() else []
    sae_figs = sorted((run / "sae" / "figures").glob("*.png")) if (run / "sae" / "figures").exists() else []
    from ..probes.semantics import read_semantics
    from ..report.sae_figures import semantics_layers

    sem_rows = read_semantics([c[2] for c in conditions(plan, run)])
    sem_fig = semantics_layers(sem_rows, run / "sae" / "semantics.png") if sem_rows else None
    dw_rows, dw_fig, dw_note = None, None, ""
    if plan.depth_width is not None:
        from ..depth_width import DIR, FIGURE_NAME, collect_rows, describe

        dw_rows = collect_rows(plan.depth_width, run / DIR)
        dw_fig = run / DIR / FIGURE_NAME if dw_rows and (run / DIR / FIGURE_NAME).exists() else None
        dw_note = describe(plan.depth_width, plan.sae)
    md, fs = document.build(run, meta, sweep_rows, sae_rows, abl_rows, figs, sae_figs, galleries, abl_figs, atlas,
                            analogues=plan.study.analogues, semantics=sem_rows, semantics_figure=sem_fig,
                            depth_width=dw_rows, depth_width_figure=dw_fig, depth_width_note=dw_note)
    p_md, p_html = document.write(run, md, f"inrlens report ({plan.name})")
    return p_md, p_html, fs


# ------------------------------------------------------------------------------------------------ --plan
def study_counts(plan: Resolved, run: Path) -> dict[str, Any]:
    """What the preset would run, counted from the sweep's own plan (nothing is written): per dataset its images,
    shapes and test images; cohorts; fits per (backbone, regime); single fits, SAEs, atom maps and ablations."""
    from ..rules import depth_label

    grid_plan = sweep_plan(plan.spec, run / "sweep")
    ds: dict[str, dict[str, Any]] = {}
    for name, path in plan.datasets.items():
        tests = {f.image: f.shape for f in grid_plan.fits if f.target == name}
        co = next((c for c in grid_plan.cohorts if c.source == name), None)
        shapes: dict[str, int] = {}
        for sh in tests.values():
            key = f"{sh[0]}×{sh[1]}"
            shapes[key] = shapes.get(key, 0) + 1
        ds[name] = {"path": path, "test images": len(tests), "test shapes": shapes,
                    "cohort images": len(co.images) if co else 0, "cohort grid": list(co.grid) if co else None,
                    "analogue of": plan.study.analogues.get(name)}
    by: dict[str, int] = {}
    for f in grid_plan.fits:
        k = f"{f.backbone} {('k=' + depth_label(f.depth)) if isinstance(f.depth, int) else depth_label(f.depth)}"
        by[k] = by.get(k, 0) + 1
    L = plan.spec.net.depth
    layers = list(plan.study.layers) or list(range(L))
    conds = len(plan.study.conditions) * len(plan.spec.backbones)
    abl_layers = layers if plan.study.ablate_all_layers else list(plan.study.ablate_layers)
    return {"datasets": ds, "cohorts": len(grid_plan.cohorts), "fits": len(grid_plan.fits), "fits by": by,
            "single fits": len(plan.spec.backbones) if "single" in plan.study.conditions else 0,
            "saes": conds * len(layers), "atom maps": conds * len(layers) * plan.study.atlas_top,
            "ablations": conds * len(abl_layers) * plan.study.ablate_top, "plan": grid_plan}


def _time_steps(stack: Any, shape: tuple[int, int], channels: int, start: int, device: Any, steps: int,
                budget_s: float = 1.0) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) per Adam step of ``stack`` on an H×W grid with random targets
    (inrlens.fit.train, frozen prefix cached as in a real fit). Two untimed warm-up steps, then ``steps`` timed
    steps, fewer (at least 3) when that many would take more than ``budget_s``."""
    import time as _t

    import torch

    from ..data import grid
    from ..fit import Group, train

    h, w = shape
    g = Group(grid(h, w, device=device), torch.rand(stack.members, h * w, channels, device=device) * 2 - 1,
              list(range(stack.members)), shape)
    stack = stack.to(device)

    def run(n: int) -> tuple[float, float, int]:
        for p in stack.parameters():  # train() leaves them frozen
            p.requires_grad_(True)
        t0, c0 = _t.perf_counter(), _t.process_time()
        fr = train(stack, [g], TrainConfig(steps=n, lr=1e-4, log_every=10**9, device=str(device)), start=start, progress=False)
        return _t.perf_counter() - t0, _t.process_time() - c0, max(1, fr.steps_run)

    wall, _, n = run(2)
    n_timed = int(max(3, min(steps, budget_s / max(wall / n, 1e-6))))
    wall, cpu, n = run(n_timed)
    return wall / n, cpu / n


def estimate_time(plan: Resolved, counts: dict[str, Any], steps: int = 20, log=lambda *a: None,
                  max_pixels: int = 65536) -> dict[str, Any]:
    """Wall-time estimate on this machine. For each distinct (backbone, grid shape, channels, width, trainable
    layers) one representative stack is timed for ``steps`` Adam steps (fewer when they would take over a second)
    with as many members as fit ``max_pixels`` member-pixels at width 32 (× 32 / width for wider nets, at least
    1024; a larger grid is timed at that many pixels and scaled by its pixel count); its time per member and step
    is extrapolated to
    every chunk of fits and every cohort, which are then laid out over the jobs as the sweep deals them; the
    in-process stages (single fits, SAEs) likewise. Two figures: from the CPU time of the timed steps (what idle
    cores would take) and from their wall time (at the machine's current load). It does not see process
    start-up, image loading, early stops, atom maps, ablations, figures or the report."""
    import os
    import time as _t

    import torch

    from ..fit import resolve_device
    from ..nets import Stack, cohort_stack, transfer_stack
    from ..probes.sae import train_sae
    from ..rules import backbone_spec
    from ..sweep import chunk_fits, deal, net_for

    dev = resolve_device(plan.ex.device)
    threads = max(1, int(plan.ex.threads))
    torch.set_num_threads(threads)
    spec, gp = plan.spec, counts["plan"]
    cohorts = {c.key: c for c in gp.cohorts}
    cache: dict[tuple, tuple[float, float]] = {}

    def per_step(kind: str, net: Any, shape: tuple[int, int], channels: int, start: int, members: int) -> tuple[float, float]:
        """(wall, cpu) seconds per step of a stack of ``members``; cohorts are timed with all their heads (one shared
        encoder). A grid larger than ``max_pixels`` is timed on a smaller grid of the same aspect and scaled by the
        pixel count (every layer's cost is linear in it)."""
        h, w = shape
        budget = max(1024, int(max_pixels * 32 / max(32, net.width)))  # fewer pixels for wider nets (time stays short)
        m_t = members if kind == "cohort" else max(1, min(members, budget // (h * w)))
        r = min(1.0, (budget / (h * w)) ** 0.5)
        shape_t = (max(3, round(h * r)), max(3, round(w * r)))
        px = (h * w) / (shape_t[0] * shape_t[1])
        key = (kind, net.backbone, net.width, net.ff_features, net.depth, shape_t, channels, start, m_t)
        if key not in cache:
            if kind == "cohort":
                st = cohort_stack(net, channels, m_t, 0)
            elif kind == "transfer":
                st = transfer_stack(cohort_stack(net, channels, 1, 0), None if start == 0 else start - 1, list(range(m_t)),
                                    channels)
            else:
                st = Stack.init(net, channels, list(range(m_t)))
            cache[key] = _time_steps(st, shape_t, channels, start, dev, steps)
            log(f"timed {kind} {net.backbone} width {net.width} {shape_t[0]}×{shape_t[1]} from layer {start}, {m_t} "
                f"member(s): {cache[key][0] * 1e3:.1f} ms/step")
        wall_s, cpu_s = cache[key]
        k = px * (1.0 if kind == "cohort" else members / m_t)
        return wall_s * k, cpu_s * k

    jobs = max(1, int(plan.ex.jobs))
    # cohorts: dealt round-robin over the jobs, each trained to its step limit (an upper bound: they stop early)
    co_cost = []
    for c in gp.cohorts:
        w, cp = per_step("cohort", c.net, tuple(c.grid), _channels(gp, c), 0, len(c.images))
        co_cost.append((w * c.train.steps, cp * c.train.steps))
    # fits: chunked and dealt as run_sweep does; a chunk costs (time per step of its stack) × its backbone's steps
    chunks = chunk_fits(gp.fits, plan.ex.max_members, spec)
    cost: dict[int, tuple[float, float]] = {}
    for ch in chunks:
        f = ch[0]
        net = cohorts[f.cohort_key].net if f.regime == "transfer" else f.net
        start = 0 if f.freeze is None else f.freeze + 1
        w, cp = per_step(f.regime, net, tuple(f.shape), f.channels, start, len(ch))
        n = backbone_spec(spec, f.backbone).train.steps
        cost[id(ch)] = (w * n, cp * n)
    packs = deal(chunks, jobs, spec.net.depth)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    def wall(items: list[list[float]]) -> float:
        """Wall time of jobs with these per-job costs: one after the other (debug), in parallel (slurm, cuda), or
        as processes sharing the cores (local on a CPU)."""
        bins = [sum(x) for x in items] or [0.0]
        if plan.ex.cluster == "debug":
            return sum(bins)
        if plan.ex.cluster == "local" and dev.type == "cpu":
            return max(max(bins), sum(bins) * threads / cores)
        return max(bins)

    out: dict[str, dict[str, float]] = {"cpu": {}, "now": {}}
    for i, mode in ((1, "cpu"), (0, "now")):
        out[mode]["cohorts"] = wall([[c[i] for c in co_cost[j::jobs]] for j in range(min(jobs, len(co_cost)))])
        out[mode]["fits"] = wall([[cost[id(c)][i] for c in p] for p in packs])
        out[mode]["single"] = out[mode]["sae"] = 0.0
    # in-process stages: single fits and SAEs on the decomposed image's grid
    co_src = next((c for c in gp.cohorts if c.source == plan.study.source), None)
    if co_src is not None:
        shape, ch = tuple(co_src.grid), _channels(gp, co_src)
        n_layers = len(plan.study.layers) or spec.net.depth
        for b in spec.backbones:
            if "single" in plan.study.conditions:
                w, cp = per_step("single", net_for(spec, b, max(shape)), shape, ch, 0, 1)
                out["now"]["single"] += w * plan.study.single_steps
                out["cpu"]["single"] += cp * plan.study.single_steps
            width = backbone_spec(spec, b).net.width
            key = ("sae", width, shape)
            if key not in cache:
                h = torch.randn(shape[0] * shape[1], width, device=dev)
                n_t = max(3, min(steps, plan.sae.steps))
                t0, c0 = _t.perf_counter(), _t.process_time()
                train_sae(h, replace(plan.sae, steps=n_t), progress=False)
                cache[key] = ((_t.perf_counter() - t0) / n_t, (_t.process_time() - c0) / n_t)
                log(f"timed SAE n={plan.sae.n} k={plan.sae.k} on {shape[0]}×{shape[1]}×{width}: {cache[key][0] * 1e3:.1f} ms/step")
            k = plan.sae.steps * n_layers * len(plan.study.conditions)
            out["now"]["sae"] += cache[key][0] * k
            out["cpu"]["sae"] += cache[key][1] * k
    for mode in out.values():
        mode["total"] = sum(mode.values())
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {**out["now"], "idle": out["cpu"], "device": str(dev), "threads": threads, "jobs": jobs, "cluster": plan.ex.cluster,
            "cores": cores, "load": load, "timed_stacks": len(cache), "steps": steps,
            "cohorts_serial": sum(c[0] for c in co_cost), "fits_serial": sum(v[0] for v in cost.values())}


def _channels(gp: Any, cohort: Any) -> int:
    """Channels of a cohort's images (those of its source's test images; a dataset has one channel count)."""
    return next((f.channels for f in gp.fits if f.target == cohort.source), 3 if cohort.data.channels == "rgb" else 1)


def _mmss(sec: float) -> str:
    """'42 s', '3 min 07 s', '2 h 05 min', '3.4 days'."""
    if sec >= 2 * 86400:
        return f"{sec / 86400:.1f} days"
    if sec >= 2 * 3600:
        return f"{int(sec // 3600)} h {int(round(sec % 3600 / 60)):02d} min"
    return f"{int(sec // 60)} min {int(round(sec % 60)):02d} s" if sec >= 60 else f"{sec:.0f} s"


def print_plan(plan: Resolved, counts: dict[str, Any], est: dict[str, Any] | None) -> None:
    """The --plan text: datasets, what each stage runs, and the time estimate."""
    from ..rules import backbone_spec, lr_for

    spec = plan.spec
    print(f"reproduce {plan.name}: plan (nothing has been run or written)\n")
    img = (f"scale {spec.images.scale:g}" if spec.images.scale else f"longer side {spec.images.size} px" if spec.images.size
           else "native size")
    print(f"datasets ({img}):")
    for name, d in counts["datasets"].items():
        shapes = ", ".join(f"{k} ×{v}" for k, v in d["test shapes"].items())
        an = f" [plays {d['analogue of']}]" if d["analogue of"] else ""
        print(f"  {name}{an} = {d['path']}: cohort {d['cohort images']} images on {d['cohort grid'][0]}×{d['cohort grid'][1]}"
              if d["cohort grid"] else f"  {name}{an} = {d['path']}:", end="")
        print(f"; {d['test images']} test images ({shapes})")
    print("settings per backbone:")
    for b in spec.backbones:
        e = backbone_spec(spec, b)
        print(f"  {b}: width {e.net.width}, depth {e.net.depth}, cohort ≤ {e.cohort_train.steps} steps at lr "
              f"{lr_for('cohort', b, e.cohort_train.lr):g}, test-time {e.train.steps} steps at lr "
              f"{lr_for('transfer', b, e.train.lr):g}, random init at lr {lr_for('random', b, e.random_lr):g}")
    print(f"\n1 sweep    {counts['cohorts']} cohorts, {counts['fits']} fits ({len(spec.seeds)} seed(s) × test images × regimes):")
    for b in spec.backbones:
        print("             " + b + ": " + ", ".join(f"{k.split(' ', 1)[1]} {v}" for k, v in counts["fits by"].items()
                                                if k.startswith(b + " ")))
    print("2 figures  tables and figures of the sweep")
    print(f"3 single   {counts['single fits']} single-signal fits of {plan.study.single_steps} steps")
    print(f"4 sae      {counts['saes']} SAEs (n = {plan.sae.n}, k = {plan.sae.k}, {plan.sae.steps} steps)")
    print(f"5 atoms    {counts['atom maps']} atom maps")
    print(f"6 ablate   {counts['ablations']} single-atom ablations")
    print("7 report, 8 atlas")
    if est is None:
        return
    load = est["load"]
    idle = est["idle"]
    load_s = f"{load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}" if load else "unknown"
    print(f"\nestimated wall time — an estimate, not a measurement:\n"
          f"  {_mmss(idle['total'])} on idle cores (from the CPU time of the timed steps)\n"
          f"  {_mmss(est['total'])} at this machine's current load (from their wall time; load average {load_s})")
    print(f"  timed: up to {est['steps']} Adam steps of {est['timed_stacks']} representative stacks on {est['device']} with "
          f"{est['threads']} torch thread(s), extrapolated to every chunk and laid out over {est['jobs']} "
          f"{est['cluster']} job(s) on {est['cores']} core(s)")
    for name, lab in (("cohorts", "cohorts ≤"), ("fits", "fits"), ("single", "single fits"), ("sae", "SAEs")):
        print(f"  {lab} {_mmss(idle[name])} idle, {_mmss(est[name])} now"
              + (" (to the step limit; they stop early at the target PSNR)" if name == "cohorts" else ""))
    print("  not included: process start-up, image loading, atom maps, ablations, figures, report and atlas")


@dataclass(frozen=True)
class Reproduce:
    """The whole study in one command: cohorts, freeze sweep, stable ranks, SAEs, atoms, ablations, report, atlas."""

    preset: str = "demo"
    """'demo' (built-in sample images at 1/4 of their size, settings calibrated against the paper's no-freeze PSNR,
    sized for a 2-core CPU), 'cpu' (the paper's datasets at 1/4, given with --data celeba=… oasis=… kodak=…; about
    two hours on 2 cores), 'paper' (the paper's protocol on --data folders) or the path of a preset .toml (copy one
    of inrlens/presets/*.toml to start; docs/presets.md)."""
    data: UseAppendAction[tuple[str, ...]] = ()
    """Datasets NAME=PATH (folders, files or sample:NAME); added to / replacing the preset's [datasets]."""
    out: Path | None = None
    """Run folder RUN_DIR (default runs/<preset name>): report.md, report.html, atlas/index.html and every stage's files."""
    resume: bool = False
    """Continue an interrupted run in RUN_DIR (finished fits, SAEs and models are kept and skipped)."""
    overwrite: bool = False
    """Replace the configuration recorded in RUN_DIR (results already there are kept, never deleted)."""
    cluster: Literal["local", "debug", "slurm"] | None = None
    """Override the preset's [exec] cluster for the sweep."""
    jobs: int | None = None
    """Override the preset's [exec] jobs."""
    device: str | None = None
    """Override the preset's [exec] device ('cpu', 'cuda', 'auto')."""
    plan: bool = False
    """Print what the preset would run (cohorts, fits per backbone and regime, SAEs, ablations) and exit.
    With an estimate of its wall time on this machine from a few timed steps; nothing is written."""

    def run(self) -> None:
        from tqdm.auto import tqdm

        from ..report.atlas import build_atlas
        from ..report.document import findings_text
        from ..store import prepare_run

        # every check (preset types, [study] against the sweep, overrides) comes before anything is written
        plan = resolve_preset(self.preset, tuple(self.data), self.cluster, self.jobs, self.device)
        run = Path(self.out) if self.out is not None else Path("runs") / plan.name
        if self.plan:
            counts = study_counts(plan, run)
            print_plan(plan, counts, estimate_time(plan, counts))
            return
        conf = {"cmd": "reproduce", "preset": plan.name, "datasets": plan.datasets, "sweep": plan.spec, "sae": plan.sae,
                "study": recorded_study(plan.study)}
        if plan.depth_width is not None:  # recorded only when asked for: runs without it keep their config
            conf["depth_width"] = plan.depth_width
        if (run / "run.json").exists() and not (self.resume or self.overwrite):
            from ..store import RunConflict

            raise RunConflict(f"{run}: already holds a reproduce run; use --resume to continue it or --out for a new folder")
        run = prepare_run(run, conf, self.resume, self.overwrite)
        if plan.ex.device == "cpu" or (plan.ex.device == "auto" and not _cuda()):
            # The in-process stages (single fits, SAEs, ablations) use the sweep jobs' thread count: small
            # networks gain nothing from more threads, and oversubscribed threads on a shared machine stall.
            import torch

            torch.set_num_threads(max(1, int(plan.ex.threads)))
        t0 = time.time()
        timings: dict[str, float] = {}
        tpath = run / "timings.json"
        try:  # earlier invocations of this run (interrupted, then --resume), each with its stage times
            earlier = json.loads(tpath.read_text()).get("invocations", []) if tpath.exists() else []
        except (OSError, json.JSONDecodeError, AttributeError):
            earlier = []

        def save_timings() -> None:
            from ..store import atomic_write_json

            atomic_write_json(tpath, {"invocations": [*earlier, dict(timings, total=time.time() - t0)]})
        overall = tqdm(total=len(STAGES) + (plan.depth_width is not None), desc=f"reproduce {plan.name}", position=0, dynamic_ncols=True)

        def bar_factory(total: int, desc: str):
            return tqdm(total=total, desc=f"  {desc}", position=1, leave=False, dynamic_ncols=True)

        def stage(name: str, fn, *a):
            overall.set_postfix_str(name)
            s = time.time()
            out = fn(*a)
            timings[name] = time.time() - s
            save_timings()
            overall.update(1)
            return out

        try:
            stage("sweep", stage_sweep, plan, run, bar_factory)
            stage("figures", _figures, run, plan.study.analogues)
            stage("single", stage_single, plan, run, bar_factory)
            stage("sae", stage_sae, plan, run, bar_factory)
            stage("atoms", stage_atoms, plan, run, bar_factory)
            stage("ablate", stage_ablate, plan, run, bar_factory)
            if plan.depth_width is not None:
                stage("depth_width", stage_depth_width, plan, run, bar_factory)
            s = time.time()
            overall.set_postfix_str("atlas")
            atlas = build_atlas([c[2] for c in conditions(plan, run)], run / "atlas", f"inrlens atom atlas ({plan.name})")
            timings["atlas"] = time.time() - s
            save_timings()
            overall.update(1)
            timings["total"] = time.time() - t0
            meta = {"preset": plan.name, "run folder": str(run), "datasets": ", ".join(f"{k}={v}" for k, v in plan.datasets.items()),
                    "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0)),
                    "wall time (this invocation)": f"{timings['total']:.0f} s ("
                    + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items() if k != "total") + ")",
                    "wall time (all invocations of this run)": f"{timings['total'] + sum(float(e.get('total', 0)) for e in earlier):.0f} s "
                    f"over {len(earlier) + 1} invocation(s)",
                    **settings_meta(plan), "seeds": len(plan.spec.seeds), "test images per target": plan.spec.n_test,
                    "SAE n, k, steps": f"{plan.sae.n}, {plan.sae.k}, {plan.sae.steps}", "inrlens": _version()}
            overall.set_postfix_str("report")
            s = time.time()
            p_md, p_html, fs = stage_report(plan, run, meta, atlas)
            timings["report"] = time.time() - s
            overall.update(1)
        finally:
            overall.close()
        save_timings()
        print(f"\nreproduce {plan.name}: done in {time.time() - t0:.0f} s → {run}")
        print(f"  report: {p_md}  {p_html}\n  atlas:  {atlas}\n\nFindings\n{findings_text(fs)}")


def settings_meta(plan: Resolved) -> dict[str, Any]:
    """The report's setup lines for the net, the images, the test-time schedule (per backbone where a
    ``per_backbone`` entry makes them differ) and the paper analogues."""
    from ..rules import backbone_spec, lr_for

    spec = plan.spec
    eff = {b: backbone_spec(spec, b) for b in spec.backbones}

    def per(fn) -> Any:
        vals = {b: fn(b, e) for b, e in eff.items()}
        return next(iter(vals.values())) if len(set(vals.values())) == 1 else ", ".join(f"{b} {v}" for b, v in vals.items())

    img = spec.images
    return {"width": per(lambda b, e: e.net.width), "depth": spec.net.depth,
            "image size": f"scale {img.scale:g}" if img.scale else (img.size or "native"),
            "test-time steps": per(lambda b, e: e.train.steps),
            "test-time lr": per(lambda b, e: f"{lr_for('transfer', b, e.train.lr):g}"),
            "random-init lr": per(lambda b, e: f"{lr_for('random', b, e.random_lr):g}"),
            "paper analogues": ", ".join(f"{k} → {v}" for k, v in plan.study.analogues.items()) or "none"}


def _figures(run: Path, analogues: dict[str, str] | None = None) -> list[Path]:
    from ..report import write_report

    return write_report(run / "sweep", analogues=analogues)


def recorded_study(study: StudyConfig) -> dict[str, Any]:
    """[study] as the run's run.json records it: without ``analogues``, which changes no result (so a run keeps
    resuming whatever the report compares it with)."""
    from ..config import to_dict

    return {k: v for k, v in to_dict(study).items() if k != "analogues"}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _version() -> str:
    import inrlens

    return getattr(inrlens, "__version__", "?")


__all__ = ["Reproduce", "StudyConfig", "Preset", "Resolved", "load_preset", "resolve_preset", "check_study", "conditions", "STAGES"]
