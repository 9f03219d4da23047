"""One function per rule of the protocol, used by every entry point (library, CLI, sweep, reproduce).

Each rule here used to be retyped in several modules, and the copies drifted apart. Anything that decides a
number of the study from a name (a learning rate, a freeze depth, the "±" of a table) belongs here, so that
``inrlens transfer``, ``inrlens sweep`` and ``inrlens reproduce`` resolve the same values (a test checks it).

The defaults and where they come from are described in docs/protocol.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

Regime = Literal["single", "cohort", "transfer", "random"]
"""single: one INR per image from random init; cohort: STRAINER shared encoder + heads; transfer: a freeze-k or
no-freeze fit from a cohort encoder; random: the random-init baseline of a sweep (a single-signal fit)."""

Depth = int | Literal["none", "random"]
"""One regime of a freeze sweep: an int k (freeze layers 0..k), 'none' (no-freeze: every encoder layer starts
from the cohort and trains) or 'random' (random-init baseline)."""

COHORT_LR = 1e-4
"""Learning rate of cohort training, both backbones (STRAINER's public code)."""
TRANSFER_LR = 1e-4
"""Learning rate of freeze-k and no-freeze test-time fits, both backbones (the paper's test-time protocol)."""

STD_DDOF = 1
"""Every "±" in inrlens is the sample standard deviation (ddof = 1) over test images × seeds; 0 for one value."""


def lr_for(regime: Regime, backbone: str, override: float | None = None) -> float:
    """The learning rate of a fit: ``override`` when given, else the default of (regime, backbone).

    single and random (the random-init baseline is a single-signal fit): the backbone's own single-signal lr
    (from the backbone registry: SIREN 1e-4, FFMLP 1e-3); cohort: :data:`COHORT_LR`; transfer: :data:`TRANSFER_LR`.
    """
    if override is not None:
        lr = float(override)
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"learning rate must be a finite number > 0, got {override!r}")
        return lr
    if regime in ("single", "random"):
        from .backbones import get_backbone

        return float(get_backbone(backbone).default_lr)
    if regime == "cohort":
        return COHORT_LR
    if regime == "transfer":
        return TRANSFER_LR
    raise ValueError(f"unknown regime {regime!r}; use single, cohort, transfer or random")


def parse_depths(items: Iterable[str | int | None], L: int) -> list[Depth]:
    """Regimes of a freeze sweep in run order, without repeats.

    Each item is 'all' (= 'none', 0..L−1, 'random'), 'none' (or None), 'random', or a freeze depth k (int or
    digit string) in 0..L−1. Order: as given, 'all' expanded in place. One-line ValueError otherwise.
    """
    out: list[Depth] = []
    items = list(items)
    if not items:
        raise ValueError(f"no freeze depths given; use 'all', 'none', 'random' or k in 0..{L - 1}")
    for d in items:
        if d is None:
            d = "none"
        if isinstance(d, str):
            d = d.strip().lower()
        if d == "all":
            expanded: list[Depth] = ["none", *range(L), "random"]
        elif d in ("none", "random"):
            expanded = [d]  # type: ignore[list-item]
        else:
            try:
                k = int(d)
                if isinstance(d, float) or str(k) != str(d).lstrip("+"):
                    raise ValueError
            except (TypeError, ValueError):
                raise ValueError(f"freeze depth {d!r}: use 'all', 'none', 'random' or an integer 0..{L - 1}") from None
            if not 0 <= k < L:
                raise ValueError(f"freeze depth {k} is outside 0..{L - 1} for a {L}-layer encoder")
            expanded = [k]
        for k in expanded:
            if k not in out:
                out.append(k)
    return out


def freeze_of(depth: Depth) -> int | None:
    """The freeze depth a transfer fit takes: k for an int, None for 'none' (and for 'random', which is no transfer)."""
    return depth if isinstance(depth, int) else None


def depth_label(depth: Depth | None) -> str:
    """'none', 'random' or 'k' as a string (None means 'none'): the tag used in rows, tables and figures."""
    return "none" if depth is None else str(depth)


def mean_std(values: Iterable[float | None]) -> tuple[float, float]:
    """(mean, sample std with :data:`STD_DDOF`) of the finite values; (nan, nan) when none, std 0 for one."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(float(x))], dtype=float)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), (float(v.std(ddof=STD_DDOF)) if v.size > STD_DDOF else 0.0)


def ff_sigma_for(sigma_at_256: float, res: int | float) -> float:
    """FFMLP frequency scale at resolution ``res`` (longer side in pixels): σ = sigma_at_256 · res / 256, so that
    the Fourier features cover the same band relative to the pixel grid at any size."""
    return float(sigma_at_256) * float(res) / 256.0


BACKBONE_FIELDS: dict[str, tuple[str, str]] = {
    "width": ("net", "width"),
    "ff_features": ("net", "ff_features"),
    "steps": ("train", "steps"),
    "lr": ("train", "lr"),
    "cohort_steps": ("cohort_train", "steps"),
    "cohort_lr": ("cohort_train", "lr"),
    "random_lr": ("", "random_lr"),
}
"""Per-backbone settings of a sweep and the sweep field each one replaces: (nested config, field), or ("", field)
for a top-level field. ``steps`` and ``lr`` are the test-time schedule (freeze-k and no-freeze fits)."""


def backbone_spec(spec: Any, backbone: str) -> Any:
    """The sweep settings one backbone runs with: ``spec`` with the entry ``spec.per_backbone[backbone]``
    applied (each set field of it replaces the sweep field :data:`BACKBONE_FIELDS` names), and ``per_backbone``
    cleared. Without an entry for ``backbone`` this is ``spec`` itself, so keys are unchanged.

    The one place that resolves per-backbone settings: the sweep's plan and jobs, ``inrlens reproduce`` and
    ``inrlens calibrate`` all call it."""
    table = getattr(spec, "per_backbone", None) or {}
    over = table.get(backbone)
    if over is None:
        return spec
    nested: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for name, (group, fld) in BACKBONE_FIELDS.items():
        v = getattr(over, name)
        if v is None:
            continue
        if group:
            nested.setdefault(group, {})[fld] = v
        else:
            top[fld] = v
    kw = {g: dataclasses.replace(getattr(spec, g), **f) for g, f in nested.items()}
    return dataclasses.replace(spec, **kw, **top, per_backbone=None)


def check_seeds(seeds: Sequence[int], what: str = "--seeds") -> tuple[int, ...]:
    """Seeds as a tuple; one-line error when empty or repeated (a repeated seed would fit the same member twice)."""
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError(f"{what}: give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{what}: seeds repeat ({', '.join(map(str, seeds))})")
    return seeds


__all__ = ["Regime", "Depth", "COHORT_LR", "TRANSFER_LR", "STD_DDOF", "lr_for", "parse_depths", "freeze_of", "depth_label",
           "mean_std", "ff_sigma_for", "check_seeds", "BACKBONE_FIELDS", "backbone_spec"]
