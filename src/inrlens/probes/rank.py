"""Stable ranks and the freeze-depth prediction (Eqs. 3–4 of the paper; docs/protocol.md).

sr(M) = ‖M‖_F² / ‖M‖₂² = Σᵢ σᵢ² / σ_max²  — a continuous proxy for rank with 1 ≤ sr(M) ≤ rank(M)
(and sr(0) := 0 for the zero matrix, which has no spectral norm to divide by).

* Weight stable rank sr(W_ℓ) of every hidden layer ℓ = 0..L−1 of a trained encoder. Weights are stored as
  (in, out), the transpose of the paper's W_ℓ; a matrix and its transpose have the same singular values.
* Activation stable rank sr(H_ℓ) of the post-activation matrix H_ℓ ∈ R^{P×width} on a coordinate grid,
  uncentred (the rows are the raw h_ℓ(x); the predictor in use) and centred (the mean over the grid's pixels
  subtracted from every row first, H_ℓ − 1·μᵀ). The paper does not say which it uses; its SIREN sr(H₁) ≈ 32 at
  width 256 is close to what centring gives on our cohorts (26–29) and far from the uncentred value (4–6), so
  both are recorded and reported.
* Stable rank at initialisation: sr(W_ℓ⁰) of the same encoder drawn again from its seed, and the change
  Δsr_ℓ = sr(W_ℓ) − sr(W_ℓ⁰) that training made; argmax Δsr is a third predictor of the freeze depth.
* Prediction: k* = argmax_ℓ sr(W_ℓ) — from the encoder alone, without target data; the same for sr(H_ℓ) and Δsr.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..data import grid
from ..nets import Stack


def stable_rank(m: Tensor) -> float:
    """sr(M) = ‖M‖_F² / ‖M‖₂² of a 2-D matrix (computed in float64 from its singular values)."""
    if m.ndim != 2:
        raise ValueError(f"stable rank needs a 2-D matrix, got shape {tuple(m.shape)}")
    s = torch.linalg.svdvals(m.detach().to(torch.float64))
    top = float(s.max()) if s.numel() else 0.0
    if top == 0.0:
        return 0.0
    return float((s**2).sum() / top**2)


def _shared(t: Tensor, ell: int) -> Tensor:
    if t.shape[0] != 1:
        raise ValueError(f"layer {ell} has {t.shape[0]} members; stable ranks need one encoder (a cohort or a single INR)")
    return t[0]


def weight_ranks(stack: Stack) -> list[float]:
    """sr(W_ℓ) for the hidden layers ℓ = 0..L−1 of a one-encoder stack (the head is not part of the encoder)."""
    return [stable_rank(_shared(stack.weights[ell], ell)) for ell in range(stack.cfg.depth)]


def activation_ranks(stack: Stack, shape: tuple[int, int], centre: bool = False) -> list[float]:
    """sr(H_ℓ) of the post-activations H_ℓ (P × width) on the H×W grid of ``shape``; ``centre`` subtracts the
    mean over pixels (column means) from H_ℓ first. A grid whose pass does not fit the memory budget
    (:func:`inrlens.memory.check_rank`) is a one-line ValueError before anything is computed."""
    from ..memory import check_rank

    check_rank(stack.cfg, shape, stack.out_features, int(stack.weights[-1].shape[0]), device=stack.weights[0].device)
    coords = grid(*shape, device=stack.weights[0].device)
    with torch.no_grad():
        _, hidden = stack.activations(coords)  # each (B_ℓ', P, width)
    out = []
    for ell, h in enumerate(hidden):
        m = _shared(h, ell).to(torch.float64)  # (P, width)
        out.append(stable_rank(m - m.mean(dim=0, keepdim=True) if centre else m))
    return out


def init_weight_ranks(stack: Stack, seed: int) -> list[float]:
    """sr(W_ℓ⁰) of the encoder ``stack`` would have had at initialisation: layers 0..L−1 drawn again from ``seed``
    (a cohort's encoder is drawn from its cohort seed, see :func:`inrlens.nets.cohort_stack`)."""
    from ..nets import cohort_stack

    init = cohort_stack(stack.cfg, stack.out_features, 1, int(seed))
    return weight_ranks(init)


class RankProfile(NamedTuple):
    """Per-layer stable ranks of one encoder and the freeze depths they predict."""

    sr_w: list[float]
    """sr(W_ℓ), ℓ = 0..L−1."""
    sr_h: list[float]
    """sr(H_ℓ) on ``grid_shape``, ℓ = 0..L−1."""
    k_w: int
    """Predicted freeze depth argmax_ℓ sr(W_ℓ) (first index on ties)."""
    k_h: int
    """argmax_ℓ sr(H_ℓ) (first index on ties)."""
    grid_shape: tuple[int, int]
    """(H, W) of the grid the activations were taken on."""
    sr_h_centred: list[float] | None = None
    """sr(H_ℓ − mean over pixels), ℓ = 0..L−1."""
    k_h_centred: int | None = None
    """argmax_ℓ of the centred activation ranks."""
    sr_w_init: list[float] | None = None
    """sr(W_ℓ⁰) of the same encoder at initialisation (None when no seed was given)."""
    delta_sr: list[float] | None = None
    """Δsr_ℓ = sr(W_ℓ) − sr(W_ℓ⁰)."""
    k_delta: int | None = None
    """argmax_ℓ Δsr_ℓ."""


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value (the first one on ties)."""
    if not values:
        raise ValueError("argmax of an empty profile")
    return max(range(len(values)), key=lambda i: (values[i], -i))


def profile(stack: Stack, shape: tuple[int, int], init_seed: int | None = None) -> RankProfile:
    """Weight and activation (uncentred and centred) stable-rank profiles of an encoder and the depths they
    predict; with ``init_seed`` also the ranks at initialisation, Δsr and argmax Δsr."""
    sw = weight_ranks(stack)
    sh = activation_ranks(stack, shape)
    shc = activation_ranks(stack, shape, centre=True)
    w0 = delta = kd = None
    if init_seed is not None:
        w0 = init_weight_ranks(stack, init_seed)
        delta = [a - b for a, b in zip(sw, w0)]
        kd = argmax(delta)
    return RankProfile(sw, sh, argmax(sw), argmax(sh), (int(shape[0]), int(shape[1])), shc, argmax(shc), w0, delta, kd)


def _read_json_dict(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def recorded_init_seed(folder: str | Path, meta: Mapping[str, Any], member: int = 0) -> tuple[int | None, str]:
    """The init seed an inrlens checkpoint's encoder was drawn from, and where it was read:

    ``meta["seed"]``; a single-fit checkpoint's member name ``image@seed``; the ``seed`` of the ``inrlens cohort``
    run.json in the same folder; the ``cohort_seed`` of the sweep whose ``cohorts/`` folder holds it. None when
    none of these is there."""
    folder = Path(folder)
    s = meta.get("seed")
    if isinstance(s, int) and not isinstance(s, bool):
        return s, "the checkpoint's meta"
    members = meta.get("members")
    if meta.get("regime") == "single" and isinstance(members, list) and 0 <= member < len(members):
        name = str(members[member])
        if "@" in name and name.rsplit("@", 1)[1].lstrip("-").isdigit():
            return int(name.rsplit("@", 1)[1]), f"member {member} ({name}) of the checkpoint's meta"
    run = _read_json_dict(folder / "run.json")
    if run and run.get("cmd") == "cohort" and isinstance(run.get("seed"), int):
        return int(run["seed"]), f"{folder / 'run.json'} (inrlens cohort --seed)"
    if folder.parent.name == "cohorts":
        sweep = _read_json_dict(folder.parent.parent / "run.json")
        if sweep and sweep.get("cmd") == "sweep" and isinstance(sweep.get("spec"), dict):
            cs = sweep["spec"].get("cohort_seed", 0)
            if isinstance(cs, int) and not isinstance(cs, bool):
                return cs, f"{folder.parent.parent / 'run.json'} (the sweep's cohort_seed)"
    return None, ""


__all__ = ["recorded_init_seed", "stable_rank", "weight_ranks", "activation_ranks", "init_weight_ranks", "RankProfile", "profile", "argmax"]
