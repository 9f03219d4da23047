"""``inrlens sweep | rank | report``: the freeze study.

Thin commands: parse the flags, call :mod:`inrlens.sweep`, :mod:`inrlens.probes.rank` or
:mod:`inrlens.report`, print. The run folder a sweep writes is described in docs/run-folder.md.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from ..store import prepare_run
from ..sweep import ExecSpec, SweepSpec, make_plan, resolve_specs, run_config, run_sweep
from ..sweep.jobs import check_memory
from .core import print_table

Positional = tyro.conf.Positional


@dataclass(frozen=True)
class Sweep:
    """Freeze sweep: sources × targets × backbones × {none, k = 0..L−1, random} × test images × seeds."""

    spec: Annotated[SweepSpec, tyro.conf.arg(name="")] = SweepSpec()
    exec: Annotated[ExecSpec, tyro.conf.arg(name="")] = ExecSpec()
    out: Path = Path("runs/sweep")
    """Run folder (run.json, cohorts/, results/*.jsonl, report/; see docs/run-folder.md). Running the same
    command again continues a sweep: finished fits are skipped."""
    config: Path | None = None
    """Sweep definition file (.toml, .yaml or .py); flags that differ from the defaults override it."""
    overwrite: bool = False
    """Replace the spec recorded in an existing run folder (results already there are kept, never deleted)."""
    report: bool = True
    """Write tables and figures to OUT/report when the sweep finishes."""

    def run(self) -> None:
        spec, ex = resolve_specs(self.config, self.spec, self.exec)
        plan = make_plan(spec, self.out)  # every input error surfaces here, before the run folder is written
        check_memory(plan, ex, self.out)  # and a cohort, stable-rank pass or fit that cannot fit the memory budget
        # A rerun of the same spec continues (skips finished keys); a different spec is refused.
        out = prepare_run(self.out, run_config(spec), resume=True, overwrite=self.overwrite)
        summary = run_sweep(spec, ex, out, plan=plan)
        print(f"sweep: {summary['done']}/{summary['fits']} fits in {out / 'results'}")
        again = f"rerun the same `inrlens sweep --out {out} …` command to continue (finished fits are kept)"
        if summary["errors"]:
            for e in summary["errors"]:
                print(f"inrlens: error: {e}", file=sys.stderr)
            print(f"inrlens: {len(summary['errors'])} job(s) failed; {again}", file=sys.stderr)
            raise SystemExit(1)
        if summary["done"] < summary["fits"]:
            print(f"inrlens: error: {summary['fits'] - summary['done']} of {summary['fits']} fits are missing; {again}",
                  file=sys.stderr)
            raise SystemExit(1)
        if self.report:
            from ..report import write_report

            paths = write_report(out)
            print(f"report: {len(paths)} files in {out / 'report'}")


@dataclass(frozen=True)
class Rank:
    """Stable-rank profiles of a trained encoder and the freeze depths they predict: k* = argmax sr(W) (the
    paper's predictor), argmax sr(H) of the uncentred and of the centred activations, and argmax Δsr, the change
    sr(W) − sr(W at initialisation). See docs/protocol.md (stable rank)."""

    encoder: Positional[Path]
    """Folder of a saved cohort (cfg.json + model.safetensors)."""
    grid: tuple[int, int] | None = None
    """H W of the grid for the activation ranks; default: the cohort's recorded grid, else 64 64."""
    init_seed: int | None = None
    """Seed the encoder was initialised from, for sr(W) at initialisation and Δsr; default: the seed the
    checkpoint records (a sweep's cohort), else the one its `inrlens cohort` run folder records; without one,
    those columns are left out."""

    def run(self) -> None:
        from ..probes.rank import profile, recorded_init_seed
        from ..store import load_stack

        if self.grid is not None and min(self.grid) < 1:
            raise ValueError(f"--grid: H and W must be >= 1, got {self.grid[0]} {self.grid[1]}")
        stack, meta = load_stack(self.encoder)
        shape = self.grid if self.grid is not None else tuple(meta.get("grid") or (64, 64))
        seed, where = (self.init_seed, "--init-seed") if self.init_seed is not None else recorded_init_seed(self.encoder, meta)
        prof = profile(stack, shape, init_seed=seed)
        tags = [("W", prof.k_w), ("H", prof.k_h), ("Hc", prof.k_h_centred), ("dsr", prof.k_delta)]
        rows = []
        for ell in range(len(prof.sr_w)):
            rows.append({"layer": ell, "sr_w": prof.sr_w[ell], "sr_w_init": prof.sr_w_init[ell] if prof.sr_w_init else None,
                         "delta_sr": prof.delta_sr[ell] if prof.delta_sr else None, "sr_h": prof.sr_h[ell],
                         "sr_h_centred": prof.sr_h_centred[ell], "argmax_of": " ".join(t for t, k in tags if k == ell)})
        init = f"init seed {seed} ({where})" if seed is not None else "no init seed recorded (pass --init-seed for sr_w_init, delta_sr)"
        print_table(rows, ["layer", "sr_w", "sr_w_init", "delta_sr", "sr_h", "sr_h_centred", "argmax_of"],
                    f"{self.encoder} ({stack.cfg.backbone}, width {stack.cfg.width}); sr(H) on the {shape[0]}x{shape[1]} grid; {init}")
        delta = f"{prof.k_delta}" if prof.k_delta is not None else "n/a (no init seed)"
        print(f"predicted freeze depth k* = argmax sr(W) = {prof.k_w}; argmax sr(H) = {prof.k_h}; "
              f"argmax sr(H) centred = {prof.k_h_centred}; argmax Δsr = {delta}")
        print("argmax_of: W = sr(W), H = sr(H) uncentred, Hc = sr(H) centred (mean over the grid subtracted), "
              "dsr = Δsr = sr(W) − sr(W) at initialisation")


def _check_report_paths(run_dir: Path, out: Path | None) -> None:
    """`inrlens report` input checks, one line each, before anything is written: RUN_DIR must be a sweep's
    folder (or hold result rows), not another command's run folder; --out must not be a file."""
    import json

    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    run_json = run_dir / "run.json"
    if run_dir.is_dir() and run_json.is_file():
        try:
            cmd = json.loads(run_json.read_text()).get("cmd")
        except (OSError, ValueError, AttributeError):
            cmd = None
        if cmd == "reproduce":
            raise ValueError(f"{run_dir}: is an `inrlens reproduce` run, not a sweep; its sweep is {run_dir / 'sweep'} "
                             f"(inrlens report {run_dir / 'sweep'})")
        if cmd == "ladder" and not (run_dir / "plan.json").is_file():  # a ladder's root; each rung is a sweep folder
            raise ValueError(f"{run_dir}: is an `inrlens ladder` run; report one rung (inrlens report {run_dir / 'rungs'}/<rung>) "
                             f"or rewrite its summary (inrlens ladder --summary-only --out {run_dir})")
        if cmd not in (None, "sweep", "ladder"):
            raise ValueError(f"{run_dir}: holds an `inrlens {cmd}` run, not a sweep; give a sweep's run folder")
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")


@dataclass(frozen=True)
class Report:
    """Regenerate every table and figure of a sweep from its results (OUT/report)."""

    run_dir: Positional[Path]
    """A sweep run folder (or a folder of results *.jsonl)."""
    out: Path | None = None
    """Where to write (default RUN_DIR/report)."""
    noise: tuple[str, ...] = ()
    """Sources whose encoders were trained on noise, besides those the results or the sweep's run.json mark as
    ``noise:…`` datasets (Table 1 marks them; noise_vs_image.md compares them with the image-trained sources)."""
    analogue: tyro.conf.UseAppendAction[tuple[str, ...]] = ()
    """Which paper dataset a target stands in for, NAME=celeba|oasis|kodak (repeatable), for the regime check.
    Targets named celeba, oasis or kodak need none (see docs/presets.md)."""

    def run(self) -> None:
        from ..report import write_report
        from ..stats import check_analogues

        pairs = [a.partition("=") for a in self.analogue]
        bad = [a for a, (k, sep, v) in zip(self.analogue, pairs) if not (k and sep and v)]
        if bad:
            raise ValueError(f"--analogue expects NAME=celeba|oasis|kodak, got {bad[0]!r}")
        analogues = check_analogues({k: v for k, _, v in pairs})
        _check_report_paths(self.run_dir, self.out)
        paths = write_report(self.run_dir, self.out, analogues=analogues, noise=self.noise)
        for p in paths:
            print(p)
