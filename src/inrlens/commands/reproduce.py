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

This module parses the flags and prints; the preset model, the stages and the estimate are the library package
:mod:`inrlens.study` (re-exported here under their old names).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tyro.conf import UseAppendAction

# the library: every name the tests and other commands import from this module is re-exported here
from ..study import (
    STAGES,
    Preset,
    Resolved,
    StudyConfig,
    check_study,
    conditions,
    estimate_time,
    load_preset,
    recorded_study,
    resolve_preset,
    settings_meta,
    stage_ablate,
    stage_atoms,
    stage_depth_width,
    stage_report,
    stage_sae,
    stage_single,
    stage_sweep,
    study_counts,
    with_data,
)


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
    1.5 hours on 2 cores), 'paper' (the paper's protocol on --data folders) or the path of a preset .toml (copy one
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

        from ..report.document import findings_text
        from ..study import n_stages, prepare_study, run_study

        # every check (preset types, [study] against the sweep, overrides) comes before anything is written
        plan = resolve_preset(self.preset, tuple(self.data), self.cluster, self.jobs, self.device)
        run = Path(self.out) if self.out is not None else Path("runs") / plan.name
        if self.plan:
            counts = study_counts(plan, run)
            print_plan(plan, counts, estimate_time(plan, counts))
            return
        run = prepare_study(plan, run, self.resume, self.overwrite)
        overall = tqdm(total=n_stages(plan), desc=f"reproduce {plan.name}", position=0, dynamic_ncols=True)

        def bar_factory(total: int, desc: str):
            return tqdm(total=total, desc=f"  {desc}", position=1, leave=False, dynamic_ncols=True)

        try:
            done = run_study(plan, run, bar_factory, overall)
        finally:
            overall.close()
        print(f"\nreproduce {plan.name}: done in {done.seconds:.0f} s → {run}")
        print(f"  report: {done.report_md}  {done.report_html}\n  atlas:  {done.atlas}\n\nFindings\n{findings_text(done.findings)}")


__all__ = ["Reproduce", "StudyConfig", "Preset", "Resolved", "load_preset", "resolve_preset", "check_study", "conditions", "STAGES",
           "with_data", "recorded_study", "settings_meta", "study_counts", "estimate_time", "print_plan", "stage_sweep",
           "stage_single", "stage_sae", "stage_atoms", "stage_ablate", "stage_depth_width", "stage_report"]
