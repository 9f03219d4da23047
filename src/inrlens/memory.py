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

Two passes cannot be chunked, so they are checked whole before they start (:func:`check_cohort`,
:func:`check_rank`; one-line ValueError naming the sizes and the budget):

* a STRAINER cohort (:func:`cohort_bytes`): one stack of N heads on a shared encoder. Its parameters (encoder
  once, N heads; 4 copies each as above) plus, per distinct grid of P_g pixels and n_g heads, the encoder's
  pass on that grid (its cached or recomputed input, the saved activations and transient gradients of the L
  hidden layers, counted as for one member above) and 4 × (n_g × P_g × C) for the heads' outputs and targets;
* the activation stable ranks (:func:`rank_bytes`): the forward pass keeps every hidden post-activation
  (L × P × w float32, plus the input encoding and the heads' output), and each layer's rank takes a float64
  copy of the P × w matrix, its centred copy and the copy the SVD works on (3 × P × w float64).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

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


def _size(n: float) -> str:
    """Bytes as '12.3 MiB' / '4.5 GiB'."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _budget(device: torch.device | str | None, budget_bytes: int | None) -> int:
    return available_bytes(device) if budget_bytes is None else int(budget_bytes)


def cohort_bytes(net: NetConfig, shapes: Sequence[tuple[int, int]], out_features: int) -> int:
    """Estimated training bytes of a cohort of ``len(shapes)`` heads on a shared encoder, head i fitting an image of
    shape ``shapes[i]`` = (H, W) (see the module docstring), before the safety factor."""
    shapes = [(int(h), int(w)) for h, w in shapes]
    if not shapes:
        raise ValueError("a cohort needs at least one image")
    if out_features < 1 or min(min(s) for s in shapes) < 1:
        raise ValueError(f"image sizes and out_features must be >= 1, got {shapes}, {out_features}")
    L, w = net.depth, net.width
    bb = get_backbone(net.backbone)
    d0 = int(bb.encoding_dim(net))
    enc = int(bb.encoding_numel(net))
    heads = len(shapes)
    encoder_params = d0 * w + w + (L - 1) * (w * w + w)
    params = encoder_params + heads * (w * out_features + out_features) + (enc if bb.encoding_trainable else 0)
    elems = 4 * params + (0 if bb.encoding_trainable else enc)
    per_grid: dict[tuple[int, int], int] = {}
    for s in shapes:
        per_grid[s] = per_grid.get(s, 0) + 1
    for (h, wd), n in per_grid.items():
        p = h * wd
        elems += p * d0  # the encoder's input on this grid
        if bb.encoding_trainable:
            elems += p * int(bb.embed_saved(net))
        elems += L * int(bb.saved_per_hidden(net)) * p * w + 2 * p * w  # saved activations, transient gradients
        elems += 4 * n * p * out_features  # heads' outputs, targets, residual and its square
    return BYTES * elems


def check_cohort(net: NetConfig, shapes: Sequence[tuple[int, int]], out_features: int,
                 device: torch.device | str | None = None, budget_bytes: int | None = None) -> int:
    """Refuse, with one line naming the sizes and the budget, a cohort whose training does not fit the memory budget
    (``budget_bytes``, default :func:`available_bytes` of ``device``); returns the estimate (safety factor included).
    A cohort is one stack and cannot be split into chunks."""
    need = int(cohort_bytes(net, shapes, out_features) * SAFETY)
    budget = _budget(device, budget_bytes)
    if need > budget:
        grids = sorted({(int(h), int(w)) for h, w in shapes}, reverse=True)
        on = ", ".join(f"{h}x{w}" for h, w in grids[:3]) + (", …" if len(grids) > 3 else "")
        raise ValueError(f"a cohort of {len(shapes)} images ({on} px, width {net.width}, depth {net.depth}) needs "
                         f"~{_size(need)} to train but the memory budget is {_size(budget)}; "
                         "use fewer or smaller images, or a smaller width")
    return need


def rank_bytes(net: NetConfig, pixels: int, out_features: int = 1, heads: int = 1) -> int:
    """Estimated peak bytes of the activation stable ranks of one encoder (``heads`` heads of ``out_features``
    outputs) on a grid of ``pixels`` pixels (see the module docstring)."""
    if pixels < 1:
        raise ValueError(f"pixels must be >= 1, got {pixels}")
    L, w = net.depth, net.width
    bb = get_backbone(net.backbone)
    d0 = int(bb.encoding_dim(net))
    embed = max(2 * d0, int(bb.embed_saved(net)) if bb.encoding_trainable else 0)  # γ(x) and its intermediates
    f32 = pixels * (2 + embed + L * w + 2 * w + int(heads) * int(out_features))
    f64 = 3 * pixels * w
    return BYTES * f32 + 8 * f64


def check_rank(net: NetConfig, shape: tuple[int, int], out_features: int = 1, heads: int = 1,
               device: torch.device | str | None = "cpu", budget_bytes: int | None = None,
               hint: str = "use a smaller --grid") -> int:
    """Refuse, with one line naming the grid, the width and the budget, activation ranks on the (H, W) grid
    ``shape`` that do not fit the memory budget (``budget_bytes``, default :func:`available_bytes` of ``device``);
    returns the estimate (safety factor included)."""
    h, w = int(shape[0]), int(shape[1])
    need = int(rank_bytes(net, h * w, out_features, heads) * SAFETY)
    budget = _budget(device, budget_bytes)
    if need > budget:
        raise ValueError(f"activation ranks on the {h}x{w} grid ({h * w} px × width {net.width}, {net.depth} layers) need "
                         f"~{_size(need)} but the memory budget is {_size(budget)}; {hint}")
    return need


__all__ = ["member_bytes", "available_bytes", "members_per_chunk", "cohort_bytes", "check_cohort", "rank_bytes", "check_rank",
           "RAM_FRACTION", "CUDA_FRACTION", "SAFETY"]
