"""SIREN (Sitzmann et al., 2020): an MLP with sine activations on raw coordinates.

γ(x) = x (d₀ = 2, no encoding tensors); h_ℓ = sin(ω₀ (W_ℓ h_{ℓ−1} + b_ℓ)) with ω₀ = ``omega0_first`` for
layer 0 and ``omega0`` for the others (both 30 by default).

Initialisation (the published SIREN scheme, as in STRAINER's code): W₀ ~ U(±1/fan_in); hidden and head weights
W ~ U(±√(6/fan_in)/ω₀); every bias U(±1/√fan_in) (``nn.Linear``'s default). Single-signal lr 1e-4.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import nets
from .base import Backbone


def sine_init(ell: int, fan_in: int, fan_out: int, omega0: float, generator: torch.Generator,
              first_bias: float | None = None) -> tuple[Tensor, Tensor]:
    """SIREN's layer init, also FINER's: W₀ ~ U(±1/in), later W ~ U(±√(6/in)/ω₀); b ~ U(±1/√in), or U(±first_bias)
    at layer 0 when given. W is drawn before b from ``generator``."""
    a = 1.0 / fan_in if ell == 0 else math.sqrt(6.0 / fan_in) / omega0
    w = torch.empty(fan_in, fan_out).uniform_(-a, a, generator=generator)
    k = first_bias if (ell == 0 and first_bias is not None) else 1.0 / math.sqrt(fan_in)
    b = torch.empty(1, fan_out).uniform_(-k, k, generator=generator)
    return w, b


class Siren(Backbone):
    """Sine activations with frequency ω₀; no input encoding."""

    name = "siren"
    default_lr = 1e-4
    description = "sine activations sin(ω₀(Wh + b)) on raw coordinates (Sitzmann et al. 2020)"

    def init_layer(self, cfg, ell: int, fan_in: int, fan_out: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return sine_init(ell, fan_in, fan_out, cfg.omega0, generator)

    def hidden(self, cfg, ell: int, h: Tensor, w: Tensor, b: Tensor) -> Tensor:
        w0 = cfg.omega0_first if ell == 0 else cfg.omega0
        if nets.FOLD_OMEGA:  # sin(ω₀(hW + b)) = sin(h(ω₀W) + ω₀b): scale the (in, out) weight, not the (P, out) output
            return torch.sin(nets.linear(h, w * w0, b * w0))
        return torch.sin(w0 * nets.linear(h, w, b))


SIREN = Siren()
