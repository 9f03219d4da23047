"""``inrlens sae | atoms | ablate``: TopK SAEs on a saved INR, atom maps and galleries, single-atom ablations.

Thin commands over :mod:`inrlens.probes.decompose` (the computations and the run folder's files) and
:mod:`inrlens.report.sae_figures` (the figures). A run folder (``--out`` of ``inrlens sae``) holds one INR
member (= one condition) and its SAEs; its layout is in docs/run-folder.md. ``context.json`` records how to
rebuild the INR's grid and target, so ``atoms`` and ``ablate`` need only the run folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import tyro

from ..config import DataConfig
from ..probes.sae import SAEConfig
from .core import print_table

Positional = tyro.conf.Positional


@dataclass(frozen=True)
class Sae:
    """Train TopK SAEs on the hidden layers of one member of a saved INR; diagnostics → results.jsonl."""

    inr: Positional[Path]
    """Saved INR folder: a cohort (`inrlens cohort --out`) or a single-fit stack (`inrlens fit --out`/models/HxW)."""
    images: Positional[tuple[str, ...]]
    """The image(s) the INR was fitted to (files, folders or sample:NAME); the member's image gives grid and target."""
    member: str = "0"
    """Which member: index or image name. Cohort: which head produces the output (the encoder is shared)."""
    layers: tuple[int, ...] = ()
    """Hidden layers to train SAEs on; empty = every layer 0..L−1."""
    sae: SAEConfig = SAEConfig()
    sweep_n: tuple[int, ...] = ()
    """n × k sweep (Appendix A.1): dictionary sizes; empty = just sae.n."""
    sweep_k: tuple[int, ...] = ()
    """n × k sweep: TopK values; empty = just sae.k."""
    condition: str = ""
    """Label of this INR in tables and overlaid plots; empty = '<regime>-<backbone>'."""
    data: DataConfig = DataConfig()
    """How to load the images; ignored for a cohort that recorded its own data settings."""
    out: Path = Path("runs/sae")
    """Run folder (layout in docs/run-folder.md)."""
    device: str = "auto"
    """'auto', 'cpu', 'cuda', 'cuda:N'."""
    resume: bool = False
    """Continue a run in an existing folder (skips finished (layer, n, k))."""
    overwrite: bool = False
    """Replace the config recorded in an existing folder (results already there are kept)."""

    def run(self) -> None:
        from ..probes.decompose import SaeRun, decompose, load_member, sweep_combos
        from ..report.sae_figures import render_sweep

        combos, skipped = sweep_combos(self.sae, self.sweep_n, self.sweep_k)
        ctx = load_member(self.inr, self.images, self.member, self.data, self.device, self.condition)  # checks images before writing
        if skipped:
            print(f"note: skipping {skipped} (n, k) pair(s) with k > n")
        rows = decompose(ctx, self.layers, self.sae, combos, self.out, resume=self.resume, overwrite=self.overwrite)
        p = render_sweep(SaeRun(self.out), f"{ctx.condition}: n × k sweep")
        if p is not None:
            print(f"heat maps → {p}")
        print_table(rows, ["layer", "n", "k", "psnr_inr", "psnr_sub", "r2", "alive_pct", "dead_pct", "rho", "seconds"],
                    f"SAEs on {ctx.condition} member {ctx.member} ({ctx.image}) → {self.out}")


@dataclass(frozen=True)
class Atoms:
    """Atom maps of every SAE in one or more runs: top atoms by mean magnitude, galleries, health plots."""

    runs: Positional[tuple[Path, ...]]
    """SAE run folders (from `inrlens sae`), e.g. the four conditions."""
    top: int = 16
    """Atoms per gallery (by mean magnitude) and maps stored for the atlas."""
    layers: tuple[int, ...] = ()
    """Layers to process; empty = all that have SAEs."""
    figures: Path | None = None
    """Folder of the overlaid health and SAE-statistics plots; None = <first run>/figures."""
    device: str = "auto"
    """'auto', 'cpu', 'cuda', 'cuda:N'."""

    def run(self) -> None:
        from ..probes.decompose import SaeRun, atom_maps_for
        from ..report.sae_figures import render_atoms

        if self.top < 1:
            raise ValueError("--top must be >= 1")
        maps, stat_rows = [], []
        for run in map(SaeRun, self.runs):
            maps += atom_maps_for(run, self.top, self.layers, self.device)
            stat_rows += run.read_results(self.layers)
        galleries, plots, stats = render_atoms(maps, stat_rows, self.figures or SaeRun(self.runs[0]).figures)
        for p in plots:
            print(f"health plot → {p}")
        print(f"SAE statistics → {stats}")
        table = [{"condition": m.condition, "layer": m.layer, "n": m.files.n, "k": m.files.k, "gallery": str(g)}
                 for m, g in zip(maps, galleries)]
        print_table(table, ["condition", "layer", "n", "k", "gallery"], "atom galleries")
        stat_rows.sort(key=lambda r: (r["layer"], r["condition"], r["n"], r["k"]))
        print_table(stat_rows, ["layer", "condition", "n", "k", "psnr_inr", "psnr_sub", "r2", "alive_pct", "dead_pct", "rho"],
                    "SAE diagnostics per layer and condition")


@dataclass(frozen=True)
class Ablate:
    """Remove single atoms (h − z_j·d_j) at a layer, propagate, and measure the PSNR drop and its locality."""

    run_dir: Positional[Path]
    """SAE run folder (from `inrlens sae`)."""
    layers: tuple[int, ...] = (2,)
    """Layers to ablate at [guess: 2]; see --all-layers."""
    all_layers: bool = False
    """Ablate at every layer that has an SAE."""
    top: int = 10
    """Atoms per SAE, by mean magnitude [guess: 10]."""
    device: str = "auto"
    """'auto', 'cpu', 'cuda', 'cuda:N'."""

    def run(self) -> None:
        from ..probes.decompose import ablate_atoms
        from ..report.sae_figures import render_ablations

        if self.top < 1:
            raise ValueError("--top must be >= 1")
        res = ablate_atoms(self.run_dir, () if self.all_layers else self.layers, self.top, self.device)
        render_ablations(res)
        rows = sorted(res.rows, key=lambda r: -(r["psnr_drop"] if r["psnr_drop"] == r["psnr_drop"] else -math.inf))
        print_table(rows, ["layer", "n", "k", "atom", "psnr_drop", "locality", "region_frac"],
                    f"single-atom ablations on {res.condition} (largest drop first)")
