"""Steering a reconstruction through SAE atoms: scale what chosen atoms contribute at one layer, run the rest of
the INR, and look at the image it draws (the library behind ``inrlens steer`` and the atlas's α control).

Notation as in :mod:`inrlens.probes.decompose` (one member on an H×W grid, P = H·W coordinates, row-major;
layer ℓ of width d; C output channels; an SAE with n atoms, codes z (P, n), atoms d_j = rows of W_dec)::

    h'_ℓ(x) = h_ℓ(x) + Σ_{j ∈ edits} (α_j − 1) · z_j(x) · d_j          (P, d)
    f'      = rest of the member's network (layers ℓ+1 … L−1 and its head) applied to h'_ℓ   (P, C) in [-1, 1]

* α_j = 1 leaves the atom as it is (f' = f exactly);
* α_j = 0 removes it: h − z_j d_j, the single-atom ablation of :func:`inrlens.probes.atoms.ablate`;
* α_j = 2, 4 … amplifies it, 0 < α_j < 1 damps it, α_j < 0 reverses it;
* several atoms are edited at once, each with its own α_j (the sum above).

The edit moves h only along the atom's own direction and only where the atom fires (z_j(x) > 0); an INR is a
pointwise map of x, so f' differs from f only at those coordinates.

Images are returned on [0, 1] (``(f + 1) / 2`` clamped, as every metric of the package); the **difference
map** is |f'(x) − f(x)| on that [0, 1] scale, averaged over the C channels, an (H, W) array (the same
definition as the ablation error map). PSNRs use :func:`inrlens.probes.sae.psnr_pm1`.

Precomputed renders for the atlas (:func:`steer_renders`, written by
:func:`inrlens.probes.decompose.atom_maps_for` as ``steer.safetensors`` beside ``atoms.safetensors``; layout
in docs/run-folder.md) hold the first ``STEER_TOP`` of the stored top atoms at the α values of
``STEER_SCALES``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .sae import Codes, TopKSAE, psnr_pm1, run_from

STEER_NAME = "steer.safetensors"
STEER_SCALES: tuple[float, ...] = (0.0, 0.5, 2.0, 4.0)
"""α values rendered for the atlas [ours]: removed, halved, doubled, quadrupled (α = 1 is the original)."""
STEER_TOP = 8
"""How many of an SAE's stored top atoms get atlas renders [ours]: each costs len(STEER_SCALES) renders of
(H, W, C) plus their difference maps, so the file stays a few times the size of atoms.safetensors."""


class Steered(NamedTuple):
    """What :func:`steer` returns (unpacks as ``image, diff``)."""

    image: Tensor
    """(H, W, C) the steered output f' on [0, 1]."""
    diff: Tensor
    """(H, W) |f' − f| on [0, 1], mean over the C channels."""


def check_edits(edits: Sequence[tuple[int, float]], n: int) -> list[tuple[int, float]]:
    """Edits as (atom j, scale α) pairs → the same list with int/float types; one-line ValueError for an empty
    list, an atom outside 0..n−1, an atom given twice or a scale that is not a finite number."""
    out: list[tuple[int, float]] = []
    if not edits:
        raise ValueError("no atom to steer; give at least one (atom, scale) pair")
    seen: set[int] = set()
    for j, a in edits:
        j, a = int(j), float(a)
        if not 0 <= j < n:
            raise ValueError(f"atom {j} is out of range: this SAE has n = {n} atoms (0..{n - 1})")
        if j in seen:
            raise ValueError(f"atom {j} is given twice; give each atom once with its scale")
        if not math.isfinite(a):
            raise ValueError(f"scale {a} of atom {j} is not a finite number")
        seen.add(j)
        out.append((j, a))
    return out


def steered_acts(sae: TopKSAE, h: Tensor, codes: Codes, edits: Sequence[tuple[int, float]]) -> Tensor:
    """h' = h + Σ_j (α_j − 1)·z_j(x)·d_j, (P, d). Atoms with α_j = 1 contribute nothing; when every α is 1
    the very tensor ``h`` is returned (so that f' = f holds exactly)."""
    live = [(j, a) for j, a in check_edits(edits, sae.n) if a != 1.0]
    if not live:
        return h
    ids = [j for j, _ in live]
    scale = torch.tensor([a - 1.0 for _, a in live], dtype=h.dtype, device=h.device)  # (e,)
    z = torch.stack([codes.atom(j) for j in ids])  # (e, P)
    return h + (scale[:, None] * z).T @ sae.W_dec[ids]


def _check_layer(ctx: Any, sae: TopKSAE, layer: int) -> int:
    layer = int(layer)
    if not 0 <= layer < ctx.depth:
        raise ValueError(f"layer {layer} is outside 0..{ctx.depth - 1}")
    d = ctx.acts[layer].shape[1]
    if sae.d != d:
        raise ValueError(f"the SAE expects width {sae.d} but layer {layer} has width {d}")
    return layer


