"""Checking the recommendation on images: a short freeze sweep, the best-k set and the verdicts."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..nets import Stack

Log = Callable[[str], None]


# ------------------------------------------------------------------------------------------------ verification
def _group_signals(signals: Sequence[Any]) -> list[list[int]]:
    from ..data import group_by_shape

    return list(group_by_shape(signals).values())


def _verify_fits(encoder: Stack, signals: Sequence[Any], depths: Sequence[Any], seeds: Sequence[int], train: Any, lr_random: float,
                 steps: int, log: Log) -> list[dict[str, Any]]:
    """One row per (depth, image, seed) of :func:`verify`'s short sweep: depth label, image, unit (its index), seed,
    PSNR (None when diverged or not finite), diverged."""
    from .. import rules
    from ..fit import fit_single, fit_transfer

    enc = encoder
    if enc.weights[-1].shape[0] > 1 or any(t.shape[0] > 1 for t in enc.encoding.values()):
        enc = enc.member(0)  # the shared encoder with one head: the head is redrawn by every transfer anyway
    rows: list[dict[str, Any]] = []
    for depth in depths:
        label = rules.depth_label(depth)
        log(f"verify: depth {label} on {len(signals)} image(s) × {len(seeds)} seed(s), {steps} steps")
        for idx in _group_signals(signals):
            sigs = [signals[i] for i in idx]
            if depth == "random":
                _, fr, res = fit_single(sigs, encoder.cfg, dataclasses.replace(train, lr=lr_random), seeds, progress=False,
                                        with_lpips=False)
            else:
                _, fr, res = fit_transfer(enc, sigs, rules.freeze_of(depth), train, seeds, progress=False, with_lpips=False)
            for j, r in enumerate(res):
                i = idx[j // len(seeds)]
                rows.append({"depth": label, "image": signals[i].name, "unit": i, "seed": r.seed,
                             "psnr": None if r.diverged or not math.isfinite(r.psnr) else float(r.psnr), "diverged": bool(r.diverged)})
    return rows


def _verify_values(rows: Sequence[dict[str, Any]], labels: Sequence[str]) -> dict[str, dict[tuple[int, int], float]]:
    """Depth label → {(unit, seed): PSNR} of the rows with a PSNR (the paired units of the intervals)."""
    values: dict[str, dict[tuple[int, int], float]] = {lab: {} for lab in labels}
    for r in rows:
        if r["psnr"] is not None:
            values[r["depth"]][(r["unit"], r["seed"])] = r["psnr"]
    return values


def verify(encoder: Stack, signals: Sequence[Any], k: int, *, predictors: Mapping[str, int] | None = None,
           seeds: Sequence[int] = (0, 1), steps: int = 200, lr: float | None = None, random_lr: float | None = None,
           device: str = "auto", log: Log | None = None) -> dict[str, Any]:
    """A short freeze sweep from ``encoder`` on ``signals``: no-freeze, every k = 0..L−1 and random init, each on
    every (image, seed), with :func:`inrlens.fit.fit_transfer` / :func:`inrlens.fit.fit_single`. Returns the
    per-depth PSNR mean ± sample std, the best-k set (paired 95% t intervals over (image, seed) units against the
    best depth, :func:`inrlens.stats.best_set`), whether ``k`` (and each of ``predictors``) is in it, and the paired
    gain of ``k`` over no-freeze with its interval.

    lr: ``lr`` else the protocol's transfer rate for the freeze fits; ``random_lr`` else the backbone's
    single-signal rate for the random-init baseline (:func:`inrlens.rules.lr_for`)."""
    from .. import rules, stats
    from ..config import TrainConfig

    log = log or (lambda s: None)
    seeds = rules.check_seeds(seeds, "--seeds")
    if not signals:
        raise ValueError("--verify: no images to fit")
    if isinstance(steps, bool) or int(steps) < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    L = encoder.cfg.depth
    if not 0 <= k < L:
        raise ValueError(f"recommended depth {k} is outside 0..{L - 1}")
    backbone = encoder.cfg.backbone
    lr_t = rules.lr_for("transfer", backbone, lr)
    lr_r = rules.lr_for("random", backbone, random_lr)
    train = TrainConfig(steps=int(steps), lr=lr_t, device=device, log_every=max(1, int(steps)))
    depths: list[Any] = ["none", *range(L), "random"]
    rows = _verify_fits(encoder, signals, depths, seeds, train, lr_r, steps, log)
    labels = [rules.depth_label(d) for d in depths]
    values = _verify_values(rows, labels)
    per_depth = []
    for lab in labels:
        m, s = rules.mean_std(values[lab].values())
        per_depth.append({"depth": lab, "n": len(values[lab]), "psnr_mean": m, "psnr_std": s})
    bs = stats.best_set(values)

    def judge(kk: int) -> str:
        a = stats.agreement(str(kk), bs, labels)
        if a in ("agrees", "disagrees"):
            return a
        return f"inconclusive (n = {len(values[str(kk)])})" if a == "undecided" else a

    gm, glo, ghi, gn = stats.mean_ci(stats.pair_diffs(values[str(k)], values["none"]))
    return {
        "images": [s.name for s in signals], "shapes": sorted({s.shape for s in signals}),
        "seeds": list(seeds), "steps": int(steps), "lr": lr_t, "random_lr": lr_r, "device": str(device),
        "units": len(signals) * len(seeds),
        "depths": per_depth, "best": bs["best"], "best_set": list(bs["set"]),
        "diffs": {d: {"mean": c[0], "lo": c[1], "hi": c[2], "n": c[3]} for d, c in bs["diffs"].items()},
        "recommended": int(k), "in_best_set": str(k) in bs["set"], "verdict": judge(k),
        "gain_vs_none": {"mean": gm, "lo": glo, "hi": ghi, "n": gn,
                         "verdict": stats.verdict(glo, ghi, True, n=gn)},
        "predictors": {name: {"k": int(kk), "in_best_set": str(kk) in bs["set"], "verdict": judge(int(kk))}
                       for name, kk in (predictors or {}).items() if kk is not None},
        "rows": rows,
    }
