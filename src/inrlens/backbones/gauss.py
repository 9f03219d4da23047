"""Gauss (Ramasinghe & Lucey, 2022): an MLP with Gaussian activations on raw coordinates.

γ(x) = x (d₀ = 2, no encoding tensors); h_ℓ = exp(−(s·z)²) with z = W_ℓ h_{ℓ−1} + b_ℓ and s = ``gauss_scale``
for every hidden layer. This is the form of the published reference code (WIRE's ``gauss.py``, which FINER's
comparisons reuse); in the paper's notation exp(−z²/2σ²) it is σ = 1/(s√2), so the default s = 10 is σ ≈ 0.071.

Initialisation: every layer, head included, as PyTorch's ``nn.Linear`` (W, b ~ U(±1/√fan_in)), as in the
reference code, which keeps ``nn.Linear``'s init. Single-signal lr 1e-3 (WIRE's code recommends 1e-3 to 2e-3
for Gauss).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import nets
from .base import Backbone


class Gauss(Backbone):
    """Gaussian activations exp(−(s·z)²) on raw coordinates; ``nn.Linear`` init."""

    name = "gauss"
    default_lr = 1e-3
    description = "Gaussian activations exp(−(s·z)²) on raw coordinates (Ramasinghe & Lucey 2022)"

    def hidden(self, cfg, ell: int, h: Tensor, w: Tensor, b: Tensor) -> Tensor:
        return torch.exp(-torch.square(cfg.gauss_scale * nets.linear(h, w, b)))


GAUSS = Gauss()
