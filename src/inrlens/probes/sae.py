"""TopK sparse autoencoders on the hidden activations of a fixed INR (Gao et al. 2024; the study's settings:
docs/protocol.md).

Model (d = layer width, n = dictionary size, k = active atoms per coordinate)::

    pre = (h − b_dec) W_encᵀ + b_enc          h: (P, d), W_enc: (n, d), b_enc: (n,)  → pre: (P, n)
    z   = ReLU(TopK_k(pre))                   all but the k largest entries of each row set to 0  → (P, n)
    ĥ   = z W_dec + b_dec                     W_dec: (n, d), rows = atoms d_j (unit norm)  → (P, d)

(``ĥ = W_decᵀ z`` in the paper's column-vector notation.) Training follows Gao et al.: W_enc = W_dec at init
(the encoder map is the transpose of the decoder map W_decᵀ), b_dec = mean of h, atoms renormalised to unit
norm after every step and the gradient component parallel to each atom removed before it, loss = normalised
MSE (fraction of variance unexplained), Adam. AuxK (dead-latent revival) is optional.

Coordinates, not tokens: the "data set" of one SAE is the (P, d) activation matrix of one hidden layer on
the member image's own grid; minibatches are drawn from its rows by a seeded generator (epoch-wise
permutations, so with batch ≥ P every step sees every coordinate).

Checkpoint: ``folder/cfg.json`` ({"sae": SAEConfig, "d": d, "meta": {...}}) + ``folder/sae.safetensors``
(W_enc (n, d), b_enc (n,), W_dec (n, d), b_dec (d,)), written via temp file + rename.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..config import register_key_fields, to_dict

SAE_CFG = "cfg.json"
SAE_WEIGHTS = "sae.safetensors"


@dataclass(frozen=True)
class SAEConfig:
    """One TopK SAE and its training schedule (defaults and their sources: docs/protocol.md)."""

    n: int = 4096
    """Dictionary size (number of atoms) [paper: 16 × width = 4096]."""
    k: int = 32
    """Active atoms per coordinate (TopK) [guess]."""
    lr: float = 4e-4
    """Adam learning rate [guess]."""
    steps: int = 10_000
    """Adam steps [guess]."""
    batch: int = 4096
    """Coordinates per minibatch, drawn from the layer's grid activations [guess]."""
    seed: int = 0
    """Seed of the dictionary init and of the minibatch order."""
    auxk: bool = False
    """Add the AuxK loss that lets dead atoms model the residual [Gao]; off by default."""
    aux_alpha: float = 1.0 / 32.0
    """Weight α of the AuxK loss [Gao]."""
    k_aux: int = 128
    """Dead atoms used by the AuxK loss per coordinate [Gao, scaled down]."""
    dead_steps: int = 500
    """An atom that has not fired on any minibatch for this many steps counts as dead for AuxK [guess]."""
    tau: float = 1e-3
    """Firing threshold: atom j fires at x when z_j(x) > τ (diagnostics) [guess]."""
    chunk: int = 16384
    """Coordinates per chunk when encoding a whole grid (memory bound only; results do not depend on it)."""

    def validate(self) -> SAEConfig:
        """Raise ValueError (one line) on impossible settings; called by TopKSAE and the CLI before any work
        (not in __post_init__, so that tyro reports it as one ``inrlens: error:`` line)."""
        if self.n < 1 or self.k < 1:
            raise ValueError(f"SAE needs n >= 1 and k >= 1, got n={self.n} k={self.k}")
        if self.k > self.n:
            raise ValueError(f"SAE k={self.k} exceeds the dictionary size n={self.n}")
        if self.steps < 0 or self.batch < 1 or self.lr <= 0:
            raise ValueError("SAE needs steps >= 0, batch >= 1 and lr > 0")
        if self.k_aux < 1 or self.tau < 0 or self.chunk < 1:
            raise ValueError("SAE needs k_aux >= 1, tau >= 0 and chunk >= 1")
        return self


register_key_fields(SAEConfig, ("n", "k", "lr", "steps", "batch", "seed", "auxk", "aux_alpha", "k_aux", "dead_steps", "tau", "chunk"))


class Forward(NamedTuple):
    """Output of :meth:`TopKSAE.forward` on activations h of shape (P, d)."""

    pre: Tensor
    """(P, n) encoder pre-activations (W_enc(h − b_dec) + b_enc), before TopK."""
    z: Tensor
    """(P, n) sparse codes: ReLU of the k largest pre-activations per row, zeros elsewhere (None inside the
    training loop of :func:`train_sae`, which decodes from the (P, k) top-k entries and never builds it)."""
    recon: Tensor
    """(P, d) reconstruction ĥ = z W_dec + b_dec."""


