"""Decomposing one saved INR member: SAEs per hidden layer, atom maps, single-atom ablations (the library
behind ``inrlens sae | atoms | ablate`` and the sae / atoms / ablate stages of ``inrlens reproduce``).

Three steps, each a function that computes, writes the run folder's files and returns data (no figures:
:mod:`inrlens.report.sae_figures` draws them from what these functions return)::

    ctx  = load_member(inr_dir, images, member, data, device)      the member's grid, target, activations
    rows = decompose(ctx, layers, sae_cfg, combos, out)             one TopK SAE per (layer ℓ, n, k)
    maps = atom_maps_for(out, top, layers, device)                  z_j(x) of the top atoms of every SAE (+ steering renders, semantics)
    abl  = ablate_atoms(out, layers, top, device)                   h − z_j d_j, propagated, per top atom

Notation (shapes for one member on an H×W grid, P = H·W coordinates, row-major; L hidden layers of width d;
C output channels; SAE with n atoms, k active per coordinate; see :mod:`inrlens.probes.sae`)::

    h_ℓ (P, d)        hidden activation of layer ℓ = 0..L−1 on the grid
    f   (P, C)        the member's output in [-1, 1]
    z   (P, n)        SAE codes of h_ℓ, at most k non-zeros per row; z_j (P,) = atom j's map
    d_j (d,)          atom j = row j of W_dec (unit norm);  ĥ = z W_dec + b_dec
    h'  = h − z_j d_j the activation with atom j removed; f' = the rest of the network applied to h'

Every file name of an SAE run folder lives in :class:`SaeRun` (and :class:`SaeFiles` for one SAE), in
:mod:`inrlens.probes.sae_run`; the layout is documented in docs/run-folder.md. :class:`MemberContext` and
:func:`load_member` are in :mod:`inrlens.probes.member`. Both modules' names are importable from here as well.

Identities (:mod:`inrlens.identity`): context.json, every SAE's cfg.json and every row record the digest of the
INR checkpoint (``inr_sha256``) and of the member's image (``image_digest``); atoms, steering and ablation files
record the INR's and the SAE's digests (``sae_sha256`` = sha256 of sae.safetensors). When the INR has been
retrained in place since, ``atoms`` / ``ablate`` / ``steer`` refuse the run with one line (its SAEs describe
another network); SAEs trained on an earlier INR in a run retrained since are left out with a warning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import TrainConfig, config_hash, to_dict
from ..store import RESULTS_NAME
from .member import MemberContext, load_member, member_names, pick_member
from .sae import SAEConfig
from .sae_run import (
    ABLATIONS_NAME,
    IDENTITY_FIELDS,
    SaeFiles,
    SaeRun,
    _as_run,
    current_saes,
    health_figure,
    sae_digest,
    sae_stats_figure,
)


# ------------------------------------------------------------------------------------------- decompose
def sweep_combos(sae: SAEConfig, sweep_n: Sequence[int] = (), sweep_k: Sequence[int] = ()) -> tuple[list[tuple[int, int]], int]:
    """The n × k grid (empty lists = just sae.n / sae.k) without the pairs with k > n → (combos, skipped).

    Every kept pair is validated; a grid with no valid pair is a one-line ValueError."""
    ns, ks = list(sweep_n) or [sae.n], list(sweep_k) or [sae.k]
    combos = [(n, k) for n in ns for k in ks if k <= n]
    if not combos:
        replace(sae, n=ns[0], k=ks[0]).validate()  # names the problem (k exceeds n)
        raise ValueError(f"no (n, k) with k <= n among n={ns} k={ks}")
    for n, k in combos:
        replace(sae, n=n, k=k).validate()
    return combos, len(ns) * len(ks) - len(combos)


def decompose(ctx: MemberContext, layers: Sequence[int], sae: SAEConfig, combos: Sequence[tuple[int, int]], out: str | Path,
              resume: bool = False, overwrite: bool = False, progress: bool = True) -> list[dict[str, Any]]:
    """Train one TopK SAE per (layer ℓ, n, k) on h_ℓ (P, d) of the member; save each with its atom statistics
    and append one diagnostics row per SAE to ``out``/results.jsonl.

    layers: hidden layers (empty = 0..L−1); combos: (n, k) pairs (empty = (sae.n, sae.k)), each trained with
    ``replace(sae, n=n, k=k)``. Resumable: a row's key is hash(config, ℓ, n, k, INR digest, image digest) with
    config = hash of {"cmd": "sae", "context": ctx.record less its identity fields, "sae": sae}; keys already in
    results.jsonl are skipped, so SAEs of an INR retrained in place since are trained again. A folder that holds
    another run's config is refused unless resume/overwrite (store.prepare_run); an overwrite moves the replaced
    config's results.jsonl and ablations.jsonl aside (:func:`inrlens.identity.prepare_fresh`).

    Row: key, config, condition, regime, backbone, inr, inr_sha256, image, image_digest, member, layer, n, k, width, sae (the config), the
    diagnostics of probes.sae.diagnostics (r2 = 1 − FVU(h, ĥ), psnr_inr, psnr_sub, psnr_sub_vs_inr, alive_pct,
    dead_pct, rho), final_fvu, train_dead_pct, seconds, runtime, folder (relative to ``out``).
    Returns the rows trained by this call (not the skipped ones).
    """
    from ..fit import runtime_info
    from ..identity import prepare_fresh
    from ..store import append_row, atomic_write_json, done_keys
    from .atoms import save_stats
    from .sae import diagnostics, save_sae, train_sae

    L = ctx.depth
    for ell in layers:
        if not 0 <= ell < L:
            raise ValueError(f"layer {ell} is outside 0..{L - 1}")
    combos = [(int(n), int(k)) for n, k in combos] or [(sae.n, sae.k)]
    for n, k in combos:
        replace(sae, n=n, k=k).validate()
    rec = ctx.record
    ident = {k: rec.get(k) for k in IDENTITY_FIELDS}
    conf = {"cmd": "sae", "context": {k: v for k, v in rec.items() if k not in IDENTITY_FIELDS}, "sae": sae}
    run = SaeRun(prepare_fresh(out, conf, resume, overwrite, files=(RESULTS_NAME, ABLATIONS_NAME)))
    atomic_write_json(run.context, rec)
    done = done_keys(run.results)
    chash = config_hash(conf)
    cond, stack, member = ctx.condition, ctx.stack, ctx.member
    runtime = runtime_info(ctx.device, TrainConfig())
    rows = []
    for ell in list(layers) or list(range(L)):
        for n, k in combos:
            key = config_hash({"config": chash, "layer": ell, "n": n, "k": k, "inr": ident["inr_sha256"],
                               "image": ident["image_digest"]})
            if key in done:
                continue
            cfg = replace(sae, n=n, k=k)
            h = ctx.acts[ell]
            model, log = train_sae(h, cfg, progress=progress, desc=f"sae L{ell} n={n} k={k}")
            diag, stats, _ = diagnostics(stack, model, ell, member, ctx.coords, ctx.target, h=h)
            files = run.sae(ell, n, k)
            save_sae(model, files.path, {"layer": ell, "member": member, "image": ctx.image, "inr": rec["inr"],
                                         "condition": cond, "shape": list(ctx.shape), **ident})
            save_stats(stats, files.path)
            row = {"key": key, "config": chash, "condition": cond, "regime": rec["regime"], "backbone": stack.cfg.backbone,
                   "inr": rec["inr"], "image": ctx.image, **ident, "member": member, "layer": ell, "n": n, "k": k,
                   "width": stack.cfg.width, "sae": to_dict(cfg), **diag, "final_fvu": log.fvu[-1] if log.fvu else math.nan,
                   "train_dead_pct": 100.0 * log.dead_frac[-1] if log.dead_frac else math.nan, "seconds": log.seconds,
                   "runtime": runtime, "folder": str(files.path.relative_to(run.root))}
            append_row(run.results, row)
            done.add(key)
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------- atom maps
@dataclass(frozen=True, eq=False)
class AtomMaps:
    """The top atoms of one SAE and their maps (what atoms.safetensors holds, plus the full statistics)."""

    condition: str
    files: SaeFiles
    atoms: Tensor
    """(m,) int64 atom ids, by decreasing mean magnitude (m = min(top, n))."""
    maps: Tensor
    """(m, H, W) float32 z_j(x) of those atoms (stored as float16)."""
    firing_rate: Tensor
    """(n,) fraction of the grid where each atom fires (z_j > τ)."""
    mean_act: Tensor
    """(n,) mean of z_j over the grid."""
    steer: dict[str, Tensor] | None = None
    """What steer.safetensors holds (:func:`inrlens.probes.steer.steer_renders`); None when no renders were made."""

    @property
    def layer(self) -> int:
        return self.files.layer


def _file_identity(ctx: MemberContext, files: SaeFiles) -> dict[str, str]:
    """What the header of an atoms / steering / ablation file records: the INR's, the SAE's and the image's digests."""
    ident = {"inr_sha256": ctx.record.get("inr_sha256"), "sae_sha256": sae_digest(files),
             "image_digest": ctx.record.get("image_digest")}
    return {k: str(v) for k, v in ident.items() if v}


