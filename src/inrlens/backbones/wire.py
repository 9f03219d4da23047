"""WIRE (Saragadam et al., 2023): complex Gabor wavelet activations, on raw coordinates.

The complex WIRE, carried in real numbers. A layer of c complex units is stored and exposed as 2c real features,
real parts first: h = [Re h₁ … Re h_c, Im h₁ … Im h_c]. So ``width`` is the number of real features, 2c, and
must be even; every probe (stable ranks, SAEs, atoms, ablations) sees these 2c real features, and an edited
[Re, Im] activation runs through the later layers as the complex one would.

Activation (every hidden layer): φ(z) = exp(jω₀z − |s₀z|²) with ω₀ = ``wire_omega0``, s₀ = ``wire_scale``. For
z = a + jb this is exp(−ω₀b − s₀²(a² + b²)) · (cos ω₀a + j sin ω₀a).

Layers, as in the reference code:

* layer 0 is real (WIRE's first layer has a real weight): z = x A₀ + a₀ with A₀ (2, c), a₀ (1, c); h₀ = [Re, Im]
  of φ(z). It is stored as W₀ = [A₀, 0] (2, 2c), b₀ = [a₀, 0]: the second halves are zero, get no gradient and
  stay zero, and sr(W₀) is that of A₀.
* hidden layer ℓ ≥ 1 is complex, z = h M + m with M = A + jB (c, c), m = m_r + j m_i. On [Re, Im] features that is
  the real (2c, 2c) matrix W = [[A, B], [−B, A]] and the bias [m_r, m_i]. The forward reads A and B as the
  averages of the two blocks where they appear, so the gradient keeps W exactly in that form (and Adam, acting
  elementwise, too). Its singular values are those of M, each twice, so sr(W) = 2·sr(M).
* the head is complex and the output its real part, Re(h M + m) = Re h · A − Im h · B + m_r: a real linear map on
  [Re, Im] with weight [A; −B] (2c, C) and bias m_r.

Initialisation: ``nn.Linear``'s, as the reference code (complex layers draw real and imaginary parts each from
U(±1/√fan_in), fan_in the number of complex inputs c): A₀, a₀ ~ U(±1/√2); A, B, m_r, m_i ~ U(±1/√c) per hidden
layer; head A, B, m_r ~ U(±1/√c). WIRE's own code narrows the layers to width/√2 complex units to match a real
MLP's parameter count; here a layer of ``width`` real features has width/2 complex units, so that every backbone
exposes ``width`` features per layer. Single-signal lr 5e-3 (the learning rate of FINER's WIRE baseline; WIRE's
code recommends 5e-3 to 2e-2).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import nets
from .base import Backbone


def _u(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> Tensor:
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


def complex_blocks(w: Tensor) -> tuple[Tensor, Tensor]:
    """(A, B) of a stored hidden weight W ≈ [[A, B], [−B, A]] (…, 2c, 2c): A = mean of the diagonal blocks,
    B = mean of the upper-right and the negated lower-left block (exact for a weight of that form)."""
    c = w.shape[-1] // 2
    a = 0.5 * (w[..., :c, :c] + w[..., c:, c:])
    b = 0.5 * (w[..., :c, c:] - w[..., c:, :c])
    return a, b


def realify(a: Tensor, b: Tensor) -> Tensor:
    """[[A, B], [−B, A]]: the real form of right-multiplication by A + jB on [Re, Im] row vectors."""
    return torch.cat([torch.cat([a, b], dim=-1), torch.cat([-b, a], dim=-1)], dim=-2)


def gabor(cfg, re: Tensor, im: Tensor | None) -> Tensor:
    """[Re, Im] of exp(jω₀z − |s₀z|²) for z = re + j·im (im None: a real z)."""
    w0, s0 = cfg.wire_omega0, cfg.wire_scale
    if im is None:
        amp = torch.exp(-torch.square(s0 * re))
    else:
        amp = torch.exp(-w0 * im - (s0 * s0) * (torch.square(re) + torch.square(im)))
    phase = w0 * re
    return torch.cat([amp * torch.cos(phase), amp * torch.sin(phase)], dim=-1)


class Wire(Backbone):
    """Complex Gabor wavelets exp(jω₀z − |s₀z|²); hidden layers carry [Re, Im] of width/2 complex units."""

    name = "wire"
    default_lr = 5e-3
    description = "complex Gabor wavelets exp(jω₀z − |s₀z|²) (Saragadam et al. 2023); features are [Re, Im] of width/2 complex units"

    def init_layer(self, cfg, ell: int, fan_in: int, fan_out: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        L = cfg.depth
        if ell == 0:  # real first layer: nn.Linear(2, c), stored as [A0, 0]
            c = fan_out // 2
            bound = 1.0 / math.sqrt(fan_in)
            a0 = _u((fan_in, c), bound, generator)
            b0 = _u((1, c), bound, generator)
            return torch.cat([a0, torch.zeros(fan_in, c)], 1), torch.cat([b0, torch.zeros(1, c)], 1)
        c = fan_in // 2  # complex inputs
        bound = 1.0 / math.sqrt(c)
        if ell == L:  # complex head, real part taken: weight [A; −B], bias Re m
            a = _u((c, fan_out), bound, generator)
            b = _u((c, fan_out), bound, generator)
            return torch.cat([a, -b], 0), _u((1, fan_out), bound, generator)
        co = fan_out // 2
        a = _u((c, co), bound, generator)
        b = _u((c, co), bound, generator)
        m_r = _u((1, co), bound, generator)
        m_i = _u((1, co), bound, generator)
        return realify(a, b), torch.cat([m_r, m_i], 1)

    def hidden(self, cfg, ell: int, h: Tensor, w: Tensor, b: Tensor) -> Tensor:
        c = w.shape[-1] // 2
        if ell == 0:
            return gabor(cfg, nets.linear(h, w[..., :c], b[..., :c]), None)
        z = nets.linear(h, realify(*complex_blocks(w)), b)
        return gabor(cfg, z[..., :c], z[..., c:])

    def saved_per_hidden(self, cfg) -> int:
        # in (P × width) units: the linear output z, the envelope and the cos and sin halves (1.5), the phase
        # (0.5), the post-activation the next matmul saves (1), and transient products: 4
        return 4


WIRE = Wire()
