"""Atom maps and single-atom ablations.

* Atom map of atom j: z_j(x) over the member's grid, an (H, W) image.
* Ranking: atoms by mean magnitude (mean of z_j over the grid, :class:`inrlens.probes.sae.Stats.mean_act`).
* Ablation of atom j at layer ℓ: h'(x) = h(x) − z_j(x)·d_j, propagate layers ℓ+1..L (the member's head);
  report the PSNR drop (vs the image), the error map |f' − f| (mean over channels, on [0,1]) and locality =
  Σ_{x ∈ R_j} ‖f'(x) − f(x)‖² / Σ_x ‖f'(x) − f(x)‖², R_j = {x : z_j(x) > τ} the atom's firing region.
  ``region_frac`` = |R_j| / P is the locality an error spread uniformly would get.
  Note: an INR is a pointwise map of x, and h'(x) = h(x) wherever z_j(x) = 0, so f' − f is zero outside the
  support of z_j by construction; locality is therefore 1 up to activations in (0, τ]. What distinguishes
  a localised atom from an image-spanning one is the size of its region (``region_frac``, i.e. its firing
  rate) and the PSNR drop, which is why both are stored beside locality.

On-disk layout (stable; the HTML atlas reads it): docs/run-folder.md, section "SAE runs"; the paths are
named by :class:`inrlens.probes.decompose.SaeRun`; that module also runs the whole pipeline (train, map, ablate).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from .sae import Codes, Stats, TopKSAE, psnr_pm1, run_from

STATS_NAME = "stats.safetensors"
ATOMS_NAME = "atoms.safetensors"
ABLATION_NAME = "ablation.safetensors"


def save_tensors(tensors: dict[str, Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """safetensors file written to a temp name and renamed (readers never see half a file); ``metadata``: the
    file header's string metadata (e.g. the digests of the models the tensors came from)."""
    from ..store import atomic_write

    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(cpu, str(tmp), metadata=metadata))


def load_tensors(path: str | os.PathLike) -> dict[str, Tensor]:
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: missing")
    return load_file(str(path))


def rank_atoms(stats: Stats) -> Tensor:
    """Atom ids by decreasing mean magnitude (ties by id, deterministic)."""
    return torch.sort(stats.mean_act.double(), descending=True, stable=True).indices


def atom_maps(codes: Codes, atoms: Sequence[int] | Tensor, shape: tuple[int, int]) -> Tensor:
    """(m, H, W) maps z_j(x) of the given atoms over a row-major H×W grid."""
    h, w = shape
    ids = torch.as_tensor(list(atoms) if not isinstance(atoms, Tensor) else atoms, dtype=torch.long, device=codes.indices.device)
    hit = codes.indices.unsqueeze(0) == ids.view(-1, 1, 1)  # (m, P, k)
    return (codes.values.unsqueeze(0) * hit).sum(-1).reshape(-1, h, w)


class Ablation(NamedTuple):
    """Effect of removing atoms at one layer (module docstring)."""

    out: Tensor
    """(P, C) output after ablation f'."""
    err_map: Tensor
    """(P,) |f' − f| on [0,1], mean over channels."""
    psnr_after: float
    """PSNR of f' vs the target (NaN without target)."""
    psnr_drop: float
    """PSNR(f, target) − PSNR(f', target) (NaN without target)."""
    locality: float
    """Share of Σ‖f' − f‖² that falls where the ablated atom(s) fire (NaN when f' = f)."""
    region_frac: float
    """Fraction of the grid where the ablated atom(s) fire."""


def ablated_acts(sae: TopKSAE, h: Tensor, codes: Codes, atoms: Sequence[int]) -> Tensor:
    """h'(x) = h(x) − Σ_{j ∈ atoms} z_j(x)·d_j, (P, d)."""
    ids = list(atoms)
    maps = atom_maps(codes, ids, (h.shape[0], 1)).reshape(len(ids), -1)  # (a, P)
    return h - maps.T @ sae.W_dec[ids]


def ablate(stack: Any, sae: TopKSAE, layer: int, member: int, h: Tensor, codes: Codes, atoms: Sequence[int],
           target: Tensor | None = None, f: Tensor | None = None) -> Ablation:
    """h' = h − Σ_{j ∈ atoms} z_j(x)·d_j at ``layer``, propagated through the rest of member ``member``."""
    from ..data import to_unit

    ids = list(atoms)
    maps = atom_maps(codes, ids, (h.shape[0], 1)).reshape(len(ids), -1)  # (a, P)
    h_abl = ablated_acts(sae, h, codes, ids)  # (P, d)
    if f is None:
        f = run_from(stack, h, layer, member)
    f2 = run_from(stack, h_abl, layer, member)
    diff = to_unit(f2) - to_unit(f)  # (P, C) on [0,1], clamped like the metrics
    err = diff.abs().mean(1)
    sq = (diff.double() ** 2).sum(1)
    region = (maps > sae.cfg.tau).any(0)
    total = float(sq.sum())
    loc = float(sq[region].sum()) / total if total > 0 else float("nan")
    if target is not None:
        p0, p1 = psnr_pm1(f, target), psnr_pm1(f2, target)
        drop = p0 - p1
    else:
        p1 = drop = float("nan")
    return Ablation(f2, err, p1, drop, loc, float(region.float().mean()))


def save_stats(stats: Stats, folder: str | os.PathLike) -> Path:
    order = rank_atoms(stats)
    return save_tensors({"firing_rate": stats.firing_rate.float(), "mean_act": stats.mean_act.float(),
                         "mean_active": stats.mean_active.float(), "order": order}, Path(folder) / STATS_NAME)


def load_stats(folder: str | os.PathLike) -> tuple[Stats, Tensor]:
    t = load_tensors(Path(folder) / STATS_NAME)
    return Stats(t["firing_rate"], t["mean_act"], t["mean_active"]), t["order"]