class Codes(NamedTuple):
    """Sparse codes of a whole grid: the k kept entries of each row (an exact, compact form of z)."""

    values: Tensor
    """(P, k) ReLU'd TopK values (may contain zeros)."""
    indices: Tensor
    """(P, k) atom index of each value."""

    def dense(self, n: int) -> Tensor:
        """(P, n) dense z."""
        z = torch.zeros(self.values.shape[0], n, dtype=self.values.dtype, device=self.values.device)
        return z.scatter_(1, self.indices, self.values)

    def atom(self, j: int) -> Tensor:
        """(P,) z_j(x) over the grid (0 where atom j is not among the row's top k)."""
        return (self.values * (self.indices == j)).sum(1)


class TrainLog(NamedTuple):
    """What :func:`train_sae` returns besides the SAE."""

    steps: list[int]
    """Logged step indices."""
    fvu: list[float]
    """Minibatch FVU (normalised MSE) at those steps."""
    dead_frac: list[float]
    """Fraction of atoms not fired for ≥ dead_steps steps, at those steps."""
    seconds: float
    """Wall time of the loop."""


def fvu(h: Tensor, recon: Tensor) -> Tensor:
    """Fraction of variance unexplained: Σ‖h − ĥ‖² / Σ‖h − mean(h)‖² over the rows (the normalised MSE)."""
    den = ((h - h.mean(0, keepdim=True)) ** 2).sum().clamp_min(1e-12)
    return ((h - recon) ** 2).sum() / den


