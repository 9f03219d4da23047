"""The depth × width SAE study: how the SAE diagnostics of a single-signal INR change with its depth and width.

For every (backbone, depth L, width d) of a ``[depth_width]`` preset table (run by ``inrlens reproduce`` after
the ablations when the preset has the table; docs/protocol.md, "Depth × width"):

1. one single-signal INR fitted from random init to one image — the cohort image ``member`` of dataset
   ``source``, as the freeze sweep splits it (so by default the image the main study decomposes) — with the
   swept net of that backbone (its encoding and per-backbone settings) at width d and L hidden layers,
   ``single_steps`` Adam steps at the backbone's single-signal lr (:func:`inrlens.workflows.fit_images`);
2. one TopK SAE per hidden layer ℓ = 0..L−1 (:func:`inrlens.probes.decompose.decompose`) with the preset's
   [sae] settings except the dictionary size, which scales with the width: n = ``expansion`` × d (the
   demo's [sae] has n = 256 = 8 × its width 32, hence the default 8), so every layer gets the same
   overcompleteness;
3. per layer the four diagnostics — PSNR with ĥ substituted, R², alive %, dead % — and the coverage ρ, as the
   SAE rows record them (:func:`inrlens.probes.sae.diagnostics`).

Files (``RUN/depth_width/``; docs/run-folder.md)::

    <backbone>_L<L>_w<d>/inr/      the INR (run folder of fit_images, checkpoint at its root)
    <backbone>_L<L>_w<d>/sae/      its SAE run folder (context.json, results.jsonl, saes/L{ℓ}_n{n}_k{k}/)
    table.md                       one row per (backbone, L, d, ℓ): the diagnostics (same values as the SAE rows)
    depth_width.png                the figure (:func:`inrlens.report.sae_figures.depth_width`)

Resumable: an INR whose checkpoint and result row exist is not refitted, an SAE whose key is in its run's
results.jsonl is not retrained; the table and the figure are redrawn from the rows on disk every time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

DIR = "depth_width"
TABLE_NAME = "table.md"
FIGURE_NAME = "depth_width.png"


@dataclass(frozen=True)
class DepthWidthConfig:
    """The [depth_width] table of a preset: the grid of INR shapes whose SAEs are compared. Empty / unset fields
    follow the rest of the preset (checked against it by :func:`check` before any work)."""

    depths: tuple[int, ...] = (3, 5, 8)
    """Numbers of hidden layers L of the single-signal INRs [ours]."""
    widths: tuple[int, ...] = (32, 64)
    """Hidden widths d of the single-signal INRs [ours]."""
    backbones: tuple[str, ...] = ()
    """Backbones; empty = the sweep's backbones."""
    source: str = ""
    """Dataset of the image; '' = [study] source."""
    member: int | None = None
    """Which of the source's cohort images (0..n_cohort−1, as the sweep splits the dataset); unset = [study] member."""
    single_steps: int | None = None
    """Adam steps of each INR fit; unset = [study] single_steps."""
    expansion: int = 8
    """SAE dictionary size n = expansion × width (k, steps, batch, lr: the preset's [sae]) [ours]."""
    x: Literal["relative", "layer"] = "relative"
    """The figure's x axis: relative depth ℓ / (L − 1), or the layer index ℓ."""

    def __post_init__(self) -> None:
        for name in ("depths", "widths"):
            vals = getattr(self, name)
            if not vals:
                raise ValueError(f"{name}: give at least one value")
            if any(isinstance(v, bool) or v < 1 for v in vals) or len(set(vals)) != len(vals):
                raise ValueError(f"{name}: expected distinct integers >= 1, got {list(vals)}")
        if len(set(self.backbones)) != len(self.backbones):
            raise ValueError(f"backbones: give each once, got {list(self.backbones)}")
        if self.member is not None and self.member < 0:
            raise ValueError(f"member must be >= 0, got {self.member}")
        if self.single_steps is not None and self.single_steps < 1:
            raise ValueError(f"single_steps must be >= 1, got {self.single_steps}")
        if self.expansion < 1:
            raise ValueError(f"expansion must be >= 1, got {self.expansion}")


