"""FFMLP (Tancik et al., 2020): Gaussian Fourier features followed by a ReLU MLP.

γ(x) = [sin(2π xB), cos(2π xB)] with a fixed frequency matrix B ∈ R^{2×m}, B ~ N(0, σ²) (m = ``ff_features``,
σ = ``ff_sigma`` in cycles per unit coordinate), so d₀ = 2m; B is stored under the name ``fourier`` and never
trained. h_ℓ = ReLU(W_ℓ h_{ℓ−1} + b_ℓ).

Initialisation: B first, then every layer as ``nn.Linear`` (W, b ~ U(±1/√fan_in)). Single-signal lr 1e-3.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import nets
from .base import Backbone, Encoding


class FourierMLP(Backbone):
    """Fixed Gaussian Fourier features + ReLU MLP."""

    name = "ffmlp"
    default_lr = 1e-3
    description = "fixed Gaussian Fourier features + ReLU MLP (Tancik et al. 2020)"

    def encoding_dim(self, cfg) -> int:
        return 2 * cfg.ff_features

    def draw_encoding(self, cfg, generator: torch.Generator) -> Encoding:
        return {"fourier": torch.randn(2, cfg.ff_features, generator=generator) * cfg.ff_sigma}

    def encoding_names(self, cfg) -> tuple[str, ...]:
        return ("fourier",)

    def encoding_numel(self, cfg) -> int:
        return 2 * cfg.ff_features

    def embed(self, cfg, enc: Encoding, coords: Tensor) -> Tensor:
        proj = 2.0 * math.pi * torch.matmul(coords.unsqueeze(0), enc["fourier"])  # (B_f, P, m)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)  # (B_f, P, 2m)

    def hidden(self, cfg, ell: int, h: Tensor, w: Tensor, b: Tensor) -> Tensor:
        return torch.relu(nets.linear(h, w, b))


FFMLP = FourierMLP()