def _saes_or_fail(run: SaeRun, layers: Sequence[int], what: str) -> list[SaeFiles]:
    saes = run.saes(layers)
    if not saes:
        raise FileNotFoundError(f"{run.root}: no SAEs{what}")
    return saes


def atom_maps_for(run: str | Path | SaeRun, top: int = 16, layers: Sequence[int] = (),
                  device: str | torch.device = "cpu", steer_scales: Sequence[float] | None = None,
                  steer_top: int | None = None) -> list[AtomMaps]:
    """For every saved SAE of the run (``layers`` non-empty: only those): codes z = SAE(h_ℓ) on the member's
    grid, the ``top`` atoms by mean magnitude and their maps z_j reshaped to (H, W); writes atoms.safetensors
    (atom (m,) int64, maps (m, H, W) float16, firing_rate, mean_act (m,) float32, mean_top (H, W) float32 =
    mean of the m maps) in each SAE folder and returns the same data.

    Atom semantics: semantics.json beside atoms.safetensors holds the Pearson r of those m maps with the
    member image's feature maps and the coordinate maps (plus GM / WM / CSF, and a second record inside the brain
    mask, when the run's recorded image spec is ``sample:mri``), built once per run
    (:func:`inrlens.probes.semantics.member_features`, :func:`inrlens.probes.semantics.semantics_for`).

    Steering renders for the atlas: the first ``steer_top`` (None = probes.steer.STEER_TOP) of those atoms,
    each steered alone at every α of ``steer_scales`` (None = probes.steer.STEER_SCALES), are written to
    steer.safetensors (:func:`inrlens.probes.steer.steer_renders`); ``steer_scales=()`` or ``steer_top=0``
    writes none and removes an older steer.safetensors (its renders would belong to other atoms)."""
    from ..store import atomic_write_json
    from .atoms import atom_maps, load_stats, save_tensors
    from .sae import load_sae
    from .semantics import member_features, semantics_for
    from .steer import STEER_SCALES, STEER_TOP, steer_renders

    if top < 1:
        raise ValueError("--top must be >= 1")
    scales = tuple(STEER_SCALES if steer_scales is None else steer_scales)
    steer_top = STEER_TOP if steer_top is None else int(steer_top)
    if steer_top < 0:
        raise ValueError("steer_top must be >= 0")
    for a in scales:
        if not math.isfinite(float(a)):
            raise ValueError(f"steering scale {a} is not a finite number")
    run = _as_run(run)
    ctx = MemberContext.from_run(run, device)  # refused when the INR changed since the SAEs were trained
    saes = current_saes(run, _saes_or_fail(run, layers, " for the requested layers" if layers else ""), ctx)
    feats = member_features(ctx.target, ctx.shape, ctx.record)  # once per run: the member's image, coordinates (+ MRI tissues)
    out = []
    for s in saes:
        model, _ = load_sae(s.path, ctx.device)
        stats, order = load_stats(s.path)
        codes = model.codes(ctx.acts[s.layer])
        ids = order[: min(top, s.n)]
        maps = atom_maps(codes, ids, ctx.shape)  # (m, H, W)
        ident = _file_identity(ctx, s)
        save_tensors({"atom": ids, "maps": maps.half(), "firing_rate": stats.firing_rate[ids], "mean_act": stats.mean_act[ids],
                      "mean_top": maps.mean(0).float()}, s.atoms, ident)
        atomic_write_json(s.semantics, semantics_for(feats, ids.tolist(), maps, {
            "condition": ctx.condition, "image": ctx.image, "layer": s.layer, "n": s.n, "k": s.k, "shape": list(ctx.shape)}))
        renders = None
        if scales and steer_top:
            renders = steer_renders(ctx, model, s.layer, ids[:steer_top].tolist(), scales, codes)
            save_tensors(renders, s.steer, ident)
        else:
            s.steer.unlink(missing_ok=True)
        out.append(AtomMaps(ctx.condition, s, ids, maps.cpu(), stats.firing_rate, stats.mean_act, renders))
    return out


