"""INRs as *stacks*: B INRs of one architecture run together, any registered backbone.

Eq. 1 of the paper:  h₀ = γ(x);  h_ℓ = φ(W_ℓ h_{ℓ−1} + b_ℓ) for ℓ = 0..L−1;  f(x) = W_out h_{L−1} + b_out.
What γ and φ are, and how layers are initialised, is the backbone's business (:mod:`inrlens.backbones`); this
module only stacks members.

A :class:`Stack` stores every linear layer as a weight of shape (B_ℓ, in, out) and a bias (B_ℓ, 1, out),
where the member count B_ℓ is either B (one weight per member) or 1 (one weight shared by every member,
broadcast). Layer index L is the linear head. So

* B independent INRs: every B_ℓ = B;
* a STRAINER cohort: encoder layers 0..L−1 with B_ℓ = 1, the head with B_L = N;
* a freeze-k transfer: layers 0..k shared (frozen, from the cohort), layers k+1..L per member.

The backbone's encoding tensors (FFMLP: the Fourier matrix ``fourier``) are stored the same way, with a
leading member axis of size B or 1; fixed ones are buffers, trainable ones parameters (part of layer 0).

Member i draws its whole init from ``torch.Generator().manual_seed(seeds[i])`` in a fixed order (encoding
tensors, then W₀, b₀, W₁, b₁, …, W_L, b_L), always on the CPU, so member i of any stack equals the INR
built alone with that seed, on any device, and a re-initialised layer ℓ of a transfer equals layer ℓ of a
random init with the same seed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .backbones import get_backbone
from .config import NetConfig

# Speed-ups of the forward pass. Both give the same function up to float rounding (checked by
# tests/test_perf_equivalence.py) and are recorded with every result by fit.runtime_info; set them to False
# (or INRLENS_FOLD_OMEGA=0 / INRLENS_FUSED_BIAS=0 in the environment) for the plain formulation.
FOLD_OMEGA: bool = os.environ.get("INRLENS_FOLD_OMEGA", "1") != "0"
"""SIREN: multiply ω₀ into the (in, out) weight and bias inside the forward, instead of the (P, out) pre-activation;
saves one elementwise pass forward and one backward per layer. The stored parameters keep their meaning."""
FUSED_BIAS: bool = os.environ.get("INRLENS_FUSED_BIAS", "1") != "0"
"""Add the bias inside the GEMM (addmm) on the broadcast paths of :func:`linear` instead of a separate pass, and
run a narrow shared input (SIREN's 2-d coordinates) as a batched GEMM so that its output stays contiguous."""


class Init(NamedTuple):
    """One member's freshly drawn parameters (CPU tensors)."""

    encoding: dict[str, Tensor]
    """The backbone's encoding tensors by name (FFMLP: ``fourier`` of shape (2, m); empty for SIREN)."""
    weights: list[Tensor]
    """L+1 weights, layer ℓ of shape (in_ℓ, out_ℓ); the last one is the head."""
    biases: list[Tensor]
    """L+1 biases, layer ℓ of shape (1, out_ℓ)."""


def layer_dims(cfg: NetConfig, out_features: int) -> list[tuple[int, int]]:
    """(in, out) of the L hidden layers and the head; layer 0's input is the backbone's encoding size d₀."""
    first_in = int(get_backbone(cfg.backbone).encoding_dim(cfg))
    dims = [(first_in, cfg.width)] + [(cfg.width, cfg.width)] * (cfg.depth - 1)
    return dims + [(cfg.width, out_features)]


def draw_init(cfg: NetConfig, out_features: int, seed: int, first_rule_at: int | None = None) -> Init:
    """Draw one INR's parameters from its own generator: the encoding tensors first, then W₀, b₀, …, W_L, b_L,
    each layer from the backbone's :meth:`~inrlens.backbones.Backbone.init_layer` (init ranges documented there).

    ``first_rule_at`` = ℓ (a hidden layer ≥ 1): layer ℓ is drawn, at its place in the sequence and at its own
    fan-in, by the backbone's first-layer rule (``init_layer`` with index 0) instead of its own (SIREN:
    W ~ U(±1/fan_in) instead of U(±√(6/fan_in)/ω₀); the same number of draws, so the other layers are unchanged)."""
    bb = get_backbone(cfg.backbone)
    g = torch.Generator().manual_seed(int(seed))
    encoding = dict(bb.draw_encoding(cfg, g))
    weights, biases = [], []
    if first_rule_at is not None and not 1 <= first_rule_at < cfg.depth:
        raise ValueError(f"first_rule_at must be a hidden layer in 1..{cfg.depth - 1}, got {first_rule_at}")
    for ell, (fan_in, fan_out) in enumerate(layer_dims(cfg, out_features)):
        w, b = bb.init_layer(cfg, 0 if ell == first_rule_at else ell, fan_in, fan_out, g)
        if tuple(w.shape) != (fan_in, fan_out) or tuple(b.shape) != (1, fan_out):
            raise ValueError(f"backbone {bb.name!r}: init_layer({ell}) returned shapes {tuple(w.shape)}, {tuple(b.shape)}; "
                             f"expected ({fan_in}, {fan_out}) and (1, {fan_out})")
        weights.append(w)
        biases.append(b)
    return Init(encoding, weights, biases)


def linear(h: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Batched affine map with member broadcasting.

    h: (B_h, P, in), w: (B_w, in, out), b: (B_w, 1, out) with B_h, B_w ∈ {1, B} → (max(B_h, B_w), P, out).
    A shared input against per-member weights is one GEMM (P, in) @ (in, B·out): the STRAINER encoder output
    is computed once for all heads. With FUSED_BIAS the bias add rides in the GEMM (addmm/baddbmm) instead
    of a separate pass over the (P, out) output.
    """
    bh, bw = h.shape[0], w.shape[0]
    if bh == bw:
        return torch.baddbmm(b, h, w)
    if bh == 1:  # shared input, B weights
        p, fan_in = h.shape[1], h.shape[2]
        out = w.shape[2]
        if FUSED_BIAS and fan_in <= out:
            # narrow input (SIREN's layer 0: in = 2): a batched GEMM on the broadcast input gives a contiguous
            # (B, P, out) result; the one-GEMM path below would leave it permuted, and every later layer and its
            # backward would pay a copy of (B, P, out) to make it contiguous again.
            return torch.baddbmm(b, h.expand(bw, p, fan_in), w)
        # wide input (cohort heads on the shared encoder output): one GEMM (P,in)@(in,B*out)
        flat = w.permute(1, 0, 2).reshape(fan_in, bw * out)  # (in, B*out), column j = member j // out
        if FUSED_BIAS:
            y = torch.addmm(b.permute(1, 0, 2).reshape(1, bw * out), h[0], flat)  # (P, B*out)
            return y.reshape(p, bw, out).permute(1, 0, 2)  # (B, P, out)
        y = (h[0] @ flat).reshape(p, bw, out).permute(1, 0, 2)  # (B, P, out)
        return y + b
    if bw == 1:  # B inputs, one shared weight
        if FUSED_BIAS:
            p, fan_in = h.shape[1], h.shape[2]
            return torch.addmm(b[0], h.reshape(bh * p, fan_in), w[0]).reshape(bh, p, w.shape[2])  # (B, P, out)
        return torch.matmul(h, w[0]) + b
    raise ValueError(f"member counts do not broadcast: input {bh}, weight {bw}")


_RESERVED = {"cfg", "backbone", "out_features", "weights", "biases", "encoding", "encoding_names"}


class Stack(nn.Module):
    """B INRs of one architecture with stacked weights (see module docstring).

    Parameters are ``weight{ℓ}`` (B_ℓ, in, out) and ``bias{ℓ}`` (B_ℓ, 1, out) for ℓ = 0..L (L = head). The
    backbone's encoding tensors are attributes under their own names with shape (B_f, …), B_f ∈ {1, B}:
    buffers when fixed (FFMLP's frequency matrix ``fourier`` (B_f, 2, m), never trained), parameters when the
    backbone's encoding is trainable (optimised with layer 0, see :mod:`inrlens.backbones.base`).
    """

    def __init__(self, cfg: NetConfig, out_features: int, encoding: Mapping[str, Tensor] | None,
                 weights: Sequence[Tensor], biases: Sequence[Tensor]):
        super().__init__()
        self.cfg = cfg
        self.backbone = get_backbone(cfg.backbone)
        self.out_features = int(out_features)
        if len(weights) != cfg.depth + 1 or len(biases) != cfg.depth + 1:
            raise ValueError(f"expected {cfg.depth + 1} layers, got {len(weights)}")
        encoding = dict(encoding or {})
        for name, t in encoding.items():
            if not name.isidentifier() or name in _RESERVED or re.fullmatch(r"(weight|bias)\d+", name) or hasattr(self, name):
                raise ValueError(f"backbone {self.backbone.name!r}: encoding tensor name {name!r} is not allowed "
                                 "(use an identifier that is not a Stack attribute nor weight<i>/bias<i>)")
            if not isinstance(t, Tensor) or t.ndim < 1:
                raise ValueError(f"encoding tensor {name!r} must be a tensor with a leading member axis")
            if self.backbone.encoding_trainable:
                self.register_parameter(name, nn.Parameter(t))
            else:
                self.register_buffer(name, t)
        self.encoding_names: tuple[str, ...] = tuple(encoding)
        self.weights = nn.ParameterList([nn.Parameter(w) for w in weights])
        self.biases = nn.ParameterList([nn.Parameter(b) for b in biases])

    @property
    def encoding(self) -> dict[str, Tensor]:
        """The encoding tensors by name, each (B_f, …) (the live tensors, not copies)."""
        return {name: getattr(self, name) for name in self.encoding_names}

    def encoding_params(self) -> list[nn.Parameter]:
        """The encoding tensors that are parameters (a trainable encoding); [] for a fixed one."""
        return [t for t in self.encoding.values() if isinstance(t, nn.Parameter)]

    # ------------------------------------------------------------------ construction
    @classmethod
    def init(cls, cfg: NetConfig, out_features: int, seeds: Sequence[int]) -> Stack:
        """B = len(seeds) independent INRs, member i drawn from seeds[i]."""
        inits = [draw_init(cfg, out_features, s) for s in seeds]
        encoding = {name: torch.stack([i.encoding[name] for i in inits]) for name in inits[0].encoding}
        ws = [torch.stack([i.weights[ell] for i in inits]) for ell in range(cfg.depth + 1)]
        bs = [torch.stack([i.biases[ell] for i in inits]) for ell in range(cfg.depth + 1)]
        return cls(cfg, out_features, encoding, ws, bs)

    @property
    def depth(self) -> int:
        return self.cfg.depth

    @property
    def members(self) -> int:
        """B: the largest member count over layers."""
        return max([w.shape[0] for w in self.weights] + [t.shape[0] for t in self.encoding.values()])

    def layer_members(self, ell: int) -> int:
        return int(self.weights[ell].shape[0])

    # ------------------------------------------------------------------ forward
    def embed(self, coords: Tensor, idx: Tensor | None = None) -> Tensor:
        """γ(x): coords (P, 2) → (B_f, P, d₀) by the backbone (SIREN: the coordinates (1, P, 2); FFMLP:
        [sin 2πxB, cos 2πxB]). idx (optional) restricts per-member encoding tensors to those members."""
        enc = self.encoding
        if idx is not None:
            enc = {k: (t[idx] if t.shape[0] > 1 else t) for k, t in enc.items()}
        return self.backbone.embed(self.cfg, enc, coords)

    def layer(self, ell: int, h: Tensor, idx: Tensor | None = None) -> Tensor:
        """Apply layer ℓ to its input h (B_h, P, in): hidden layers include the backbone's activation, the head
        (ℓ = L) is affine.

        idx (optional, LongTensor) restricts per-member weights to those members (shared weights stay shared).
        """
        w, b = self.weights[ell], self.biases[ell]
        if idx is not None and w.shape[0] > 1:
            w, b = w[idx], b[idx]
        if ell == self.cfg.depth:
            return linear(h, w, b)
        return self.backbone.hidden(self.cfg, ell, h, w, b)

    def run(self, h: Tensor, start: int = 0, stop: int | None = None, idx: Tensor | None = None) -> Tensor:
        """Apply layers start..stop−1 to h, the input of layer ``start`` (stop defaults to L+1, the output)."""
        stop = self.cfg.depth + 1 if stop is None else stop
        for ell in range(start, stop):
            h = self.layer(ell, h, idx)
        return h

    def forward(self, coords: Tensor) -> Tensor:
        """coords (P, 2) → output (B, P, C)."""
        return self.run(self.embed(coords))

    def activations(self, coords: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Output (B, P, C) and every hidden post-activation h_ℓ, ℓ = 0..L−1, each (B_ℓ', P, width)."""
        h = self.embed(coords)
        hidden = []
        for ell in range(self.cfg.depth):
            h = self.layer(ell, h)
            hidden.append(h)
        return self.layer(self.cfg.depth, h), hidden

    # ------------------------------------------------------------------ member views
    def member(self, i: int) -> Stack:
        """A detached single-member Stack (B = 1) holding member i's parameters (shared layers included)."""
        pick = lambda t: t[min(i, t.shape[0] - 1)].unsqueeze(0).detach().clone()  # noqa: E731
        encoding = {k: pick(t) for k, t in self.encoding.items()}
        return Stack(self.cfg, self.out_features, encoding, [pick(w) for w in self.weights], [pick(b) for b in self.biases])

    def select(self, idx: Sequence[int]) -> Stack:
        """A detached Stack with members idx (layers shared by all stay shared)."""
        ix = torch.as_tensor(list(idx), dtype=torch.long)
        sel = lambda t: t.detach().clone() if t.shape[0] == 1 else t.detach()[ix.to(t.device)].clone()  # noqa: E731
        encoding = {k: sel(t) for k, t in self.encoding.items()}
        return Stack(self.cfg, self.out_features, encoding, [sel(w) for w in self.weights], [sel(b) for b in self.biases])


def cohort_stack(cfg: NetConfig, out_features: int, n_heads: int, seed: int) -> Stack:
    """STRAINER model: shared encoder (B_ℓ = 1) drawn from ``seed``; N heads, head i drawn from seed + i.

    Head 0 and the encoder come from the same draw, so a cohort of one equals ``Stack.init(cfg, C, [seed])``.
    """
    enc = draw_init(cfg, out_features, seed)
    heads = [enc] + [draw_init(cfg, out_features, seed + i) for i in range(1, n_heads)]
    ws = [w.unsqueeze(0) for w in enc.weights[:-1]] + [torch.stack([h.weights[-1] for h in heads])]
    bs = [b.unsqueeze(0) for b in enc.biases[:-1]] + [torch.stack([h.biases[-1] for h in heads])]
    encoding = {k: t.unsqueeze(0) for k, t in enc.encoding.items()}
    return Stack(cfg, out_features, encoding, ws, bs)


REINIT_CHOICES = ("fresh", "first_layer_rule")
"""How :func:`transfer_stack` draws the re-initialised layers of a freeze-k transfer (docs/protocol.md)."""


def check_reinit(reinit: str) -> str:
    """``reinit`` itself when it is one of :data:`REINIT_CHOICES`, else a one-line ValueError (checked before any work)."""
    if reinit not in REINIT_CHOICES:
        raise ValueError(f"reinit must be one of {', '.join(map(repr, REINIT_CHOICES))}, got {reinit!r}")
    return reinit


def transfer_stack(encoder: Stack, freeze: int | None, seeds: Sequence[int], out_features: int,
                   reinit: str = "fresh") -> Stack:
    """Test-time model from a cohort encoder.

    freeze = k ∈ 0..L−1: layers 0..k are the cohort's (shared, B_ℓ = 1, to be frozen), layers k+1..L−1 and
    the head are drawn fresh per member from seeds. freeze = None (the no-freeze / STRAINER baseline): every
    encoder layer starts from the cohort (copied per member, all trainable) and the head is fresh.
    Encoding tensors are always the cohort's: a fixed encoding (FFMLP's Fourier matrix) and a trainable one
    under freeze k ≥ 0 are shared (B_f = 1); a trainable one under no-freeze is copied per member (it trains
    with layer 0).

    ``reinit``: 'fresh' (default) draws each re-initialised layer ℓ as layer ℓ of a random init with the
    member's seed. 'first_layer_rule' draws the first re-initialised hidden layer k+1 (when k ≤ L−2) by the
    backbone's first-layer rule at its fan-in instead (:func:`draw_init` ``first_rule_at``), as STRAINER's public
    code builds a decoder (its first layer is a SIREN first layer); later layers and the head as 'fresh', and
    no-freeze and k = L−1 are unchanged. The layer still runs at the hidden ω₀.
    """
    cfg = encoder.cfg
    L = cfg.depth
    if freeze is not None and not (0 <= freeze < L):
        raise ValueError(f"freeze depth must be in 0..{L - 1} (or None for no freeze), got {freeze}")
    check_reinit(reinit)
    for ell in range(L):
        if encoder.weights[ell].shape[0] != 1:
            raise ValueError("transfer needs an encoder whose hidden layers are shared (a cohort stack)")
    for name, t in encoder.encoding.items():
        if t.shape[0] != 1:
            raise ValueError(f"transfer needs an encoder whose encoding is shared (a cohort stack); {name!r} has {t.shape[0]} members")
    first = freeze + 1 if reinit == "first_layer_rule" and freeze is not None and freeze + 1 < L else None
    inits = [draw_init(cfg, out_features, s, first) for s in seeds]
    B = len(seeds)
    ws, bs = [], []
    for ell in range(L + 1):
        if ell < L and (freeze is None or ell <= freeze):
            w = encoder.weights[ell].detach().clone()
            b = encoder.biases[ell].detach().clone()
            if freeze is None:  # per-member trainable copy
                w, b = w.expand(B, -1, -1).clone(), b.expand(B, -1, -1).clone()
        else:
            w = torch.stack([i.weights[ell] for i in inits]).to(encoder.weights[0].device)
            b = torch.stack([i.biases[ell] for i in inits]).to(encoder.weights[0].device)
        ws.append(w)
        bs.append(b)
    per_member = freeze is None and encoder.backbone.encoding_trainable
    encoding = {}
    for name, t in encoder.encoding.items():
        t = t.detach().clone()
        encoding[name] = t.expand(B, *t.shape[1:]).clone() if per_member else t
    return Stack(cfg, out_features, encoding, ws, bs)
