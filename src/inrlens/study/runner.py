"""A whole study run, stage after stage (what ``inrlens reproduce`` runs): :func:`prepare_study` records the
configuration in RUN, :func:`run_study` runs the stages of :mod:`inrlens.study.stages`, builds the atlas and the
report, and records each stage's wall time in RUN/timings.json (one entry per invocation of the run).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .preset import Resolved, recorded_study, settings_meta
from .stages import (
    STAGES,
    _figures,
    conditions,
    stage_ablate,
    stage_atoms,
    stage_depth_width,
    stage_report,
    stage_sae,
    stage_single,
    stage_sweep,
)


class _Quiet:
    """A progress bar that shows nothing: the default of :func:`run_study`'s bars."""

    n = 0

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        pass

    def refresh(self) -> None:
        pass

    def set_postfix_str(self, s: str = "") -> None:
        pass


def quiet_bar(total: int, desc: str) -> _Quiet:
    """A ``bar_factory`` whose bars show nothing."""
    return _Quiet()


@dataclass(frozen=True)
class StudyResult:
    """What :func:`run_study` wrote: the report (markdown, HTML), the atlas, the findings and the wall time."""

    report_md: Path
    report_html: Path
    atlas: Path
    findings: list[Any]
    seconds: float
    """Wall time of this invocation."""


def n_stages(plan: Resolved) -> int:
    """How many stages :func:`run_study` runs for ``plan``: STAGES, and depth_width when [depth_width] is given."""
    return len(STAGES) + (plan.depth_width is not None)


def prepare_study(plan: Resolved, run: Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Record the study's configuration in RUN (:func:`inrlens.store.prepare_run`) and return RUN. A RUN that
    already holds a reproduce run is a RunConflict unless ``resume`` (continue it) or ``overwrite``."""
    from ..store import prepare_run

    conf = {"cmd": "reproduce", "preset": plan.name, "datasets": plan.datasets, "sweep": plan.spec, "sae": plan.sae,
            "study": recorded_study(plan.study)}
    if plan.depth_width is not None:  # recorded only when asked for: runs without it keep their config
        conf["depth_width"] = plan.depth_width
    if (run / "run.json").exists() and not (resume or overwrite):
        from ..store import RunConflict

        raise RunConflict(f"{run}: already holds a reproduce run; use --resume to continue it or --out for a new folder")
    return prepare_run(run, conf, resume, overwrite)


def run_study(plan: Resolved, run: Path, bar_factory=quiet_bar, overall: Any = None) -> StudyResult:
    """Run every stage of ``plan`` in RUN (prepared by :func:`prepare_study`; each stage skips what is already on
    disk), then the atlas and the report. ``bar_factory(total, desc)`` gives each stage its progress bar;
    ``overall`` (tqdm-like: ``set_postfix_str``, ``update``) advances once per stage (:func:`n_stages` in all)."""
    from ..report.atlas import build_atlas

    overall = _Quiet() if overall is None else overall
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

    def save_timings(stopped_in: str | None = None) -> None:
        from ..store import atomic_write_json

        entry: dict[str, float | str] = dict(timings, total=time.time() - t0)
        if stopped_in:  # an interrupted invocation counts too: its time is part of the run's wall time
            entry["stopped_in"] = stopped_in
        atomic_write_json(tpath, {"invocations": [*earlier, entry]})

    def stage(name: str, fn, *a):
        overall.set_postfix_str(name)
        s = time.time()
        try:
            out = fn(*a)
        except BaseException:  # Ctrl-C, SIGTERM or an error: record how far this invocation got, then go on unwinding
            timings[name] = time.time() - s
            save_timings(stopped_in=name)
            raise
        timings[name] = time.time() - s
        save_timings()
        overall.update(1)
        return out

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
    save_timings()
    return StudyResult(p_md, p_html, atlas, fs, time.time() - t0)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _version() -> str:
    import inrlens

    return getattr(inrlens, "__version__", "?")
