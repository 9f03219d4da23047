"""The stages of a study run (``inrlens reproduce``), each resumable: what is already on disk is skipped::

    sweep      cohorts + freeze-k / no-freeze / random-init fits       RUN/sweep/      (stage_sweep → inrlens.sweep.run_sweep)
    figures    Table 1, per-combination tables, sweep and rank figures RUN/sweep/report/
    single     single-signal INRs of the decomposed image              RUN/single/<backbone>/
    sae        one TopK SAE per (condition, hidden layer)              RUN/sae/<condition>/
    atoms      atom maps, galleries, health and SAE-statistics plots   RUN/sae/<condition>/saes/*/, RUN/sae/figures/
    ablate     single-atom ablations                                   RUN/sae/<condition>/ablations.jsonl
    depth_width  only with a [depth_width] table                       RUN/depth_width/
    report     RUN/report.md, RUN/report.html
    atlas      RUN/atlas/index.html (built by inrlens.study.runner.run_study)

Each stage function takes the :class:`~inrlens.study.preset.Resolved` preset, the run folder and ``bar_factory``
(``bar_factory(total, desc)`` → a context-manager progress bar with ``update``); they call the library directly.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ..config import TrainConfig

# the sweep package: every name this module uses from it is imported here
from ..sweep import make_plan as sweep_plan
from ..sweep import net_for, run_config, run_sweep
from .preset import Resolved

STAGES = ("sweep", "figures", "single", "sae", "atoms", "ablate", "report", "atlas")


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


def _figures(run: Path, analogues: dict[str, str] | None = None) -> list[Path]:
    from ..report import write_report

    return write_report(run / "sweep", analogues=analogues)
