"""``inrlens fit | cohort | transfer``: the core regimes on images from paths or built-in samples.

Each command parses its flags, loads the images, calls one function of :mod:`inrlens.workflows` (where the
run-folder logic lives: keys, resume, checkpoints, rows) and prints a table.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tyro

from ..config import DataConfig, NetConfig, TrainConfig
from ..data import resolve
from ..rules import mean_std
from ..workflows import COHORT_TRAIN, fit_images, summarise_transfer, train_cohort, transfer_images

Positional = tyro.conf.Positional


def print_table(rows: Sequence[dict[str, Any]], cols: Sequence[str], title: str = "") -> None:
    """Fixed-width table on stdout (floats with 2–4 decimals, NaN and None shown as 'n/a')."""
    def fmt(v: Any) -> str:
        if v is None:
            return "n/a"
        if isinstance(v, float):
            return "n/a" if math.isnan(v) else (f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}")
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(x[i]) for x in cells]) for i, c in enumerate(cols)]
    if title:
        print(title)
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for x in cells:
        print("  ".join(v.ljust(w) for v, w in zip(x, widths)))


def _check_counts(n: int | None = None, limit: int | None = None) -> None:
    """--n and --limit checked before any image is read or file written (a negative slice would drop images)."""
    if n is not None and n < 1:
        raise ValueError(f"--n must be >= 1 (the cohort size), got {n}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")


@dataclass(frozen=True)
class Fit:
    """Fit one INR per image (× seed) from random init (single-signal regime)."""

    images: Positional[tuple[str, ...]]
    """Image files, folders, or built-in sets sample:photos | sample:faces | sample:mri."""
    out: Path = Path("runs/fit")
    """Output folder: results.jsonl, run.json and one checkpoint per image shape, models/<H>x<W> (a later fit of
    other images of that shape into this folder: models/<H>x<W>-2, …; each row names its checkpoint)."""
    net: NetConfig = NetConfig()
    train: TrainConfig = TrainConfig()
    data: DataConfig = DataConfig()
    seeds: tuple[int, ...] = (0,)
    """Initialisation seeds; every (image, seed) is one member of a stack."""
    limit: int | None = None
    """Use only the first N images."""
    lpips: bool = True
    """Compute LPIPS (NaN with a note when its weights are not installed)."""
    resume: bool = False
    """Continue a run in an existing folder (skips finished images)."""
    overwrite: bool = False
    """Replace the config recorded in an existing folder; its results of another config are moved aside to
    results.jsonl.replaced-<timestamp> (docs/run-folder.md)."""

    def run(self) -> None:
        _check_counts(limit=self.limit)
        sigs = resolve(self.images, self.data)[: self.limit]
        t0 = time.perf_counter()
        rows = fit_images(sigs, self.out, self.net, self.train, self.seeds, data=self.data, lpips=self.lpips,
                          resume=self.resume, overwrite=self.overwrite, log=print)
        print_table(rows, ["image", "seed", "psnr", "ssim", "lpips", "status"],
                    f"single {self.net.backbone} fits, {time.perf_counter() - t0:.1f} s → {self.out}")


@dataclass(frozen=True)
class Cohort:
    """Train a STRAINER cohort: one shared encoder, one linear head per image, loss Σ MSE_i."""

    images: Positional[tuple[str, ...]]
    """Image files, folders, or sample:NAME."""
    out: Path = Path("runs/cohort")
    """Output folder: the encoder checkpoint (cfg.json + model.safetensors), results.jsonl, run.json."""
    n: int = 10
    """Cohort size N: drawn at random (split_seed) from the images [paper: 10]."""
    split_seed: int = 0
    """Seed of the cohort/test split."""
    seed: int = 0
    """Initialisation seed of the encoder (head i uses seed + i)."""
    net: NetConfig = NetConfig()
    train: TrainConfig = COHORT_TRAIN
    """Cohort schedule: up to 5000 steps, stop at cohort-mean PSNR ≥ 30 dB [paper]; lr None = 1e-4 [STRAINER]."""
    data: DataConfig = DataConfig()
    resume: bool = False
    """Do nothing if this folder already holds a finished cohort with this config; continue an interrupted one
    from its last training state (see --train.checkpoint-every)."""
    overwrite: bool = False
    """Replace the config recorded in an existing folder; its results of another config are moved aside to
    results.jsonl.replaced-<timestamp> (docs/run-folder.md)."""

    def run(self) -> None:
        _check_counts(n=self.n)
        sigs = resolve(self.images, self.data)
        rows = train_cohort(sigs, self.out, self.net, self.train, n=self.n, split_seed=self.split_seed, seed=self.seed,
                            data=self.data, resume=self.resume, overwrite=self.overwrite, log=print)
        mean = mean_std(r.get("psnr") for r in rows)[0]
        steps = rows[0].get("steps_run") if rows else 0
        secs = rows[0].get("fit_seconds") if rows else 0.0
        print_table(rows, ["image", "psnr", "ssim", "status"],
                    f"cohort {self.net.backbone}: {len(rows)} heads, {steps} steps, {secs:.1f} s, mean PSNR {mean:.2f} dB → {self.out}")


@dataclass(frozen=True)
class Transfer:
    """Fit new images from a cohort encoder: freeze layers 0..k, re-initialise the rest (docs/protocol.md)."""

    encoder: Positional[Path]
    """Folder of a cohort trained by `inrlens cohort`."""
    images: Positional[tuple[str, ...]]
    """Target image files, folders, or sample:NAME."""
    out: Path = Path("runs/transfer")
    """Output folder: results.jsonl (one line per image × seed × depth) and run.json."""
    freeze: tuple[str, ...] = ("all",)
    """Depths to run: k values 0..L−1, 'none' (no-freeze baseline), 'random' (random-init baseline), or 'all'
    (= none, 0..L−1 and random)."""
    seeds: tuple[int, ...] = (0,)
    """Re-initialisation seeds [paper: 3 seeds]."""
    limit: int | None = None
    """Use only the first N images (after excluding the cohort's own images)."""
    include_cohort: bool = False
    """Also fit images that were members of the cohort (excluded by default: they are not test images)."""
    train: TrainConfig = TrainConfig()
    """Test-time schedule of the freeze-k and no-freeze fits (and of the random-init baseline, except its lr);
    lr None = 1e-4 [paper], as in `inrlens sweep`."""
    random_lr: float | None = None
    """Learning rate of the random-init baseline; None = the backbone's single-signal lr (SIREN 1e-4, FFMLP
    1e-3), as in `inrlens sweep`."""
    reinit: Literal["fresh", "first_layer_rule"] = "fresh"
    """How the re-initialised layers k+1..L−1 of a freeze-k fit are drawn: 'fresh' (as a random init of the
    member's seed) [paper], or 'first_layer_rule' (layer k+1 by the backbone's first-layer rule, as STRAINER's
    public code; docs/protocol.md). As the sweep's `reinit`."""
    data: DataConfig = DataConfig()
    lpips: bool = True
    """Compute LPIPS (NaN with a note when weights are not installed)."""
    resume: bool = False
    """Continue a run in an existing folder (skips finished (image, seed, depth) rows)."""
    overwrite: bool = False
    """Replace the config recorded in an existing folder; its results of another config are moved aside to
    results.jsonl.replaced-<timestamp> (docs/run-folder.md)."""

    def run(self) -> None:
        _check_counts(limit=self.limit)
        sigs = resolve(self.images, self.data)
        rows = transfer_images(self.encoder, sigs, self.out, self.freeze, seeds=self.seeds, train=self.train, data=self.data,
                               random_lr=self.random_lr, reinit=self.reinit, include_cohort=self.include_cohort, limit=self.limit,
                               lpips=self.lpips, resume=self.resume, overwrite=self.overwrite, log=print)
        print_table(summarise_transfer(rows), ["depth", "n", "psnr", "psnr_std", "ssim", "lpips"],
                    f"transfer from {self.encoder} → {self.out} (psnr_std: sample std over images × seeds)")
