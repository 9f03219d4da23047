"""How many stack members fit a memory budget: the chunk size is chosen from the budget, so a fit never OOMs.

A grid fits its (image × seed) members in chunks, one :class:`~inrlens.nets.Stack` per chunk. This module
estimates the bytes one *member* of such a stack costs during training and divides a budget by it.

Per member, with P pixels, width w, depth L, C output channels and trainable layers ``trainable_from..L``
(t = trainable_from; layers below t are frozen and shared by every member, so they cost nothing per member):

* parameters of layers ≥ t, each held 4 times: value, gradient, Adam exp_avg and exp_avg_sq (for t = 0 a
  trainable input encoding counts as part of layer 0);
* the cached input of layer t (P × d_t): the frozen-prefix cache. For t = 0 this is γ(x) (P × d₀, d₀ from the
  backbone: 2 for SIREN, 2m for FFMLP), plus a fixed encoding's own tensors, which are per member in a
  single-fit stack (FFMLP's (2, m) Fourier matrix); a trainable encoding at t = 0 is recomputed every step
  instead, and its backward keeps ``Backbone.embed_saved`` elements per pixel;
* activations saved for backward, per trainable hidden layer: ``Backbone.saved_per_hidden`` × (P × w). For
  SIREN and FFMLP that is 3: the linear output z, the scaled ω₀·z that sin saves (SIREN) or the ReLU output
  (FFMLP), and the post-activation that the next matmul saves;
* transient gradients during backward: about 2 × (P × w) alive at once (grad of h_ℓ and of z_ℓ);
* targets, prediction, residual and its square: 4 × (P × C).

Everything is float32 (INR fitting stays out of bf16). The estimate is checked against the bytes
autograd actually saves (tests/test_perf_equivalence.py) and, on CUDA, against the allocator's peak.
"""

from __future__ import annotations

import os

import torch

from .backbones import get_backbone
from .config import NetConfig

BYTES = 4  # float32
RAM_FRACTION = 0.5
"""Default CPU budget: this fraction of MemAvailable (the machine is usually shared)."""
CUDA_FRACTION = 0.8
"""Default CUDA budget: this fraction of the currently free device memory (allocator slack, other tensors)."""
SAFETY = 1.25
"""Multiplier on the per-member estimate (allocator rounding, compile/fused-kernel workspaces)."""


def member_bytes(net: NetConfig, pixels: int, out_features: int, trainable_from: int = 0) -> int:
    """Estimated training bytes of one stack member (see the module docstring), before the safety factor."""
    if pixels < 1 or out_features < 1:
        raise ValueError(f"pixels and out_features must be >= 1, got {pixels}, {out_features}")
    L, w = net.depth, net.width
    t = int(trainable_from)
    if not 0 <= t <= L:
        raise ValueError(f"trainable_from must be in 0..{L} (L = depth; {L} trains the head only), got {t}")
    bb = get_backbone(net.backbone)
    d0 = int(bb.encoding_dim(net))
    dims = [(d0, w)] + [(w, w)] * (L - 1) + [(w, out_features)]  # (in, out) of layers 0..L
    params = sum(i * o + o for i, o in dims[t:])
    enc = int(bb.encoding_numel(net))  # the member's own encoding tensors (single fits: one per member)
    if t == 0 and bb.encoding_trainable:
        params += enc  # trained with layer 0
    elems = 4 * params  # value, grad, Adam m, Adam v
    elems += pixels * dims[t][0]  # cached input of the first trainable layer (γ(x) for t = 0)
    if t == 0 and not bb.encoding_trainable:
        elems += enc  # a fixed encoding: just the values (FFMLP's Fourier matrix (2, m))
    if t == 0 and bb.encoding_trainable:
        elems += pixels * int(bb.embed_saved(net))  # γ(x) is recomputed each step; its backward keeps these
    hidden_trainable = L - t  # trainable hidden layers t..L-1
    elems += hidden_trainable * int(bb.saved_per_hidden(net)) * pixels * w
    elems += (2 * pixels * w) if hidden_trainable > 0 else pixels * out_features
    elems += 4 * pixels * out_features
    return BYTES * elems


def available_bytes(device: torch.device | str | None = None) -> int:
    """Default budget: CUDA_FRACTION of free CUDA memory, or RAM_FRACTION of available RAM on CPU."""
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free * CUDA_FRACTION)
    return int(_ram_available() * RAM_FRACTION)


def _ram_available() -> int:
    """MemAvailable from /proc/meminfo (Linux), else physical RAM from sysconf."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def members_per_chunk(net: NetConfig, pixels: int, out_features: int, trainable_from: int = 0,
                      device: torch.device | str | None = None, budget_bytes: int | None = None) -> int:
    """Largest number of stack members whose training state fits the budget.

    net, pixels (H·W of the grid), out_features (C) and trainable_from (first trainable layer: 0 for single
    fits and no-freeze transfers, k+1 for freeze-k) determine the per-member cost; budget_bytes defaults to
    :func:`available_bytes` of ``device`` (None = CUDA when available, else CPU). Raises ValueError, naming
    both sizes, when not even one member fits: a chunk of 0 would loop forever, a chunk of 1 would OOM.
    """
    budget = available_bytes(device) if budget_bytes is None else int(budget_bytes)
    per = int(member_bytes(net, pixels, out_features, trainable_from) * SAFETY)
    n = budget // per
    if n < 1:
        raise ValueError(f"one member needs ~{per / 2**20:.1f} MiB to train ({pixels} px, width {net.width}) "
                         f"but the memory budget is {budget / 2**20:.1f} MiB; use smaller images or width")
    return int(n)


__all__ = ["member_bytes", "available_bytes", "members_per_chunk", "RAM_FRACTION", "CUDA_FRACTION", "SAFETY"]
