"""The layout of an SAE run folder (``inrlens sae --out``): every file name of the run lives in :class:`SaeRun`, and
in :class:`SaeFiles` for one SAE (``<run>/saes/L{ℓ}_n{n}_k{k}/``); the layout is documented in docs/run-folder.md.
Also here: which of a run's SAEs were trained on the INR as it is now (:func:`current_saes`, :func:`sae_digest`).

``SaeRun(path)`` only names paths; nothing is read or created until a method asks for it.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..identity import short
from ..store import CONTEXT_NAME, RESULTS_NAME
from .atoms import ABLATION_NAME, ATOMS_NAME, STATS_NAME
from .sae import SAE_CFG, SAE_WEIGHTS

if TYPE_CHECKING:
    from .member import MemberContext

ABLATIONS_NAME = "ablations.jsonl"
SAES_DIR = "saes"
FIGURES_DIR = "figures"
GALLERY_NAME = "gallery.png"
ABLATION_FIGURE = "ablation.png"
SWEEP_FIGURE = "sweep.png"
SAE_STATS_FIGURE = "sae_stats.png"
_SAE_FOLDER = re.compile(r"^L(\d+)_n(\d+)_k(\d+)$")


@dataclass(frozen=True)
class SaeFiles:
    """The files of one SAE of a run: ``<run>/saes/L{ℓ}_n{n}_k{k}/``."""

    path: Path
    layer: int
    n: int
    k: int

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def cfg(self) -> Path:
        """cfg.json: {"sae": SAEConfig, "d": width, "meta": {layer, member, image, inr, condition, shape, inr_sha256,
        image_digest}}."""
        return self.path / SAE_CFG

    @property
    def weights(self) -> Path:
        """sae.safetensors: W_enc (n, d), b_enc (n,), W_dec (n, d), b_dec (d,)."""
        return self.path / SAE_WEIGHTS

    @property
    def stats(self) -> Path:
        """stats.safetensors: firing_rate, mean_act, mean_active (n,) float32; order (n,) int64."""
        return self.path / STATS_NAME

    @property
    def atoms(self) -> Path:
        """atoms.safetensors (written by :func:`inrlens.probes.decompose.atom_maps_for`)."""
        return self.path / ATOMS_NAME

    @property
    def semantics(self) -> Path:
        """semantics.json: Pearson r of the top atoms' maps with image, coordinate (and MRI tissue) feature maps
        (written by :func:`inrlens.probes.decompose.atom_maps_for`;
        :func:`inrlens.probes.semantics.semantics_for`)."""
        from .semantics import SEMANTICS_NAME

        return self.path / SEMANTICS_NAME

    @property
    def steer(self) -> Path:
        """steer.safetensors: renders of the top atoms steered at α ∈ STEER_SCALES (written by
        :func:`inrlens.probes.decompose.atom_maps_for`; layout in :func:`inrlens.probes.steer.steer_renders`)."""
        from .steer import STEER_NAME

        return self.path / STEER_NAME

    @property
    def gallery(self) -> Path:
        return self.path / GALLERY_NAME

    @property
    def ablation(self) -> Path:
        """ablation.safetensors (written by :func:`inrlens.probes.decompose.ablate_atoms`)."""
        return self.path / ABLATION_NAME

    @property
    def ablation_figure(self) -> Path:
        return self.path / ABLATION_FIGURE

    @property
    def saved(self) -> bool:
        """True once the SAE's weights are on disk."""
        return self.weights.exists()