def steer_output(ctx: Any, sae: TopKSAE, layer: int, edits: Sequence[tuple[int, float]], codes: Codes | None = None) -> Tensor:
    """f' (P, C) in [-1, 1]: the member's output with h_ℓ replaced by the steered h' (module docstring).

    ctx: a :class:`inrlens.probes.decompose.MemberContext`; sae: an SAE trained on its layer ``layer``;
    codes: ``sae.codes(ctx.acts[layer])`` when already computed."""
    layer = _check_layer(ctx, sae, layer)
    h = ctx.acts[layer]
    codes = sae.codes(h) if codes is None else codes
    h2 = steered_acts(sae, h, codes, edits)
    if h2 is h:
        return ctx.f  # nothing edited: f' = f
    return run_from(ctx.stack, h2, layer, ctx.member)


def to_image(f: Tensor, shape: tuple[int, int]) -> Tensor:
    """(P, C) output in [-1, 1] → (H, W, C) image on [0, 1] (clamped)."""
    from ..data import to_unit

    return to_unit(f).reshape(shape[0], shape[1], -1)


def diff_map(f2: Tensor, f: Tensor, shape: tuple[int, int]) -> Tensor:
    """(H, W) |f' − f| on [0, 1] (both clamped), mean over channels."""
    from ..data import to_unit

    return (to_unit(f2) - to_unit(f)).abs().mean(1).reshape(shape)


def steer(ctx: Any, sae: TopKSAE, layer: int, edits: Sequence[tuple[int, float]], codes: Codes | None = None) -> Steered:
    """Steer member ``ctx`` at ``layer`` by the (atom j, scale α_j) pairs of ``edits``:
    h'_ℓ = h_ℓ + Σ_j (α_j − 1)·z_j·d_j, f' = rest of the INR applied to h'_ℓ.

    Shapes: h_ℓ, h'_ℓ (P, d); z_j (P,); d_j (d,); f, f' (P, C). Returns ``(image, diff)``: image (H, W, C) = f'
    on [0, 1]; diff (H, W) = |f' − f| on [0, 1] averaged over channels. Bad edits (empty, atom out of range,
    repeated, non-finite scale) and a layer outside 0..L−1 are one-line ValueErrors."""
    f2 = steer_output(ctx, sae, layer, edits, codes)
    return Steered(to_image(f2, ctx.shape), diff_map(f2, ctx.f, ctx.shape))


def steer_psnr(ctx: Any, f2: Tensor) -> tuple[float, float]:
    """(PSNR of f' against the unsteered reconstruction f, PSNR of f' against the image) in dB (inf when equal)."""
    return psnr_pm1(f2, ctx.f), psnr_pm1(f2, ctx.target)


def steer_renders(ctx: Any, sae: TopKSAE, layer: int, atoms: Sequence[int], scales: Sequence[float] = STEER_SCALES,
                  codes: Codes | None = None) -> dict[str, Tensor]:
    """Each atom of ``atoms`` steered alone at each α of ``scales`` (m atoms, S scales) — what steer.safetensors holds:

    atom (m,) int64; scales (S,) float32; images (m, S, H, W, C) and diffs (m, S, H, W) float16 (the
    :func:`steer` outputs); psnr_vs_inr, psnr_vs_image (m, S) float32; original (H, W, C) float16 = f on [0, 1]."""
    layer = _check_layer(ctx, sae, layer)
    codes = sae.codes(ctx.acts[layer]) if codes is None else codes
    scales = [float(a) for a in scales]
    for a in scales:
        if not math.isfinite(a):
            raise ValueError(f"steering scale {a} is not a finite number")
    H, W = ctx.shape
    C = ctx.f.shape[1]
    m, S = len(atoms), len(scales)
    images = torch.zeros(m, S, H, W, C, dtype=torch.float16)
    diffs = torch.zeros(m, S, H, W, dtype=torch.float16)
    p_inr = torch.zeros(m, S, dtype=torch.float32)
    p_img = torch.zeros(m, S, dtype=torch.float32)
    for i, j in enumerate(atoms):
        for s, a in enumerate(scales):
            f2 = steer_output(ctx, sae, layer, [(int(j), a)], codes)
            images[i, s] = to_image(f2, ctx.shape).half().cpu()
            diffs[i, s] = diff_map(f2, ctx.f, ctx.shape).half().cpu()
            p_inr[i, s], p_img[i, s] = steer_psnr(ctx, f2)
    return {"atom": torch.as_tensor([int(j) for j in atoms], dtype=torch.int64), "scales": torch.tensor(scales, dtype=torch.float32),
            "images": images, "diffs": diffs, "psnr_vs_inr": p_inr, "psnr_vs_image": p_img,
            "original": to_image(ctx.f, ctx.shape).half().cpu()}


__all__ = ["STEER_NAME", "STEER_SCALES", "STEER_TOP", "Steered", "check_edits", "steered_acts", "steer_output", "steer", "steer_psnr",
           "steer_renders", "to_image", "diff_map"]
