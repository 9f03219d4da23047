"""inrlens: which layers of cohort-trained implicit neural representations transfer, and what they encode.

The Python API (docs/api.md walks through it; examples/quickstart.py runs it top to bottom). Every name below is
imported on first use, so ``import inrlens`` stays fast (no torch until you need it).

Data
    :func:`resolve` (paths, folders or ``sample:photos | sample:faces | sample:mri`` → signals),
    :func:`load_images`, :func:`grid` (the coordinate grid of an H×W image), :func:`split` (seeded cohort/test
    split), :class:`Signal`.
Configs
    :class:`NetConfig` (architecture), :class:`TrainConfig` (one Adam loop), :class:`DataConfig` (how images
    are loaded), :class:`SAEConfig` (one TopK SAE).
Fits, in memory (each returns ``(stack, fit_result, member_results)``)
    :func:`fit_single` (one INR per image × seed from random init), :func:`fit_cohort` (STRAINER: shared
    encoder + one head per image), :func:`fit_transfer` (freeze layers 0..k of a cohort encoder, fit the rest).
    Stack builders: :func:`cohort_stack`, :func:`transfer_stack`; :class:`Stack` is the network itself.
    On CPU, call :func:`keep_freed_memory` once first (the command line does): large tensors stop being
    returned to the OS and faulted in again every step, which roughly halves a fit's CPU time on glibc.
Fits, into a run folder (resumable; each returns its result rows)
    :func:`fit_images`, :func:`train_cohort`, :func:`transfer_images` — what ``inrlens fit | cohort |
    transfer`` run; :func:`results` reads any run folder's rows into a pandas DataFrame.
Probes
    :func:`rank_profile` (weight and activation stable ranks per layer and the freeze depths they predict),
    :func:`layer_acts` (hidden activations of one member on a grid), :func:`train_sae` → :class:`TopKSAE`
    (``.encode(h)`` dense codes, ``.codes(h)`` sparse top-k codes), :func:`atom_maps` (z_j(x) of chosen atoms
    as H×W maps).
Decomposition runs (what ``inrlens sae | atoms | ablate | steer`` run)
    :func:`load_member` → :class:`MemberContext` (an INR member, its grid, target and activations),
    :func:`decompose` (SAEs on every layer), :func:`atom_maps_for`, :func:`ablate_atoms`, :func:`steer`
    (h' = h + Σ (α_j − 1) z_j d_j), :func:`correlate` / :func:`feature_maps` (atom semantics).
Studies
    :class:`SweepSpec`, :class:`ExecSpec`, :func:`make_plan`, :func:`run_sweep` (the freeze sweep),
    :class:`LadderSpec`, :func:`run_ladder`, :func:`ladder_summary` (the scale ladder), :func:`load_model` +
    :func:`advise_model` (where to freeze any trained coordinate MLP), :func:`mean_ci` / :func:`verdict` (the
    interval rule every verdict uses).
Backbones
    :func:`register_backbone`, :func:`get_backbone`, :func:`backbone_names` (docs/extending.md).
Saving and loading
    :func:`save_stack` / :func:`load_stack` (``cfg.json`` + ``model.safetensors``), :func:`save_sae` /
    :func:`load_sae`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API: dict[str, str] = {
    # data
    "resolve": "inrlens.data:resolve",
    "load_images": "inrlens.data:load_images",
    "grid": "inrlens.data:grid",
    "split": "inrlens.data:split",
    "Signal": "inrlens.data:Signal",
    # configs
    "NetConfig": "inrlens.config:NetConfig",
    "TrainConfig": "inrlens.config:TrainConfig",
    "DataConfig": "inrlens.config:DataConfig",
    "SAEConfig": "inrlens.probes.sae:SAEConfig",
    # fits in memory
    "fit_single": "inrlens.fit:fit_single",
    "fit_cohort": "inrlens.fit:fit_cohort",
    "fit_transfer": "inrlens.fit:fit_transfer",
    "cohort_stack": "inrlens.nets:cohort_stack",
    "transfer_stack": "inrlens.nets:transfer_stack",
    "Stack": "inrlens.nets:Stack",
    "keep_freed_memory": "inrlens.allocator:keep_freed_memory",
    # fits into run folders
    "fit_images": "inrlens.workflows:fit_images",
    "train_cohort": "inrlens.workflows:train_cohort",
    "transfer_images": "inrlens.workflows:transfer_images",
    "results": "inrlens.workflows:results",
    # probes
    "rank_profile": "inrlens.probes.rank:profile",
    "RankProfile": "inrlens.probes.rank:RankProfile",
    "layer_acts": "inrlens.probes.sae:layer_acts",
    "train_sae": "inrlens.probes.sae:train_sae",
    "TopKSAE": "inrlens.probes.sae:TopKSAE",
    "atom_maps": "inrlens.probes.atoms:atom_maps",
    # decomposition runs
    "load_member": "inrlens.probes.decompose:load_member",
    "MemberContext": "inrlens.probes.decompose:MemberContext",
    "decompose": "inrlens.probes.decompose:decompose",
    "atom_maps_for": "inrlens.probes.decompose:atom_maps_for",
    "ablate_atoms": "inrlens.probes.decompose:ablate_atoms",
    "steer": "inrlens.probes.steer:steer",
    "correlate": "inrlens.probes.semantics:correlate",
    "feature_maps": "inrlens.probes.semantics:feature_maps",
    # studies
    "SweepSpec": "inrlens.sweep:SweepSpec",
    "ExecSpec": "inrlens.sweep:ExecSpec",
    "make_plan": "inrlens.sweep:make_plan",
    "run_sweep": "inrlens.sweep:run_sweep",
    "LadderSpec": "inrlens.ladder:LadderSpec",
    "run_ladder": "inrlens.ladder:run_ladder",
    "ladder_summary": "inrlens.ladder:ladder_summary",
    "load_model": "inrlens.advise:load_model",
    "advise_model": "inrlens.advise:advise",
    "mean_ci": "inrlens.stats:mean_ci",
    "verdict": "inrlens.stats:verdict",
    # backbones
    "register_backbone": "inrlens.backbones:register_backbone",
    "get_backbone": "inrlens.backbones:get_backbone",
    "backbone_names": "inrlens.backbones:backbone_names",
    # saving and loading
    "save_stack": "inrlens.store:save_stack",
    "load_stack": "inrlens.store:load_stack",
    "save_sae": "inrlens.probes.sae:save_sae",
    "load_sae": "inrlens.probes.sae:load_sae",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    spec = _API.get(name)
    if spec is None:
        raise AttributeError(f"module 'inrlens' has no attribute {name!r}")
    module, attr = spec.split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names above are imported lazily
    from .advise import advise as advise_model  # noqa: F401
    from .advise import load_model  # noqa: F401
    from .allocator import keep_freed_memory  # noqa: F401
    from .backbones import backbone_names, get_backbone, register_backbone  # noqa: F401
    from .config import DataConfig, NetConfig, TrainConfig  # noqa: F401
    from .data import Signal, grid, load_images, resolve, split  # noqa: F401
    from .fit import fit_cohort, fit_single, fit_transfer  # noqa: F401
    from .ladder import LadderSpec, ladder_summary, run_ladder  # noqa: F401
    from .nets import Stack, cohort_stack, transfer_stack  # noqa: F401
    from .probes.atoms import atom_maps  # noqa: F401
    from .probes.decompose import MemberContext, ablate_atoms, atom_maps_for, decompose, load_member  # noqa: F401
    from .probes.rank import RankProfile  # noqa: F401
    from .probes.rank import profile as rank_profile  # noqa: F401
    from .probes.sae import SAEConfig, TopKSAE, layer_acts, load_sae, save_sae, train_sae  # noqa: F401
    from .probes.semantics import correlate, feature_maps  # noqa: F401
    from .probes.steer import steer  # noqa: F401
    from .stats import mean_ci, verdict  # noqa: F401
    from .store import load_stack, save_stack  # noqa: F401
    from .sweep import ExecSpec, SweepSpec, make_plan, run_sweep  # noqa: F401
    from .workflows import fit_images, results, train_cohort, transfer_images  # noqa: F401
