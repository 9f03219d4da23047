"""FINER (Liu et al., 2024): sines with a variable period, sin(ω₀ (|z| + 1) z), on raw coordinates.

γ(x) = x (d₀ = 2, no encoding tensors); h_ℓ = sin(ω₀ · α(z) · z) with z = W_ℓ h_{ℓ−1} + b_ℓ, α(z) = |z| + 1 and
ω₀ = ``finer_omega0`` for every layer. The local frequency ω₀(|z| + 1) grows with |z|, so the bias of a unit
selects its frequency band.

Gradient: as in the reference code (``scale_req_grad=False``, its default) the scale α(z) is treated as a constant
in the backward pass: ∂h/∂z = ω₀ α(z) cos(ω₀ α(z) z). The forward is exactly sin(ω₀(|z| + 1)z).

Initialisation (the reference code's): weights as SIREN's, W₀ ~ U(±1/fan_in) and later W ~ U(±√(6/fan_in)/ω₀)
(head included); the first layer's bias b₀ ~ U(±k) with k = ``finer_first_bias``, or ``nn.Linear``'s U(±1/√fan_in)
= U(±1/√2) when it is None (the code's default); every other bias ``nn.Linear``'s U(±1/√fan_in).
Single-signal lr 5e-4 (the reference image-fitting script).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import nets
from .base import Backbone
from .siren import sine_init


class Finer(Backbone):
    """Variable-periodic sine activations sin(ω₀(|z| + 1)z) on raw coordinates; SIREN weights, wide first bias."""

    name = "finer"
    default_lr = 5e-4
    description = "variable-periodic sines sin(ω₀(|z|+1)z) on raw coordinates (Liu et al. 2024)"

    def init_layer(self, cfg, ell: int, fan_in: int, fan_out: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return sine_init(ell, fan_in, fan_out, cfg.finer_omega0, generator, cfg.finer_first_bias)

    def hidden(self, cfg, ell: int, h: Tensor, w: Tensor, b: Tensor) -> Tensor:
        z = nets.linear(h, w, b)
        with torch.no_grad():  # α(z) = |z| + 1 is a constant for the gradient (the reference code's default)
            freq = (torch.abs(z) + 1.0) * cfg.finer_omega0
        return torch.sin(freq * z)


FINER = Finer()
