"""Stable ranks and the freeze-depth prediction (SPEC §4, Eqs. 3–4 of the paper).

sr(M) = ‖M‖_F² / ‖M‖₂² = Σᵢ σᵢ² / σ_max²  — a continuous proxy for rank with 1 ≤ sr(M) ≤ rank(M)
(and sr(0) := 0 for the zero matrix, which has no spectral norm to divide by).

* Weight stable rank sr(W_ℓ) of every hidden layer ℓ = 0..L−1 of a trained encoder. Weights are stored as
  (in, out), the transpose of the paper's W_ℓ; a matrix and its transpose have the same singular values.
* Activation stable rank sr(H_ℓ) of the post-activation matrix H_ℓ ∈ R^{P×width} on a coordinate grid
  (uncentred [guess]: the rows are the raw h_ℓ(x), no mean is subtracted).
* Prediction: k* = argmax_ℓ sr(W_ℓ) — from the encoder alone, without target data; the same for sr(H_ℓ).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

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


def activation_ranks(stack: Stack, shape: tuple[int, int]) -> list[float]:
    """sr(H_ℓ) of the uncentred post-activations H_ℓ (P × width) on the H×W grid of ``shape``."""
    coords = grid(*shape, device=stack.weights[0].device)
    with torch.no_grad():
        _, hidden = stack.activations(coords)  # each (B_ℓ', P, width)
    return [stable_rank(_shared(h, ell)) for ell, h in enumerate(hidden)]


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


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value (the first one on ties)."""
    if not values:
        raise ValueError("argmax of an empty profile")
    return max(range(len(values)), key=lambda i: (values[i], -i))


def profile(stack: Stack, shape: tuple[int, int]) -> RankProfile:
    """Weight and activation stable-rank profiles of an encoder and both predicted depths."""
    sw = weight_ranks(stack)
    sh = activation_ranks(stack, shape)
    return RankProfile(sw, sh, argmax(sw), argmax(sh), (int(shape[0]), int(shape[1])))


__all__ = ["stable_rank", "weight_ranks", "activation_ranks", "RankProfile", "profile", "argmax"]
