"""Hash grid (Müller et al., 2022, instant-ngp): a trainable multiresolution hash encoding, then a ReLU MLP.

Encoding γ (2-d, pure PyTorch). Coordinates x ∈ [-1, 1]² are mapped to u = (x + 1)/2 ∈ [0, 1]². There are
L = ``hash_levels`` levels with resolutions N_l = ⌊N_min · bˡ⌋, b = exp((ln N_max − ln N_min)/(L − 1)) (N_min =
``hash_min_res``, N_max = ``hash_max_res``; b = 1 when L = 1; a 1e-6 tolerance in the floor keeps N_{L−1} = N_max
despite float rounding). At level l the point u·N_l lies in the cell of corner i₀ = ⌊u·N_l⌋ (clamped to
N_l − 1, so that u = 1 falls in the last cell), whose 4 corners (i, j) ∈ {i₀ₓ, i₀ₓ+1} × {i₀ᵧ, i₀ᵧ+1} are looked up
in the level's table of T = 2^``hash_log2_table`` entries of F = ``hash_features`` features:

* directly, index i + j·(N_l + 1), when the level's (N_l + 1)² vertices fit the table (as the paper does);
* else through the spatial hash (i·1 ⊕ j·2654435761) mod T (⊕ = bitwise XOR).

The 4 corner features are blended bilinearly with the fractional position, and the L levels are concatenated,
level 0 first: γ(x) has d₀ = L·F entries. The MLP is ReLU, every layer initialised as ``nn.Linear`` (as FFMLP).

Tables: one (L, T, F) tensor ``table`` per member, drawn first from the member's generator, U(−1e-4, 1e-4) as in
the paper. It is a TRAINABLE encoding and counts as part of layer 0: single fits, cohorts and the no-freeze
transfer train it, a freeze-k transfer (k ≥ 0) keeps the cohort's table frozen and shared. (At levels with direct
indexing the entries beyond (N_l + 1)² are never read; they keep their initial values.)

Single-signal lr 1e-2 (instant-ngp's image configuration; it also uses Adam β₂ = 0.99, ε = 1e-15, which inrlens
does not: every backbone trains with the same Adam settings).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import nets
from .base import Backbone, Encoding

PRIME_Y = 2654435761
"""The hash's multiplier of the second coordinate (the first one's is 1) [paper]."""
INIT_RANGE = 1e-4
"""Tables start uniform in ±INIT_RANGE [paper]."""


def level_resolutions(cfg) -> list[int]:
    """N_l = ⌊N_min · bˡ⌋ for l = 0..L−1 (b = 1 when L = 1)."""
    L, n_min, n_max = cfg.hash_levels, cfg.hash_min_res, cfg.hash_max_res
    if L == 1:
        return [int(n_min)]
    b = math.exp((math.log(n_max) - math.log(n_min)) / (L - 1))
    return [int(math.floor(n_min * b**lev + 1e-6)) for lev in range(L)]


def corners(cfg, coords: Tensor) -> tuple[Tensor, Tensor]:
    """Table rows and bilinear weights of every level's 4 corners: (idx (L, P, 4) int64 into the flattened
    (L·T) rows, w (L, P, 4)); corner order (0,0), (1,0), (0,1), (1,1) in (x, y)."""
    T = 1 << cfg.hash_log2_table
    u = (coords + 1.0) * 0.5  # (P, 2) in [0, 1]
    idxs, wts = [], []
    for lev, n in enumerate(level_resolutions(cfg)):
        pos = u * n
        i0 = torch.floor(pos).clamp_(0, n - 1)
        f = pos - i0  # (P, 2) in [0, 1]
        i0 = i0.long()
        ix = torch.stack([i0[:, 0], i0[:, 0] + 1, i0[:, 0], i0[:, 0] + 1], dim=1)  # (P, 4)
        iy = torch.stack([i0[:, 1], i0[:, 1], i0[:, 1] + 1, i0[:, 1] + 1], dim=1)
        fx, fy = f[:, 0:1], f[:, 1:2]
        w = torch.cat([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], dim=1)  # (P, 4)
        if (n + 1) * (n + 1) <= T:
            idx = ix + iy * (n + 1)
        else:
            idx = torch.bitwise_xor(ix, iy * PRIME_Y) & (T - 1)
        idxs.append(idx + lev * T)
        wts.append(w)
    return torch.stack(idxs), torch.stack(wts)


class HashGrid(Backbone):
    """Multiresolution hash encoding (trainable, part of layer 0) + ReLU MLP."""

    name = "hashgrid"
    default_lr = 1e-2
    encoding_trainable = True
    description = "trainable multiresolution hash encoding + ReLU MLP (Müller et al. 2022, instant-ngp)"

    def encoding_dim(self, cfg) -> int:
        return cfg.hash_levels * cfg.hash_features

    def draw_encoding(self, cfg, generator: torch.Generator) -> Encoding:
        shape = (cfg.hash_levels, 1 << cfg.hash_log2_table, cfg.hash_features)
        return {"table": torch.empty(shape).uniform_(-INIT_RANGE, INIT_RANGE, generator=generator)}

    def encoding_names(self, cfg) -> tuple[str, ...]:
        return ("table",)

    def encoding_numel(self, cfg) -> int:
        return cfg.hash_levels * (1 << cfg.hash_log2_table) * cfg.hash_features

    def embed(self, cfg, enc: Encoding, coords: Tensor) -> Tensor:
        table = enc["table"]  # (B_f, L, T, F)
        bf, L, T, F = table.shape
        idx, w = corners(cfg, coords)  # (L, P, 4)
        P = coords.shape[0]
        feats = table.reshape(bf, L * T, F)[:, idx.reshape(-1)].reshape(bf, L, P, 4, F)  # one gather for all corners
        out = (feats * w.to(table.dtype).unsqueeze(-1)).sum(dim=3)  # (B_f, L, P, F)
        return out.permute(0, 2, 1, 3).reshape(bf, P, L * F)

    def hidden(self, cfg, ell: int, h: Tensor, w: Tensor, b: Tensor) -> Tensor:
        return torch.relu(nets.linear(h, w, b))

    def embed_saved(self, cfg) -> int:
        # per pixel and member: the gathered corner features (4·L·F) and their weighted copy (4·L·F), alive during
        # the forward, and the gradient of the gathered block during the backward (the weights and indices are
        # shared by every member)
        return 8 * cfg.hash_levels * cfg.hash_features


HASHGRID = HashGrid()