def topk_relu(pre: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """k largest entries of each row of pre (P, n), ReLU'd → (values (P, k), indices (P, k))."""
    vals, idx = pre.topk(k, dim=-1, sorted=False)
    return torch.relu(vals), idx


class TopKSAE(nn.Module):
    """TopK SAE (module docstring). Parameters: W_enc (n, d), b_enc (n,), W_dec (n, d), b_dec (d,)."""

    def __init__(self, d: int, cfg: SAEConfig, b_dec: Tensor | None = None):
        super().__init__()
        self.cfg = cfg.validate()
        self.d = int(d)
        g = torch.Generator().manual_seed(cfg.seed)
        w = torch.randn(cfg.n, d, generator=g)
        w = w / w.norm(dim=1, keepdim=True)  # unit-norm atoms
        self.W_dec = nn.Parameter(w)
        self.W_enc = nn.Parameter(w.clone())  # encoder map = (decoder map W_decᵀ)ᵀ at init [Gao]
        self.b_enc = nn.Parameter(torch.zeros(cfg.n))
        self.b_dec = nn.Parameter(torch.zeros(d) if b_dec is None else b_dec.detach().clone().float().reshape(d))

    @property
    def n(self) -> int:
        return int(self.W_dec.shape[0])

    def preact(self, h: Tensor) -> Tensor:
        """(P, d) → (P, n) pre-activations; centring uses b_dec."""
        return (h - self.b_dec) @ self.W_enc.T + self.b_enc

    def encode_sparse(self, h: Tensor, k: int | None = None) -> Codes:
        vals, idx = topk_relu(self.preact(h), self.cfg.k if k is None else k)
        return Codes(vals, idx)

    def encode(self, h: Tensor) -> Tensor:
        """(P, d) → dense z (P, n) with at most k non-zeros per row."""
        return self.encode_sparse(h).dense(self.n)

    def decode(self, z: Tensor) -> Tensor:
        """(P, n) → ĥ (P, d)."""
        return z @ self.W_dec + self.b_dec

    def decode_sparse(self, codes: Codes) -> Tensor:
        """ĥ from sparse codes: Σ_t values[:, t] · W_dec[indices[:, t]] + b_dec → (P, d)."""
        return torch.einsum("pk,pkd->pd", codes.values, self.W_dec[codes.indices]) + self.b_dec

    def forward(self, h: Tensor) -> Forward:
        pre = self.preact(h)
        vals, idx = topk_relu(pre, self.cfg.k)
        z = torch.zeros_like(pre).scatter(1, idx, vals)
        return Forward(pre, z, self.decode(z))

    @torch.no_grad()
    def normalise_atoms(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """g_j ← g_j − (g_j·d_j) d_j for every atom (rows unit norm): the step cannot change an atom's norm
        to first order, so renormalising afterwards does not fight Adam [Gao, App. A]."""
        if self.W_dec.grad is None:
            return
        g = self.W_dec.grad
        g.sub_((g * self.W_dec).sum(1, keepdim=True) * self.W_dec)

    @torch.no_grad()
    def codes(self, h: Tensor) -> Codes:
        """Sparse codes of a whole grid in chunks of cfg.chunk rows."""
        parts = [self.encode_sparse(h[i : i + self.cfg.chunk]) for i in range(0, h.shape[0], self.cfg.chunk)]
        return Codes(torch.cat([p.values for p in parts]), torch.cat([p.indices for p in parts]))


def auxk_loss(sae: TopKSAE, h: Tensor, out: Forward, dead: Tensor) -> Tensor:
    """AuxK [Gao]: the k_aux largest pre-activations among dead atoms reconstruct the residual e = h − ĥ;
    loss = ‖e − ê‖² / ‖e − mean e‖² (ê without bias). Zero when no atom is dead."""
    n_dead = int(dead.sum())
    if n_dead == 0:
        return h.new_zeros(())
    masked = out.pre.masked_fill(~dead, -math.inf)
    vals, idx = masked.topk(min(sae.cfg.k_aux, n_dead), dim=-1)
    vals = torch.relu(vals)
    e_hat = torch.einsum("pk,pkd->pd", vals, sae.W_dec[idx])
    e = (h - out.recon).detach()
    return fvu(e, e_hat)


def train_sae(h: Tensor, cfg: SAEConfig, progress: bool = True, log_every: int = 50, desc: str = "sae") -> tuple[TopKSAE, TrainLog]:
    """Train a TopK SAE on a fixed activation matrix h (P, d) (one layer on one grid). Deterministic for a
    given cfg.seed on a given device."""
    if h.ndim != 2:
        raise ValueError(f"train_sae expects activations of shape (P, d), got {tuple(h.shape)}")
    h = h.detach().float()
    P, d = h.shape
    sae = TopKSAE(d, cfg, b_dec=h.mean(0)).to(h.device)
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    since_fired = torch.zeros(cfg.n, dtype=torch.long, device=h.device)
    perm = torch.randperm(P, generator=gen)
    pos = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, desc=desc, leave=False, dynamic_ncols=True)
    steps, curve, dead_curve = [], [], []
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        if cfg.batch >= P:
            xb = h
        else:
            if pos + cfg.batch > P:  # new epoch
                perm, pos = torch.randperm(P, generator=gen), 0
            xb = h[perm[pos : pos + cfg.batch].to(h.device)]
            pos += cfg.batch
        pre = sae.preact(xb)  # (B, n)
        codes = Codes(*topk_relu(pre, cfg.k))  # (B, k) each
        recon = sae.decode_sparse(codes)  # gather-decode: O(B·k·d) instead of the dense O(B·n·d)
        out = Forward(pre, None, recon)  # type: ignore[arg-type]  # z is not materialised while training
        loss = fvu(xb, recon)
        fired = torch.zeros(cfg.n, dtype=torch.bool, device=h.device)
        fired[codes.indices[codes.values > cfg.tau]] = True
        since_fired = torch.where(fired, torch.zeros_like(since_fired), since_fired + 1)
        dead = since_fired >= cfg.dead_steps
        if cfg.auxk:
            loss = loss + cfg.aux_alpha * auxk_loss(sae, xb, out, dead)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sae.remove_parallel_grad()
        opt.step()
        sae.normalise_atoms()
        if step % log_every == 0 or step == cfg.steps - 1:
            steps.append(step)
            curve.append(float(loss.detach()))
            dead_curve.append(float(dead.float().mean()))
            if bar is not None:
                bar.set_postfix(fvu=f"{curve[-1]:.4f}", dead=f"{dead_curve[-1]:.2f}", refresh=False)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    for p in sae.parameters():
        p.requires_grad_(False)
    return sae, TrainLog(steps, curve, dead_curve, time.perf_counter() - t0)


# ------------------------------------------------------------------------------------ checkpoints
def save_sae(sae: TopKSAE, folder: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Save as ``folder/cfg.json`` + ``folder/sae.safetensors`` (each written to a temp name and renamed)."""
    from ..store import atomic_write, atomic_write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: getattr(sae, k).detach().cpu().contiguous() for k in ("W_enc", "b_enc", "W_dec", "b_dec")}
    atomic_write(folder / SAE_WEIGHTS, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write_json(folder / SAE_CFG, {"sae": to_dict(sae.cfg), "d": sae.d, "meta": meta or {}})
    return folder


def load_sae(folder: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[TopKSAE, dict[str, Any]]:
    """Load an SAE saved by :func:`save_sae` → (sae, meta)."""
    folder = Path(folder)
    if not (folder / SAE_CFG).exists() or not (folder / SAE_WEIGHTS).exists():
        raise FileNotFoundError(f"{folder}: not a saved SAE (needs {SAE_CFG} and {SAE_WEIGHTS})")
    cfg = json.loads((folder / SAE_CFG).read_text())
    sae = TopKSAE(int(cfg["d"]), SAEConfig(**cfg["sae"]))
    t = load_file(str(folder / SAE_WEIGHTS), device="cpu")
    with torch.no_grad():
        for k in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(sae, k).copy_(t[k])
    for p in sae.parameters():
        p.requires_grad_(False)
    return sae.to(device), cfg.get("meta", {})


# ------------------------------------------------------------------------------------ INR plumbing
def layer_acts(stack: Any, coords: Tensor, member: int) -> list[Tensor]:
    """Hidden activations h_ℓ (P, width), ℓ = 0..L−1, of one member on a grid. For a cohort the encoder is
    shared (B_ℓ = 1), so every member sees the same h_ℓ; for a stack of independent INRs the member's own."""
    with torch.no_grad():
        _, hidden = stack.activations(coords)
    return [hh[min(member, hh.shape[0] - 1)] for hh in hidden]


def run_from(stack: Any, h: Tensor, layer: int, member: int) -> Tensor:
    """Output (P, C) of member ``member`` when its layer-``layer`` activation is replaced by h (P, d)."""
    idx = torch.tensor([member], device=h.device)
    with torch.no_grad():
        return stack.run(h.unsqueeze(0), layer + 1, None, idx)[0]


class Stats(NamedTuple):
    """Per-atom statistics of an SAE over one whole grid (fire = z > τ)."""

    firing_rate: Tensor
    """(n,) fraction of grid coordinates where the atom fires."""
    mean_act: Tensor
    """(n,) mean of z_j over the whole grid (the 'mean magnitude' used to rank atoms)."""
    mean_active: Tensor
    """(n,) mean of z_j over the coordinates where it fires (0 for dead atoms)."""


def atom_stats(codes: Codes, n: int, tau: float) -> Stats:
    """Per-atom firing rate and magnitudes from sparse codes (scatter-adds over the k kept entries)."""
    P = codes.values.shape[0]
    fire = (codes.values > tau).to(codes.values.dtype)
    count = torch.zeros(n, dtype=torch.float64, device=codes.values.device)
    total = torch.zeros(n, dtype=torch.float64, device=codes.values.device)
    active_sum = torch.zeros(n, dtype=torch.float64, device=codes.values.device)
    idx = codes.indices.reshape(-1)
    count.index_add_(0, idx, fire.reshape(-1).double())
    total.index_add_(0, idx, codes.values.reshape(-1).double())
    active_sum.index_add_(0, idx, (codes.values * fire).reshape(-1).double())
    return Stats((count / P).float(), (total / P).float(), torch.where(count > 0, active_sum / count.clamp_min(1), 0.0).float())


def summarise(stats: Stats) -> dict[str, float]:
    """alive % (fires at least once), dead %, spatial coverage ρ = mean firing rate over alive atoms."""
    alive = stats.firing_rate > 0
    n = stats.firing_rate.numel()
    rho = float(stats.firing_rate[alive].mean()) if bool(alive.any()) else math.nan
    return {"alive_pct": 100.0 * float(alive.sum()) / n, "dead_pct": 100.0 * float((~alive).sum()) / n, "rho": rho}


def psnr_pm1(x: Tensor, y: Tensor) -> float:
    """PSNR (dB) of two (P, C) outputs in [-1, 1], measured on [0, 1] after clamping (as fit.evaluate does)."""
    from ..data import to_unit
    from ..metrics import mse_to_psnr

    mse = ((to_unit(x).double() - to_unit(y).double()) ** 2).mean()
    return float(mse_to_psnr(mse))


def diagnostics(stack: Any, sae: TopKSAE, layer: int, member: int, coords: Tensor, target: Tensor | None = None,
                h: Tensor | None = None) -> tuple[dict[str, float], Stats, Codes]:
    """Diagnostics of one SAE on layer ``layer`` of member ``member``:

    psnr_sub (output with ĥ substituted, vs the image ``target`` (P, C) in [-1,1]; NaN without one),
    psnr_inr (unmodified INR vs the image), psnr_sub_vs_inr (substituted vs unmodified output), r2 = 1 − FVU
    of the layer over the whole grid, alive_pct, dead_pct, rho; and the per-atom Stats and the grid's Codes.
    """
    if h is None:
        h = layer_acts(stack, coords, member)[layer]
    codes = sae.codes(h)
    recon = sae.decode_sparse(codes)
    f = run_from(stack, h, layer, member)
    f_sub = run_from(stack, recon, layer, member)
    st = atom_stats(codes, sae.n, sae.cfg.tau)
    row = {"r2": 1.0 - float(fvu(h, recon)), "psnr_sub_vs_inr": psnr_pm1(f_sub, f),
           "psnr_sub": psnr_pm1(f_sub, target) if target is not None else math.nan,
           "psnr_inr": psnr_pm1(f, target) if target is not None else math.nan, **summarise(st)}
    return row, st, codes
