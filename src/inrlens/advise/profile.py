"""The stable-rank profile of a read model and the recommendation k* = argmax sr(W)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..nets import Stack
from .model import Model

DEFAULT_GRID = (64, 64)
"""Grid of the activation ranks when neither --grid nor the checkpoint gives one."""
DEFAULT_INIT_SEEDS = 5
"""Draws of the backbone's init averaged for sr(W⁰) of a model without a recorded seed."""


# ------------------------------------------------------------------------------------------------ profile
def estimate_init_ranks(stack: Stack, seeds: Sequence[int]) -> list[float]:
    """sr(W_ℓ⁰) estimated as the mean over ``seeds`` of the backbone's own init for the stack's layer shapes
    (the encoder drawn as :func:`inrlens.probes.rank.init_weight_ranks` draws it, once per seed)."""
    from ..probes.rank import init_weight_ranks

    seeds = list(seeds)
    if not seeds:
        raise ValueError("--init-seeds must be >= 1")
    per = [init_weight_ranks(stack, s) for s in seeds]
    return [sum(col) / len(col) for col in zip(*per)]


@dataclass
class Advice:
    """The profile of one model and the recommendation."""

    model: Model
    profile: Any
    """:class:`inrlens.probes.rank.RankProfile` (sr_w_init, delta_sr and k_delta always filled in)."""
    grid: tuple[int, int]
    init: dict[str, Any]
    """How sr(W⁰) was obtained: {'kind': 'seed', 'seed', 'from'} or {'kind': 'estimate', 'seeds'}."""

    @property
    def k(self) -> int:
        """The recommended freeze depth k* = argmax sr(W)."""
        return int(self.profile.k_w)


def advise(model: Model, grid: tuple[int, int] | None = None, init_seeds: int = DEFAULT_INIT_SEEDS,
           init_seed: int | None = None) -> Advice:
    """Stable-rank profile of ``model`` on ``grid`` (default: the checkpoint's recorded grid, else 64×64) and the
    recommended freeze depth. sr(W⁰) comes from ``init_seed`` when given, else the model's recorded init seed,
    else the mean over ``init_seeds`` draws (seeds 0..init_seeds−1) of the backbone's init."""
    from ..probes.rank import argmax, profile

    shape = tuple(int(x) for x in (grid or model.grid or DEFAULT_GRID))
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"--grid: H and W must be >= 1, got {' '.join(map(str, shape))}")
    if isinstance(init_seeds, bool) or int(init_seeds) < 1:
        raise ValueError(f"--init-seeds must be >= 1, got {init_seeds}")
    if init_seed is not None:
        prof = profile(model.stack, shape, init_seed=int(init_seed))
        init = {"kind": "seed", "seed": int(init_seed), "from": "--init-seed"}
    elif model.init_seed is not None:
        prof = profile(model.stack, shape, init_seed=model.init_seed)
        init = {"kind": "seed", "seed": model.init_seed, "from": model.init_seed_from}
    else:
        prof = profile(model.stack, shape)
        seeds = list(range(int(init_seeds)))
        w0 = estimate_init_ranks(model.stack, seeds)
        delta = [a - b for a, b in zip(prof.sr_w, w0)]
        prof = prof._replace(sr_w_init=w0, delta_sr=delta, k_delta=argmax(delta))
        init = {"kind": "estimate", "seeds": seeds}
    return Advice(model, prof, (shape[0], shape[1]), init)


def init_sentence(adv: Advice) -> str:
    """How sr(W⁰) was obtained, in words."""
    i = adv.init
    if i["kind"] == "seed":
        return f"sr(W⁰): the encoder redrawn from its init seed {i['seed']} (read from {i['from']})"
    s = i["seeds"]
    span = f"seed {s[0]}" if len(s) == 1 else f"seeds {s[0]}..{s[-1]}"
    return (f"sr(W⁰): no init seed is recorded for this model; estimated as the mean over {len(s)} draws ({span}) of "
            f"{adv.model.stack.cfg.backbone}'s own init for the same layer shapes")


def profile_rows(adv: Advice) -> list[dict[str, Any]]:
    """One row per hidden layer: key, shape, role, sr_w, sr_h, sr_h_centred, sr_w_init, delta_sr and the marks."""
    p = adv.profile
    rows = []
    for ell in range(adv.model.stack.cfg.depth):
        lay = adv.model.layers[ell]
        marks = "".join(m for m, k in (("W", p.k_w), ("H", p.k_h), ("Δ", p.k_delta)) if k == ell)
        rows.append({"layer": ell, "key": lay.key, "in": lay.fan_in, "out": lay.fan_out, "role": lay.role,
                     "sr_w": p.sr_w[ell], "sr_h": p.sr_h[ell], "sr_h_centred": p.sr_h_centred[ell],
                     "sr_w_init": p.sr_w_init[ell], "delta_sr": p.delta_sr[ell], "argmax": marks})
    return rows
