"""``inrlens fit | cohort | transfer``: the core regimes on images from paths or built-in samples."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence

import tyro

from ..config import DataConfig, NetConfig, TrainConfig, config_hash, to_dict
from ..data import Signal, group_by_shape
from ..fit import MemberResult, fit_cohort, fit_single, fit_transfer, resolve_device, runtime_info
from ..data import resolve
from ..store import append_row, checkpoint_ready, done_keys, load_stack, prepare_run, save_stack

Positional = tyro.conf.Positional


def print_table(rows: Sequence[dict[str, Any]], cols: Sequence[str], title: str = "") -> None:
    """Fixed-width table on stdout (floats with 2–4 decimals, NaN shown as 'n/a')."""
    def fmt(v: Any) -> str:
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


def _rows(results: Sequence[MemberResult], base: dict[str, Any], fit_seconds: float) -> list[dict[str, Any]]:
    out = []
    for r in results:
        row = dict(base)
        row.update(r.row())
        row["fit_seconds"] = fit_seconds
        row["status"] = "diverged" if r.diverged else "ok"
        row["key"] = config_hash({k: row[k] for k in ("config", "image", "seed", "regime", "freeze")})
        out.append(row)
    return out


def _by_shape(signals: Sequence[Signal]) -> list[list[Signal]]:
    return [[signals[i] for i in idx] for idx in group_by_shape(signals).values()]


@dataclass(frozen=True)
class Fit:
    """Fit one INR per image (× seed) from random init (single-signal regime)."""

    images: Positional[tuple[str, ...]]
    """Image files, folders, or built-in sets sample:photos | sample:faces | sample:mri."""
    out: Path = Path("runs/fit")
    """Output folder: results.jsonl, run.json and one checkpoint per image shape under models/."""
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
    """Replace the config recorded in an existing folder (results already there are kept)."""

    def run(self) -> None:
        sigs = resolve(self.images, self.data)[: self.limit]
        conf = {"cmd": "fit", "net": self.net, "train": self.train, "data": self.data, "seeds": self.seeds}
        out = prepare_run(self.out, conf, self.resume, self.overwrite)
        done = done_keys(out / "results.jsonl")
        dev = resolve_device(self.train.device)
        base = {"regime": "single", "freeze": None, "config": config_hash(conf), "net": to_dict(self.net),
                "train": to_dict(self.train), "runtime": runtime_info(dev, self.train)}
        rows = []
        t0 = time.perf_counter()
        for gi, group in enumerate(_by_shape(sigs)):
            keys = [config_hash({"config": base["config"], "image": s.name, "seed": sd, "regime": "single", "freeze": None})
                    for s in group for sd in self.seeds]
            if all(k in done for k in keys):
                print(f"skip {len(group)} image(s) of shape {group[0].shape}: already done")
                continue
            stack, fr, res = fit_single(group, self.net, self.train, self.seeds, with_lpips=self.lpips)
            h, w = group[0].shape
            save_stack(stack, out / "models" / f"{h}x{w}", {"regime": "single", "members": [f"{r.image}@{r.seed}" for r in res]})
            for row in _rows(res, base, fr.seconds):
                if row["key"] not in done:  # a group refitted after a kill between its rows: no key twice
                    append_row(out / "results.jsonl", row)
                rows.append(row)
        print_table(rows, ["image", "seed", "psnr", "ssim", "lpips", "status"], f"single {self.net.backbone} fits, {time.perf_counter() - t0:.1f} s → {out}")


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
    train: TrainConfig = TrainConfig(steps=5000, target_psnr=30.0)
    """Cohort schedule: up to 5000 steps, stop at cohort-mean PSNR ≥ 30 dB [paper]; lr 1e-4 [STRAINER]."""
    data: DataConfig = DataConfig()
    resume: bool = False
    """Do nothing if this folder already holds a finished cohort with this config."""
    overwrite: bool = False
    """Replace the config recorded in an existing folder."""

    def run(self) -> None:
        from ..data import split

        sigs = resolve(self.images, self.data)
        cohort, _ = split(sigs, self.n, 0, self.split_seed)
        conf = {"cmd": "cohort", "n": self.n, "split_seed": self.split_seed, "seed": self.seed, "net": self.net,
                "train": self.train, "data": self.data, "images": [s.name for s in cohort]}
        out = prepare_run(self.out, conf, self.resume, self.overwrite)
        done = done_keys(out / "results.jsonl")
        if self.resume and checkpoint_ready(out) and len(done) >= len(cohort):  # complete pair + every head's row
            print(f"{out}: cohort already trained; nothing to do")
            return
        stack, fr, res = fit_cohort(cohort, self.net, self.train, self.seed)
        save_stack(stack, out, {"regime": "cohort", "members": [s.name for s in cohort], "steps_run": fr.steps_run,
                                "seconds": fr.seconds, "data": to_dict(self.data)})
        dev = resolve_device(self.train.device)
        base = {"regime": "cohort", "freeze": None, "config": config_hash(conf), "net": to_dict(self.net),
                "train": to_dict(self.train), "runtime": runtime_info(dev, self.train), "steps_run": fr.steps_run}
        rows = _rows(res, base, fr.seconds)
        for row in rows:
            if row["key"] not in done:
                append_row(out / "results.jsonl", row)
        mean = sum(r.psnr for r in res) / len(res)
        print_table(rows, ["image", "psnr", "ssim", "status"],
                    f"cohort {self.net.backbone}: {len(res)} heads, {fr.steps_run} steps, {fr.seconds:.1f} s, mean PSNR {mean:.2f} dB → {out}")


@dataclass(frozen=True)
class Transfer:
    """Fit new images from a cohort encoder: freeze layers 0..k, re-initialise the rest (SPEC §3)."""

    encoder: Positional[Path]
    """Folder of a cohort trained by `inrlens cohort`."""
    images: Positional[tuple[str, ...]]
    """Target image files, folders, or sample:NAME."""
    out: Path = Path("runs/transfer")
    """Output folder: results.jsonl (one line per image × seed × depth) and run.json."""
    freeze: tuple[Literal["none", "random", "all", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"], ...] = ("all",)
    """Depths to run: k values, 'none' (no-freeze baseline), 'random' (random-init baseline), or 'all'
    (= none, 0..L−1 and random)."""
    seeds: tuple[int, ...] = (0,)
    """Re-initialisation seeds [paper: 3 seeds]."""
    limit: int | None = None
    """Use only the first N images (after excluding the cohort's own images)."""
    include_cohort: bool = False
    """Also fit images that were members of the cohort (excluded by default: they are not test images)."""
    train: TrainConfig = TrainConfig()
    data: DataConfig = DataConfig()
    lpips: bool = True
    """Compute LPIPS (NaN with a note when weights are not installed)."""
    resume: bool = False
    """Continue a run in an existing folder (skips finished (image, seed, depth) rows)."""
    overwrite: bool = False
    """Replace the config recorded in an existing folder."""

    def depths(self, L: int) -> list[int | None | str]:
        out: list[int | None | str] = []
        for f in self.freeze:
            items: list[int | None | str] = [None, *range(L), "random"] if f == "all" else [None if f == "none" else ("random" if f == "random" else int(f))]
            for k in items:
                if isinstance(k, int) and not 0 <= k < L:
                    raise ValueError(f"freeze depth {k} is outside 0..{L - 1} for the {L}-layer encoder {self.encoder}")
                if k not in out:
                    out.append(k)
        return out

    def run(self) -> None:
        encoder, meta = load_stack(self.encoder)
        sigs = resolve(self.images, self.data)
        if not self.include_cohort:
            members = set(meta.get("members", []))
            sigs = [s for s in sigs if s.name not in members]
            if not sigs:
                raise ValueError("every target image is a member of the cohort; pass --include-cohort to fit them anyway")
        sigs = sigs[: self.limit]
        if sigs[0].channels != encoder.out_features:
            from ..data import harmonise_channels

            sigs = harmonise_channels(sigs, "rgb" if encoder.out_features == 3 else "gray")
        conf = {"cmd": "transfer", "encoder": str(self.encoder), "train": self.train, "data": self.data, "seeds": self.seeds}
        depths = self.depths(encoder.cfg.depth)  # a bad depth fails before the run folder is touched
        out = prepare_run(self.out, conf, self.resume, self.overwrite)
        done = done_keys(out / "results.jsonl")
        dev = resolve_device(self.train.device)
        chash = config_hash(conf)
        rows = []
        for k in depths:
            regime = "random" if k == "random" else "transfer"
            freeze = None if k == "random" else k
            for group in _by_shape(sigs):
                keyof = lambda s, sd: config_hash({"config": chash, "image": s.name, "seed": sd, "regime": regime, "freeze": freeze})  # noqa: E731
                if all(keyof(s, sd) in done for s in group for sd in self.seeds):
                    continue
                if regime == "random":
                    lr_train = self.train if self.train.lr is not None else replace(self.train, lr=1e-4)
                    _, fr, res = fit_single(group, encoder.cfg, lr_train, self.seeds, with_lpips=self.lpips)
                else:
                    _, fr, res = fit_transfer(encoder, group, freeze, self.train, self.seeds, with_lpips=self.lpips)
                base = {"regime": regime, "freeze": freeze, "config": chash, "net": to_dict(encoder.cfg),
                        "train": to_dict(self.train), "runtime": runtime_info(dev, self.train), "encoder": str(self.encoder)}
                for row in _rows(res, base, fr.seconds):
                    if row["key"] not in done:  # a group refitted after a kill between its rows: no key twice
                        append_row(out / "results.jsonl", row)
                    rows.append(row)
        summary = _summarise(rows)
        print_table(summary, ["depth", "n", "psnr", "psnr_std", "ssim", "lpips"], f"transfer from {self.encoder} → {out}")


def _summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std of PSNR (and mean SSIM/LPIPS) per depth over images × seeds."""
    import numpy as np

    order: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        tag = "random" if r["regime"] == "random" else ("none" if r["freeze"] is None else f"k={r['freeze']}")
        order.setdefault(tag, []).append(r)
    out = []
    for tag, rs in order.items():
        ok = [r for r in rs if r["status"] == "ok"]
        val = lambda key: np.array([r[key] for r in ok], dtype=float)  # noqa: E731
        out.append({"depth": tag, "n": len(ok), "psnr": float(np.mean(val("psnr"))) if ok else math.nan,
                    "psnr_std": float(np.std(val("psnr"))) if ok else math.nan,
                    "ssim": float(np.mean(val("ssim"))) if ok else math.nan,
                    "lpips": float(np.nanmean(val("lpips"))) if ok and not np.isnan(val("lpips")).all() else math.nan})
    return out
