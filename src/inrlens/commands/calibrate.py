"""``inrlens calibrate``: the no-freeze PSNR of candidate test-time settings beside the paper's band.

A thin command over :mod:`inrlens.calibrate`: it reads a preset (datasets, [study] analogues, the sweep's
cohort settings), narrows it to a few test images, and measures the candidates in this process.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from tyro.conf import UseAppendAction


@dataclass(frozen=True)
class Calibrate:
    """No-freeze test PSNR per (backbone, target) for candidate widths × lrs × steps, beside the paper's band."""

    preset: str = "demo"
    """Preset whose datasets, [study] analogues and sweep settings are calibrated: demo, cpu, paper or a .toml path."""
    data: UseAppendAction[tuple[str, ...]] = ()
    """Datasets NAME=PATH added to / replacing the preset's (as for `inrlens reproduce`)."""
    out: Path | None = None
    """Output folder (default runs/calibrate-<preset>): calibration.md, calibration.json, runs/ (cohorts, fit rows).
    A rerun into the same folder skips the fits already there."""
    backbones: tuple[str, ...] = ()
    """Backbones to calibrate (default: the preset's)."""
    width: tuple[int, ...] = ()
    """Candidate hidden widths (default: each backbone's width in the preset). A width trains its own cohorts."""
    lr: tuple[float, ...] = ()
    """Candidate test-time learning rates (default: each backbone's in the preset)."""
    steps: tuple[int, ...] = ()
    """Candidate test-time step counts (default: each backbone's in the preset).
    Shorter ones are read from the curve of the longest fit."""
    n_test: int | None = None
    """Test images per target (default: the preset's n_test)."""
    seeds: tuple[int, ...] = ()
    """Re-initialisation seeds (default: the preset's)."""
    sources: tuple[str, ...] = ()
    """Datasets whose cohorts start the fits (default: the preset's sources)."""
    targets: tuple[str, ...] = ()
    """Datasets whose test images are fitted (default: the preset's targets)."""
    threads: int | None = None
    """torch threads (default: the preset's [exec] threads)."""
    device: str | None = None
    """Device (default: the preset's [exec] device)."""

    def run(self) -> None:
        import os

        import torch

        from ..calibrate import calibrate, grid
        from ..rules import check_seeds
        from ..store import prepare_run
        from ..study import resolve_preset
        from ..sweep import make_plan

        plan = resolve_preset(self.preset, tuple(self.data), device=self.device)
        kw = {}
        if self.n_test is not None:
            if self.n_test < 1:
                raise ValueError(f"--n-test must be >= 1, got {self.n_test}")
            kw["n_test"] = self.n_test
        if self.seeds:
            kw["seeds"] = check_seeds(self.seeds)
        for name in ("sources", "targets"):
            vals = getattr(self, name)
            bad = [v for v in vals if v not in plan.datasets]
            if bad:
                raise ValueError(f"--{name}: {bad[0]!r} is not a dataset ({', '.join(plan.datasets)})")
            if vals:
                kw[name] = tuple(vals)
        spec = replace(plan.spec, **kw)
        cands = grid(spec, self.backbones, self.width, self.lr, self.steps)  # checks the lists
        make_plan(replace(spec, depths=("none",)), Path(os.devnull))  # every dataset error before anything is written
        threads = int(self.threads if self.threads is not None else plan.ex.threads)
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        out = Path(self.out) if self.out is not None else Path("runs") / f"calibrate-{plan.name}"
        conf = {"cmd": "calibrate", "preset": plan.name, "datasets": plan.datasets, "analogues": plan.study.analogues,
                "candidates": [c.__dict__ for c in cands], "n_test": spec.n_test, "seeds": list(spec.seeds)}
        # fit rows are keyed by every setting, so a new grid in the same folder only adds fits: record the latest
        out = prepare_run(out, conf, resume=True, overwrite=True)
        torch.set_num_threads(threads)
        meta = {"preset": plan.name, "datasets": ", ".join(f"{k}={v}" for k, v in plan.datasets.items()),
                "images": f"scale {spec.images.scale}" if spec.images.scale else (f"size {spec.images.size}" if spec.images.size
                                                                                    else "native"),
                "test images per target": spec.n_test, "seeds": len(spec.seeds), "sources": ", ".join(spec.sources) or "all",
                "cohort": f"{spec.cohort_train.steps} steps max, stop at {spec.cohort_train.target_psnr} dB",
                "device": f"{plan.ex.device}, {threads} thread(s)"}
        res = calibrate(spec, out, plan.study.analogues, self.backbones, self.width, self.lr, self.steps, threads,
                        plan.ex.device, meta)
        print((out / "calibration.md").read_text())
        print(f"calibrate: {len(res['units'])} unit PSNRs in {res['seconds']:.0f} s → {out / 'calibration.md'}")


__all__ = ["Calibrate"]
