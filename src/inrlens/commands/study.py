"""``inrlens sweep | rank | report``: the freeze study (SPEC §3–4, §7 F1–F3, §8)."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from ..grid import ExecSpec, SweepSpec, load_spec_file, merge_flags, run_sweep, spec_from_dict
from ..store import prepare_run
from .core import print_table

Positional = tyro.conf.Positional


@dataclass(frozen=True)
class Sweep:
    """Freeze sweep: sources × targets × backbones × {none, k = 0..L−1, random} × test images × seeds."""

    spec: Annotated[SweepSpec, tyro.conf.arg(name="")] = SweepSpec()
    exec: Annotated[ExecSpec, tyro.conf.arg(name="")] = ExecSpec()
    out: Path = Path("runs/sweep")
    """Run folder (run.json, cohorts/, results/*.jsonl, report/)."""
    config: Path | None = None
    """Sweep definition file (.toml, .yaml or .py); flags that differ from the defaults override it."""
    overwrite: bool = False
    """Replace the spec recorded in an existing run folder (results already there are kept, never deleted)."""
    report: bool = True
    """Write tables and figures to OUT/report when the sweep finishes."""

    def run(self) -> None:
        spec, ex = self.spec, self.exec
        if self.config is not None:
            file_spec, file_ex = spec_from_dict(load_spec_file(self.config))
            spec = merge_flags(file_spec, self.spec)
            if file_ex is not None:
                ex = _merge_exec(file_ex, self.exec)
        if ex.jobs < 1:
            raise ValueError("--jobs must be >= 1")
        # A rerun of the same spec continues (skips finished keys); a different spec is refused.
        out = prepare_run(self.out, {"cmd": "sweep", "spec": spec}, resume=True, overwrite=self.overwrite)
        summary = run_sweep(spec, ex, out)
        print(f"sweep: {summary['done']}/{summary['fits']} fits in {out / 'results'}")
        if summary["errors"]:
            for e in summary["errors"]:
                print(f"inrlens: {e}", file=sys.stderr)
            raise SystemExit(f"inrlens: error: {len(summary['errors'])} job(s) failed; rerun the same command to retry the missing fits")
        if summary["done"] < summary["fits"]:
            raise SystemExit(f"inrlens: error: {summary['fits'] - summary['done']} fits are missing; rerun to finish")
        if self.report:
            from ..report import write_report

            paths = write_report(out)
            print(f"report: {len(paths)} files in {out / 'report'}")


def _merge_exec(file_ex: ExecSpec, flags: ExecSpec) -> ExecSpec:
    default = ExecSpec()
    kw = {f.name: getattr(flags, f.name) for f in dataclasses.fields(ExecSpec) if getattr(flags, f.name) != getattr(default, f.name)}
    return dataclasses.replace(file_ex, **kw)


@dataclass(frozen=True)
class Rank:
    """Stable-rank profile of a trained encoder and the freeze depth it predicts (k* = argmax sr(W))."""

    encoder: Positional[Path]
    """Folder of a saved cohort (cfg.json + model.safetensors)."""
    grid: tuple[int, int] | None = None
    """H W of the grid for the activation ranks; default: the cohort's recorded grid, else 64 64."""

    def run(self) -> None:
        from ..probes.rank import profile
        from ..store import load_stack

        stack, meta = load_stack(self.encoder)
        shape = self.grid
        if shape is None:
            shape = tuple(meta.get("grid") or (64, 64))
        if min(shape) < 1:
            raise ValueError(f"--grid must be positive, got {shape}")
        prof = profile(stack, shape)
        rows = [{"layer": ell, "sr_w": w, "sr_h": h, "pred_w": "*" if ell == prof.k_w else "", "pred_h": "*" if ell == prof.k_h else ""}
                for ell, (w, h) in enumerate(zip(prof.sr_w, prof.sr_h))]
        print_table(rows, ["layer", "sr_w", "sr_h", "pred_w", "pred_h"],
                    f"{self.encoder} ({stack.cfg.backbone}, width {stack.cfg.width}); sr(H) on the {shape[0]}x{shape[1]} grid")
        print(f"predicted freeze depth k* = argmax sr(W) = {prof.k_w}; argmax sr(H) = {prof.k_h}")


@dataclass(frozen=True)
class Report:
    """Regenerate every table and figure of a sweep from its results (OUT/report)."""

    run_dir: Positional[Path]
    """A sweep run folder (or a folder of results *.jsonl)."""
    out: Path | None = None
    """Where to write (default RUN_DIR/report)."""

    def run(self) -> None:
        from ..report import write_report

        paths = write_report(self.run_dir, self.out)
        for p in paths:
            print(p)