def check(cfg: DepthWidthConfig, spec: Any, study: Any, datasets: dict[str, str], sae: Any) -> DepthWidthConfig:
    """The table against the rest of the preset (the sweep ``spec``, the resolved [study], the datasets, [sae]),
    before any work: known backbones, a defined source, a cohort member, k ≤ n = expansion × width at every
    width. Returns it with every unset field filled in (the values the study runs with)."""
    from .backbones import get_backbone

    backbones = tuple(cfg.backbones) or tuple(spec.backbones)
    for b in backbones:
        get_backbone(b)
    source = cfg.source or study.source
    if source not in datasets:
        raise ValueError(f"source {source!r} is not a dataset ({', '.join(datasets)})")
    member = study.member if cfg.member is None else cfg.member
    if member >= spec.n_cohort:
        raise ValueError(f"member {member} is outside 0..{spec.n_cohort - 1} (the cohort images of a source: [sweep] n_cohort = "
                         f"{spec.n_cohort})")
    for w in cfg.widths:
        try:
            replace(sae, n=cfg.expansion * w).validate()
        except ValueError as e:
            raise ValueError(f"width {w}: SAE with n = expansion × width = {cfg.expansion * w}: {e}") from None
    steps = study.single_steps if cfg.single_steps is None else cfg.single_steps
    return replace(cfg, backbones=backbones, source=source, member=int(member), single_steps=int(steps))


@dataclass(frozen=True)
class Cell:
    """One (backbone, depth, width) of the study and its folders."""

    root: Path
    backbone: str
    depth: int
    width: int

    @property
    def name(self) -> str:
        return f"{self.backbone}_L{self.depth}_w{self.width}"

    @property
    def condition(self) -> str:
        """The label of its SAE rows."""
        return f"{self.backbone} L={self.depth} width {self.width}"

    @property
    def inr(self) -> Path:
        return self.root / self.name / "inr"

    @property
    def sae(self) -> Path:
        return self.root / self.name / "sae"


def cells(cfg: DepthWidthConfig, root: str | Path) -> list[Cell]:
    """Every (backbone, depth, width) in run order (backbone, then depth, then width)."""
    return [Cell(Path(root), b, int(d), int(w)) for b in cfg.backbones for d in cfg.depths for w in cfg.widths]


def study_image(cfg: DepthWidthConfig, spec: Any, datasets: dict[str, str]) -> Any:
    """The image of the study: cohort image ``member`` of ``source`` as the sweep splits it (same DataConfig)."""
    from .sweep.plan import load_dataset, split_dataset

    name = split_dataset(cfg.source, datasets[cfg.source], spec).cohort[int(cfg.member)]
    return {s.name: s for s in load_dataset(datasets[cfg.source], spec.images)}[name]


