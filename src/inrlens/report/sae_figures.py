"""Figures of the SAE study (docs/protocol.md): n × k heat maps, atom galleries, health plots, SAE statistics per
layer and condition, ablation maps. Every function reads arrays or result rows and writes one PNG."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DIAGNOSTICS = (("psnr_sub", "reconstruction PSNR (dB)"), ("r2", "R²"), ("alive_pct", "alive %"), ("rho", "coverage ρ"))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    """Write the figure to path atomically (format from path's suffix), then close it."""
    from ..store import atomic_write

    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"))
    _plt().close(fig)
    return path


def sweep_heatmaps(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """One row of panels per layer, one column per diagnostic; each panel an n (rows) × k (columns) heat map."""
    plt = _plt()
    layers = sorted({int(r["layer"]) for r in rows})
    ns = sorted({int(r["n"]) for r in rows})
    ks = sorted({int(r["k"]) for r in rows})
    fig, axes = plt.subplots(len(layers), len(DIAGNOSTICS), figsize=(3.6 * len(DIAGNOSTICS), 2.8 * len(layers)), squeeze=False,
                             layout="constrained")
    for i, ell in enumerate(layers):
        for j, (key, label) in enumerate(DIAGNOSTICS):
            m = np.full((len(ns), len(ks)), np.nan)
            for r in rows:
                if int(r["layer"]) == ell and r.get(key) is not None:
                    m[ns.index(int(r["n"])), ks.index(int(r["k"]))] = float(r[key])
            ax = axes[i, j]
            im = ax.imshow(m, cmap="viridis", aspect="auto")
            for a in range(len(ns)):
                for b in range(len(ks)):
                    if np.isfinite(m[a, b]):
                        ax.text(b, a, f"{m[a, b]:.3g}", ha="center", va="center", fontsize=7, color="w")
            ax.set_xticks(range(len(ks)), [str(k) for k in ks])
            ax.set_yticks(range(len(ns)), [str(n) for n in ns])
            ax.set_xlabel("k")
            ax.set_ylabel(f"layer {ell}: n")
            ax.set_title(label, fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def gallery(maps: np.ndarray, atoms: Sequence[int], path: str | Path, title: str = "", cols: int = 8,
            rates: Sequence[float] | None = None) -> Path:
    """Atom maps (m, H, W) in rank order plus their mean as the last panel; 'fr' = the atom's firing rate."""
    plt = _plt()
    m = maps.shape[0]
    panels = m + 1
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.75 * rows), squeeze=False, layout="constrained")
    for a in axes.flat:
        a.axis("off")
    for i in range(m):
        ax = axes.flat[i]
        ax.imshow(maps[i], cmap="magma")
        ax.set_title(f"#{atoms[i]}" + (f" fr={rates[i]:.2f}" if rates is not None else ""), fontsize=7)
    ax = axes.flat[m]
    ax.imshow(maps.mean(0), cmap="magma")
    ax.set_title(f"mean of top {m}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def health(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str = "") -> Path:
    """Firing rate and mean magnitude vs atom rank (atoms sorted by each quantity), one line per condition."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
    for label, (rate, mag) in curves.items():
        r = np.sort(np.asarray(rate))[::-1]
        g = np.sort(np.asarray(mag))[::-1]
        axes[0].plot(np.arange(1, r.size + 1), np.maximum(r, 1e-6), label=label)
        axes[1].plot(np.arange(1, g.size + 1), np.maximum(g, 1e-9), label=label)
    for ax, name in zip(axes, ("firing rate", "mean magnitude")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("atom rank")
        ax.set_ylabel(name)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


REGIME_STYLES = {"single": "-", "cohort": "--"}
"""Line style of an SAE condition's regime in :func:`sae_stats` (others dotted)."""


def condition_backbone(rows: Sequence[dict[str, Any]], condition: str) -> str | None:
    """The backbone of a condition: its rows' ``backbone`` field, else the backbone its name names."""
    from .tables import backbone_in

    b = next((r.get("backbone") for r in rows if r.get("backbone")), None)
    return str(b) if b else backbone_in(condition)


def sae_stats(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Alive %, ρ and reconstruction PSNR per layer, one line per condition: colour = backbone (the same colour
    as in every figure, :func:`inrlens.report.figures.backbone_colour`), line style = regime (single solid, cohort
    dashed); conditions in backbone registry order."""
    from ..backbones import backbone_order
    from .figures import backbone_colour

    plt = _plt()
    conds: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        conds.setdefault(str(r.get("condition", "?")), []).append(r)
    bb = {c: condition_backbone(rs, c) for c, rs in conds.items()}
    order = sorted(conds, key=lambda c: (backbone_order(bb[c]) if bb[c] else 1 << 30, c))
    keys = (("alive_pct", "alive %"), ("rho", "coverage ρ"), ("psnr_sub", "recon. PSNR (dB)"), ("r2", "R²"))
    fig, axes = plt.subplots(1, len(keys), figsize=(3.3 * len(keys), 3), layout="constrained")
    markers, seen = ["o", "s", "^", "D", "v"], {}
    for label in order:
        rs = sorted(conds[label], key=lambda r: int(r["layer"]))
        regime = next((str(r["regime"]) for r in rs if r.get("regime")), label.split("-")[0])
        group = (bb[label], regime)
        seen[group] = seen.get(group, -1) + 1  # several conditions of one backbone and regime: other markers
        style = {"color": backbone_colour(bb[label])} if bb[label] else {}
        x = [int(r["layer"]) for r in rs]
        for ax, (key, name) in zip(axes, keys):
            ax.plot(x, [np.nan if r.get(key) is None else float(r[key]) for r in rs], REGIME_STYLES.get(regime, ":"),
                    marker=markers[seen[group] % len(markers)], label=label, **style)
            ax.set_xlabel("layer")
            ax.set_title(name, fontsize=9)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def ablation_maps(atom_maps: np.ndarray, err_maps: np.ndarray, atoms: Sequence[int], drops: Sequence[float],
                  locs: Sequence[float], path: str | Path, title: str = "") -> Path:
    """For each ablated atom: its map beside the error map |f' − f|."""
    plt = _plt()
    a = len(atoms)
    fig, axes = plt.subplots(a, 2, figsize=(4, 2 * a), squeeze=False, layout="constrained")
    for i in range(a):
        axes[i, 0].imshow(atom_maps[i], cmap="magma")
        axes[i, 0].set_title(f"atom #{atoms[i]}", fontsize=7)
        axes[i, 1].imshow(err_maps[i], cmap="inferno")
        axes[i, 1].set_title(f"|f'−f|: −{drops[i]:.2f} dB, loc {locs[i]:.2f}", fontsize=7)
        axes[i, 0].axis("off")
        axes[i, 1].axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


# ------------------------------------------------------------------------------------ from the decomposition library
def render_sweep(run: Any, title: str = "") -> Path | None:
    """n × k heat maps of an SAE run (inrlens.probes.decompose.SaeRun) when its results hold more than one
    (n, k); None otherwise."""
    rows = run.read_results()
    if len({(r["n"], r["k"]) for r in rows}) <= 1:
        return None
    return sweep_heatmaps(rows, run.sweep_figure, title)


def render_atoms(maps: Sequence[Any], stat_rows: Sequence[dict[str, Any]], figdir: str | Path) -> tuple[list[Path], list[Path], Path]:
    """Figures of inrlens.probes.decompose.atom_maps_for results (of one or more runs): one gallery per SAE
    (in its folder), one overlaid health plot per layer and the SAE statistics per layer (in ``figdir``), from
    the diagnostics rows ``stat_rows``. Returns (galleries, health plots, statistics plot)."""
    from ..probes.decompose import health_figure, sae_stats_figure

    galleries = []
    curves: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for m in maps:
        f = m.files
        galleries.append(gallery(m.maps.numpy(), m.atoms.tolist(), f.gallery, f"{m.condition} layer {f.layer} (n={f.n}, k={f.k})",
                                 rates=m.firing_rate[m.atoms].tolist()))
        curves.setdefault(f.layer, {}).setdefault(f"{m.condition} n={f.n} k={f.k}", (m.firing_rate.numpy(), m.mean_act.numpy()))
    plots = [health(c, health_figure(figdir, ell), f"layer {ell}: atom health") for ell, c in curves.items()]
    return galleries, plots, sae_stats(stat_rows, sae_stats_figure(figdir), "SAE statistics per layer")


def render_ablations(ablations: Any) -> list[Path]:
    """One ablation figure per SAE of an inrlens.probes.decompose.ablate_atoms result (in the SAE's folder)."""
    return [ablation_maps(a.maps.numpy(), a.err_maps.numpy(), a.atoms, a.psnr_drop.tolist(), a.locality.tolist(),
                          a.files.ablation_figure, f"{a.condition} layer {a.files.layer}") for a in ablations.per_sae]


# ------------------------------------------------------------------------------------ atom semantics
def semantics_layers(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "atom semantics: mean |r| per layer") -> Path:
    """Mean |r| vs layer, one line per feature, one panel per condition, from
    :func:`inrlens.probes.semantics.read_semantics` rows; records inside the brain mask (MRI) as dashed lines of
    the same colour. Several (n, k) on one layer: their mean."""
    from ..probes.semantics import feature_order

    plt = _plt()
    conds = sorted({str(r["condition"]) for r in rows})
    feats = feature_order([f for r in rows for f in r.get("features", [])])
    colours = {f: plt.get_cmap("tab20")(i % 20) for i, f in enumerate(feats)}
    fig, axes = plt.subplots(1, max(1, len(conds)), figsize=(3.6 * max(1, len(conds)), 3.2), squeeze=False, sharey=True,
                             layout="constrained")
    brain = False
    for ax, c in zip(axes[0], conds):
        for where, style in (("all", "-"), ("brain", "--")):
            rs = [r for r in rows if str(r["condition"]) == c and r.get("where", "all") == where]
            brain |= where == "brain" and bool(rs)
            for f in feats:
                per: dict[int, list[float]] = {}
                for r in rs:
                    v = (r.get("summary", {}).get(f) or {}).get("mean_abs_r")
                    if v is not None and math.isfinite(float(v)):
                        per.setdefault(int(r["layer"]), []).append(float(v))
                if per:
                    xs = sorted(per)
                    ax.plot(xs, [float(np.mean(per[x])) for x in xs], style, marker="o", ms=3, color=colours[f],
                            label=f if where == "all" else None)
        ax.set_title(c, fontsize=9)
        ax.set_xlabel("layer")
        ax.set_ylim(0, 1)
    axes[0, 0].set_ylabel("mean |r| over atoms")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for ax in axes[0, 1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=7,
                   title="dashed: inside the brain" if brain else None, title_fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


# ------------------------------------------------------------------------------------ depth × width
DEPTH_WIDTH_ROWS = (("psnr_sub", "PSNR with ĥ (dB)"), ("r2", "R²"), ("alive_pct", "alive %"), ("dead_pct", "dead %"),
                    ("rho", "coverage ρ"))
"""Rows of the depth × width figure: the four SAE diagnostics and ρ."""


def depth_width(rows: Sequence[dict[str, Any]], path: str | Path, x: str = "relative",
                title: str = "SAE diagnostics across INR depth × width") -> Path:
    """The depth × width study in one figure: one row per diagnostic (:data:`DEPTH_WIDTH_ROWS`), one column per
    backbone (registry order); x = relative depth ℓ / (L − 1) (``x='relative'``; 0 when L = 1) or the layer index ℓ
    (``x='layer'``); one line per (depth L, width): colour = width, line style = depth. ``rows``: SAE
    diagnostics rows with backbone, depth, width, layer (:func:`inrlens.depth_width.collect_rows`)."""
    if x not in ("relative", "layer"):
        raise ValueError(f"x must be 'relative' or 'layer', got {x!r}")
    from ..backbones import backbone_order

    plt = _plt()
    bbs = sorted(dict.fromkeys(str(r["backbone"]) for r in rows), key=lambda b: (backbone_order(b), b))  # registry order
    widths = sorted({int(r["width"]) for r in rows})
    depths = sorted({int(r["depth"]) for r in rows})
    cmap = plt.get_cmap("viridis")
    colour = {w: cmap(0.85 * i / max(1, len(widths) - 1)) for i, w in enumerate(widths)}
    styles = ["-", "--", ":", "-."]
    style = {d: styles[i % len(styles)] for i, d in enumerate(depths)}
    markers = ["o", "s", "^", "D", "v"]
    marker = {d: markers[i % len(markers)] for i, d in enumerate(depths)}
    fig, axes = plt.subplots(len(DEPTH_WIDTH_ROWS), max(1, len(bbs)), figsize=(3.8 * max(1, len(bbs)), 2.2 * len(DEPTH_WIDTH_ROWS)),
                             squeeze=False, sharex=True, layout="constrained")
    for j, b in enumerate(bbs):
        for i, (key, label) in enumerate(DEPTH_WIDTH_ROWS):
            ax = axes[i, j]
            for d in depths:
                for w in widths:
                    rs = sorted((r for r in rows if str(r["backbone"]) == b and int(r["depth"]) == d and int(r["width"]) == w),
                                key=lambda r: int(r["layer"]))
                    if not rs:
                        continue
                    xs = [_dw_x(r, x) for r in rs]
                    ys = [np.nan if r.get(key) is None else float(r[key]) for r in rs]
                    ax.plot(xs, ys, style[d], marker=marker[d], ms=3, color=colour[w], label=f"L={d}, width {w}")
            if i == 0:
                ax.set_title(b, fontsize=9)
            if j == 0:
                ax.set_ylabel(label, fontsize=8)
            if i == len(DEPTH_WIDTH_ROWS) - 1:
                ax.set_xlabel("relative depth ℓ / (L − 1)" if x == "relative" else "layer ℓ")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=7, title="colour = width, style = depth L", title_fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def _dw_x(row: dict[str, Any], x: str) -> float:
    ell, L = int(row["layer"]), int(row["depth"])
    return float(ell) if x == "layer" else (ell / (L - 1) if L > 1 else 0.0)