# ------------------------------------------------------------------------------------------- ablations
@dataclass(frozen=True, eq=False)
class AtomAblations:
    """Single-atom ablations of one SAE: for each atom j, h' = h_ℓ − z_j d_j propagated to f'."""

    condition: str
    files: SaeFiles
    atoms: list[int]
    """The a ablated atom ids (top by mean magnitude)."""
    maps: Tensor
    """(a, H, W) atom maps z_j."""
    err_maps: Tensor
    """(a, H, W) |f' − f| on [0, 1], mean over channels."""
    psnr_drop: Tensor
    """(a,) PSNR(f, image) − PSNR(f', image) in dB."""
    locality: Tensor
    """(a,) Σ_{x ∈ R_j} ‖f' − f‖² / Σ_x ‖f' − f‖², R_j = {x : z_j(x) > τ}."""
    region_frac: Tensor
    """(a,) |R_j| / P."""
    psnr_after: Tensor
    """(a,) PSNR(f', image)."""
    rows: list[dict[str, Any]]
    """One ablations.jsonl row per atom (in atom order)."""


@dataclass(frozen=True, eq=False)
class Ablations:
    """What :func:`ablate_atoms` returns."""

    condition: str
    per_sae: list[AtomAblations]

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Every row, SAE by SAE (layer, n, k order), atom by atom."""
        return [r for a in self.per_sae for r in a.rows]


def ablate_atoms(run: str | Path | SaeRun, layers: Sequence[int] = (2,), top: int = 10, device: str | torch.device = "cpu") -> Ablations:
    """Remove each of the ``top`` atoms (by mean magnitude) of every saved SAE at ``layers`` (empty = every
    layer with an SAE), one at a time: h' = h_ℓ − z_j d_j, f' = rest of the member's network applied to h'
    (probes.atoms.ablate). Writes ablation.safetensors per SAE (atom (a,) int64, err_maps (a, H, W) float16,
    psnr_drop, locality, region_frac, psnr_after (a,) float32) and appends one row per atom to
    ablations.jsonl (key = hash(inr, image, layer, n, k, atom, inr_sha256, sae_sha256); a rerun recomputes but adds
    no duplicate; an SAE retrained since gets new rows). The files record the INR's and the SAE's digests; an INR
    changed since the SAEs were trained is refused (:meth:`MemberContext.from_run`, :func:`current_saes`)."""
    from ..store import acquire_run_lock, append_row, done_keys
    from .atoms import ablate, atom_maps, load_stats, save_tensors
    from .sae import load_sae

    if top < 1:
        raise ValueError("--top must be >= 1")
    run = _as_run(run)
    ctx = MemberContext.from_run(run, device)  # refused when the INR changed since the SAEs were trained
    saes = run.saes(layers)
    if not saes:
        where = (f" at layer(s) {', '.join(map(str, layers))}; use --all-layers or train them" if layers
                 else "; train them with `inrlens sae`")
        raise FileNotFoundError(f"{run.root}: no SAEs{where}")
    saes = current_saes(run, saes, ctx)
    cond = ctx.condition
    acquire_run_lock(run.root)  # writes into the run folder: one writer, as store.prepare_run (held until exit)
    done = done_keys(run.ablations)
    H, W = ctx.shape
    out = []
    for s in saes:
        model, _ = load_sae(s.path, ctx.device)
        _, order = load_stats(s.path)
        h = ctx.acts[s.layer]
        codes = model.codes(h)
        atoms = order[: min(top, s.n)].tolist()
        res = [ablate(ctx.stack, model, s.layer, ctx.member, h, codes, [j], ctx.target, ctx.f) for j in atoms]
        err = torch.stack([r.err_map.reshape(H, W) for r in res])
        vec = {a: torch.tensor([getattr(r, a) for r in res], dtype=torch.float32)
               for a in ("psnr_drop", "locality", "region_frac", "psnr_after")}
        ident = _file_identity(ctx, s)
        save_tensors({"atom": torch.tensor(atoms), "err_maps": err.half(), **vec}, s.ablation, ident)
        rows = []
        for j, r in zip(atoms, res):
            row = {"condition": cond, "layer": s.layer, "n": s.n, "k": s.k, "atom": j, "psnr_drop": r.psnr_drop, "psnr_after": r.psnr_after,
                   "locality": r.locality, "region_frac": r.region_frac, "image": ctx.image, "inr": ctx.record["inr"],
                   "figure": str(s.ablation_figure), "folder": str(s.path.relative_to(run.root)),
                   "inr_sha256": ident.get("inr_sha256"), "sae_sha256": ident.get("sae_sha256")}
            row["key"] = config_hash({k2: row[k2] for k2 in ("inr", "image", "layer", "n", "k", "atom", "inr_sha256", "sae_sha256")})
            if row["key"] not in done:
                append_row(run.ablations, row)
                done.add(row["key"])
            rows.append(row)
        out.append(AtomAblations(cond, s, atoms, atom_maps(codes, atoms, ctx.shape).cpu(), err.cpu(), vec["psnr_drop"], vec["locality"],
                                 vec["region_frac"], vec["psnr_after"], rows))
    return Ablations(cond, out)


__all__ = ["SaeRun", "SaeFiles", "MemberContext", "load_member", "member_names", "pick_member", "sweep_combos", "decompose",
           "current_saes", "sae_digest", "IDENTITY_FIELDS",
           "AtomMaps", "atom_maps_for", "AtomAblations", "Ablations", "ablate_atoms", "health_figure", "sae_stats_figure"]