def run_study(cfg: DepthWidthConfig, spec: Any, sae: Any, datasets: dict[str, str], root: str | Path, device: str = "cpu",
              step: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Fit the INRs and train the SAEs of every cell that is not done yet (``cfg`` as :func:`check` returns it),
    then write table.md and the figure in ``root``. ``step(what)`` is called after each INR and each SAE run
    (progress). Returns the rows (:func:`collect_rows`)."""
    from .config import TrainConfig
    from .fit import resolve_device
    from .probes.decompose import decompose, load_member
    from .sweep.plan import net_for
    from .workflows import fit_images

    root = Path(root)
    sig = study_image(cfg, spec, datasets)
    dev = resolve_device(device)
    res = spec.images.size or max(sig.shape)
    for c in cells(cfg, root):
        net = replace(net_for(spec, c.backbone, res), width=c.width, depth=c.depth)
        train = TrainConfig(steps=int(cfg.single_steps), device=device)
        # resume: a finished fit is kept; overwrite: the reproduce run's own config already guards these folders
        fit_images([sig], c.inr, net, train, (0,), data=spec.images, lpips=False, resume=True, overwrite=True,
                   checkpoint="root", progress=False)
        if step:
            step(f"{c.name} INR")
        ctx = load_member(c.inr, (datasets[cfg.source],), 0, spec.images, dev, c.condition)
        decompose(ctx, (), replace(sae, n=cfg.expansion * c.width), (), c.sae, resume=True, progress=False)
        if step:
            step(f"{c.name} SAEs")
    rows = collect_rows(cfg, root)
    write_outputs(rows, root, cfg.x)
    return rows


def collect_rows(cfg: DepthWidthConfig, root: str | Path) -> list[dict[str, Any]]:
    """The SAE rows of every cell (its results.jsonl), with the cell's backbone, depth, width and the relative
    depth ℓ / (L − 1) (0 when L = 1) added; cells without results are left out; the last row of a (layer, n, k)
    wins. Order: cell, then layer."""
    from .probes.decompose import SaeRun

    out = []
    for c in cells(cfg, root):
        last = {(int(r["layer"]), int(r["n"]), int(r["k"])): r for r in SaeRun(c.sae).read_results()}
        for _, r in sorted(last.items()):
            out.append({**r, "backbone": c.backbone, "depth": c.depth, "width": c.width, "cell": c.name,
                        "rel_depth": int(r["layer"]) / (c.depth - 1) if c.depth > 1 else 0.0})
    return out


def _f(x: Any, d: int) -> str:
    import math

    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{float(x):.{d}f}"


def table_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """One line per (backbone, L, width, layer): n, k, ℓ/(L−1), INR PSNR, PSNR with ĥ, R², alive %, dead %, ρ."""
    out = ["| backbone | L | width | layer ℓ | ℓ/(L−1) | n | k | INR PSNR (dB) | PSNR with ĥ (dB) | R² | alive % | dead % | ρ |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['backbone']} | {r['depth']} | {r['width']} | {r['layer']} | {_f(r['rel_depth'], 2)} | {r['n']} | {r['k']} | "
                   f"{_f(r.get('psnr_inr'), 2)} | {_f(r.get('psnr_sub'), 2)} | {_f(r.get('r2'), 3)} | {_f(r.get('alive_pct'), 1)} | "
                   f"{_f(r.get('dead_pct'), 1)} | {_f(r.get('rho'), 3)} |")
    return "\n".join(out) + "\n"


def write_outputs(rows: Sequence[dict[str, Any]], root: str | Path, x: str = "relative") -> tuple[Path, Path | None]:
    """table.md and (when there are rows) depth_width.png in ``root``."""
    from .report.sae_figures import depth_width
    from .store import atomic_write_text

    root = Path(root)
    table = atomic_write_text(root / TABLE_NAME, table_markdown(rows))
    fig = depth_width(rows, root / FIGURE_NAME, x) if rows else None
    return table, fig


def describe(cfg: DepthWidthConfig, sae: Any) -> str:
    """One paragraph for the report: what was fitted and how the SAEs were sized."""
    return (f"Single-signal INRs of cohort image {cfg.member} of `{cfg.source}` ({int(cfg.single_steps)} steps each) for every "
            f"backbone ({', '.join(cfg.backbones)}) × depth L ∈ {{{', '.join(map(str, cfg.depths))}}} × width ∈ "
            f"{{{', '.join(map(str, cfg.widths))}}}; one TopK SAE per hidden layer with n = {cfg.expansion} × width atoms, "
            f"k = {sae.k}, {sae.steps} steps. Each row below is one SAE's diagnostics (docs/protocol.md, \"Depth × width\").")


__all__ = ["DepthWidthConfig", "Cell", "check", "cells", "study_image", "run_study", "collect_rows", "table_markdown", "write_outputs",
           "describe", "DIR", "TABLE_NAME", "FIGURE_NAME"]