@dataclass(frozen=True)
class SaeRun:
    """An SAE run folder (``inrlens sae --out``): one INR member, its SAEs and everything derived from them.

    ``SaeRun(path)`` only names paths; nothing is read or created until a method asks for it.
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def context(self) -> Path:
        """context.json: how to rebuild the member (inr, images, member, image, data, condition, regime,
        backbone, shape [H, W]) and the identities it had (inr_sha256, image_digest)."""
        return self.root / CONTEXT_NAME

    @property
    def results(self) -> Path:
        """results.jsonl: one diagnostics row per SAE, key = hash(config, layer, n, k, INR digest, image digest)."""
        return self.root / RESULTS_NAME

    @property
    def ablations(self) -> Path:
        """ablations.jsonl: one row per ablated atom, key = hash(inr, image, layer, n, k, atom, INR and SAE digests)."""
        return self.root / ABLATIONS_NAME

    @property
    def saes_dir(self) -> Path:
        return self.root / SAES_DIR

    @property
    def figures(self) -> Path:
        """figures/: sweep.png (n × k heat maps); by default also health_L{ℓ}.png and sae_stats.png."""
        return self.root / FIGURES_DIR

    @property
    def sweep_figure(self) -> Path:
        return self.figures / SWEEP_FIGURE

    def sae(self, layer: int, n: int, k: int) -> SaeFiles:
        """The folder of the SAE on layer ``layer`` with n atoms and TopK k (it need not exist)."""
        return SaeFiles(self.saes_dir / f"L{int(layer)}_n{int(n)}_k{int(k)}", int(layer), int(n), int(k))

    def folders(self) -> list[SaeFiles]:
        """Every SAE folder present (saved or not), sorted by (layer, n, k)."""
        if not self.saes_dir.is_dir():
            return []
        out = []
        for d in self.saes_dir.iterdir():
            m = _SAE_FOLDER.match(d.name)
            if m and d.is_dir():
                out.append(SaeFiles(d, *(int(x) for x in m.groups())))
        return sorted(out, key=lambda s: (s.layer, s.n, s.k))

    def saes(self, layers: Sequence[int] = ()) -> list[SaeFiles]:
        """The saved SAEs (weights on disk), sorted by (layer, n, k); ``layers`` non-empty keeps only those."""
        return [s for s in self.folders() if s.saved and (not layers or s.layer in layers)]

    def read_context(self) -> dict[str, Any]:
        if not self.context.exists():
            raise FileNotFoundError(f"{self.root}: not an SAE run folder (no {CONTEXT_NAME}); create it with `inrlens sae`")
        return json.loads(self.context.read_text())

    def read_results(self, layers: Sequence[int] = ()) -> list[dict[str, Any]]:
        """results.jsonl rows ([] when absent) of the INR as it is now (stale rows of an INR retrained in place
        since are left out: :func:`inrlens.identity.row_is_current`); ``layers`` non-empty keeps only those layers."""
        from ..identity import read_current_rows

        rows = read_current_rows(self.results) if self.results.exists() else []
        return [r for r in rows if not layers or r["layer"] in layers]

    def read_ablations(self) -> list[dict[str, Any]]:
        """ablations.jsonl rows ([] when absent) of the INR and SAEs as they are now (stale rows left out)."""
        from ..identity import read_current_rows

        return read_current_rows(self.ablations) if self.ablations.exists() else []


def health_figure(figdir: str | Path, layer: int) -> Path:
    """Where the overlaid atom-health plot of layer ℓ goes in a figures folder."""
    return Path(figdir) / f"health_L{int(layer)}.png"


def sae_stats_figure(figdir: str | Path) -> Path:
    """Where the SAE-statistics-per-layer plot goes in a figures folder."""
    return Path(figdir) / SAE_STATS_FIGURE


def _as_run(run: str | Path | SaeRun) -> SaeRun:
    return run if isinstance(run, SaeRun) else SaeRun(run)


IDENTITY_FIELDS = ("inr_sha256", "image_digest")
"""Fields of context.json that name identities: in the rows' keys, not in the run's recorded config (so that run
folders written before they existed still resume)."""


def _inr_changed(run: SaeRun, rec: dict[str, Any], old: str, new: str, what: str = "these SAEs were") -> str:
    images = " ".join(str(i) for i in rec.get("images", [])) or "IMAGES"
    return (f"{run.root}: the INR changed since {what} trained (digest {short(old)} ≠ {short(new)}); rerun "
            f"`inrlens sae {rec.get('inr', 'INR')} {images} --out {run.root} --overwrite`")


def sae_digest(files: SaeFiles) -> str | None:
    """sha256 of an SAE's weights file (None when it is missing)."""
    from ..identity import file_sha256

    try:
        return file_sha256(files.weights)
    except OSError:
        return None


def current_saes(run: str | Path | SaeRun, saes: Sequence[SaeFiles], ctx: MemberContext, strict: bool = False) -> list[SaeFiles]:
    """The SAEs of ``saes`` trained on the INR as it is now (``ctx`` from :meth:`inrlens.probes.member.MemberContext.from_run`): an SAE
    whose cfg.json records another INR digest is stale. strict: any stale SAE is a one-line ValueError; else stale
    ones are left out with one warning, and a ValueError only when none is left. SAEs that record no digest
    (written before digests were recorded) are kept."""
    run = _as_run(run)
    now = ctx.record.get("inr_sha256")
    stale = []
    for s in saes:
        try:
            old = json.loads(s.cfg.read_text()).get("meta", {}).get("inr_sha256")
        except (OSError, ValueError, AttributeError):
            old = None
        if old and now and old != now:
            stale.append((s, old))
    if not stale:
        return list(saes)
    if strict or len(stale) == len(saes):
        raise ValueError(_inr_changed(run, ctx.record, stale[0][1], now, f"the SAE {stale[0][0].name} was"))
    warnings.warn(f"{run.root}: left out {len(stale)} SAE(s) trained on an earlier version of the INR "
                  f"({', '.join(s.name for s, _ in stale[:4])}{' …' if len(stale) > 4 else ''}); retrain them with `inrlens sae`",
                  stacklevel=3)
    gone = {s.path for s, _ in stale}
    return [s for s in saes if s.path not in gone]


__all__ = ["SaeRun", "SaeFiles", "current_saes", "sae_digest", "IDENTITY_FIELDS", "health_figure", "sae_stats_figure",
           "ABLATIONS_NAME", "SAES_DIR", "FIGURES_DIR", "GALLERY_NAME", "ABLATION_FIGURE", "SWEEP_FIGURE", "SAE_STATS_FIGURE"]
