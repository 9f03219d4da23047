"""Figures of the freeze study, drawn from :func:`inrlens.report.tables.summarise` output alone.

* ``freeze_sweep_<backbone>``: test PSNR vs freeze depth k, one panel per source cohort, one line per target
  (the mean) with a band of ± 1 sample std (ddof = 1, the report's "±" convention, :func:`inrlens.rules.mean_std`)
  over test images × seeds; no-freeze and random-init drawn as reference markers (with error bars of the same
  std) left and right of the k axis, in the target's colour. The figure's title states the convention.
* ``stable_rank_<backbone>``: per layer, one panel per source cohort: sr(W_ℓ) and sr(W_ℓ) of the same encoder
  at initialisation (dashed, open markers) on the left axis; sr(H_ℓ) uncentred and centred (the mean over the
  grid subtracted) on the right axis. Marked: k* = argmax sr(W) (solid line), argmax sr(H) uncentred (dotted)
  and centred (dash-dot), argmax Δsr (star on the sr(W) curve) and the empirical best depth (grey band). A
  cohort row without the newer profiles (written before they existed) shows only sr(W) and sr(H).

* ``freeze_backbones``: every backbone side by side, one panel each in registry order: the paired PSNR
  difference to no freeze vs freeze depth k (mean over source → target pairs, stratified 95% interval as a band),
  one line per source cohort (a source keeps its colour across panels; noise-trained sources dashed), with 0 and
  the −0.5 dB "matches no freeze" line.

Any number of backbones: one figure of each kind per backbone, and one panel per backbone in the overview; a
backbone keeps its colour (:func:`backbone_colour`, by registry position) in every figure that colours by
backbone.

Each figure is written as PNG (150 dpi) and PDF, sized for a paper column pair (≈ 3.2 in per panel).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "legend.fontsize": 8, "axes.spines.top": False,
                         "axes.spines.right": False})
    return plt


def _save(fig: Any, stem: Path) -> list[Path]:
    """stem.png and stem.pdf, each written atomically (concurrent writers of one figure never collide)."""
    from ..store import atomic_write

    out = []
    for ext, kw in ((".png", {"dpi": 150}), (".pdf", {})):
        path = stem.with_suffix(ext)
        atomic_write(path, lambda tmp, kw=kw: fig.savefig(tmp, bbox_inches="tight", **kw))
        out.append(path)
    _plt().close(fig)
    return out


def _stat(summary: dict[str, Any], b: str, s: str, t: str, d: str) -> dict[str, Any] | None:
    return summary["stats"].get("|".join((b, s, t, d)))


def freeze_sweep(summary: dict[str, Any], backbone: str, out_dir: Path) -> list[Path]:
    """PSNR vs k, one panel per source, one line per target (see module docstring)."""
    plt = _plt()
    rows = [r for r in summary["table1"] if r["backbone"] == backbone]
    if not rows:
        return []
    sources = list(dict.fromkeys(r["source"] for r in rows))
    targets = list(dict.fromkeys(r["target"] for r in summary["table1"]))
    colours = {t: plt.get_cmap("tab10")(i % 10) for i, t in enumerate(targets)}
    depths = sorted({int(k.split("|")[3]) for k in summary["stats"] if k.startswith(backbone + "|") and k.split("|")[3].isdigit()})
    L = (max(depths) + 1) if depths else 1
    fig, axes = plt.subplots(1, len(sources), figsize=(3.2 * len(sources), 2.8), sharey=True, squeeze=False)
    for ax, s in zip(axes[0], sources):
        for t in targets:
            pts = [(k, _stat(summary, backbone, s, t, str(k))) for k in depths]
            pts = [(k, st) for k, st in pts if st is not None and not math.isnan(st["psnr"])]
            if not pts:
                continue
            ks = np.array([k for k, _ in pts])
            m = np.array([st["psnr"] for _, st in pts])
            sd = np.array([st["psnr_std"] for _, st in pts])
            c = colours[t]
            ax.plot(ks, m, "-o", color=c, ms=3.5, lw=1.5, label=t)
            ax.fill_between(ks, m - sd, m + sd, color=c, alpha=0.18, lw=0)
            for x, d, mk in ((-1, "none", "s"), (L, "random", "^")):
                st = _stat(summary, backbone, s, t, d)
                if st is not None and not math.isnan(st["psnr"]):
                    ax.errorbar([x], [st["psnr"]], yerr=[st["psnr_std"]], fmt=mk, color=c, ms=5, mfc="white", capsize=2, lw=1)
        ax.set_xticks(list(range(-1, L + 1)))
        ax.set_xticklabels(["none"] + [str(k) for k in range(L)] + ["rand"])
        ax.axvspan(-1.5, -0.5, color="0.93", zorder=0)
        ax.axvspan(L - 0.5, L + 0.5, color="0.93", zorder=0)
        ax.set_xlim(-1.5, L + 0.5)
        ax.set_title(f"source: {s}")
        ax.set_xlabel("freeze depth k")
        ax.grid(alpha=0.3, lw=0.5)
    axes[0][0].set_ylabel("test PSNR (dB)")
    axes[0][-1].legend(title="target", frameon=False, loc="best")
    fig.suptitle(f"{backbone.upper()}: mean PSNR vs freeze depth\n(bands and bars: ±1 sample std, ddof = 1, over images × seeds; "
                 "□ no freeze, △ random init)", fontsize=9)
    fig.tight_layout()
    return _save(fig, out_dir / f"freeze_sweep_{backbone}")


def rank_profiles(summary: dict[str, Any], backbone: str, out_dir: Path) -> list[Path]:
    """Per layer: sr(W_ℓ), sr(W_ℓ) at initialisation (dashed), sr(H_ℓ) uncentred and centred, one panel per
    source; the four predicted depths and the empirical best depth marked (see module docstring)."""
    plt = _plt()
    preds = [p for p in summary["predictions"] if p["backbone"] == backbone]
    if not preds:
        return []
    fig, axes = plt.subplots(1, len(preds), figsize=(3.4 * len(preds), 3.0), squeeze=False)
    entries: dict[str, Any] = {}  # legend label → handle, in drawing order, over every panel
    for ax, p in zip(axes[0], preds):
        L = len(p["sr_w"])
        x = np.arange(L)
        if p["empirical_k"] is not None:
            ax.axvspan(p["empirical_k"] - 0.35, p["empirical_k"] + 0.35, color="0.85", zorder=0)
            entries.setdefault("empirical best k", plt.Rectangle((0, 0), 1, 1, color="0.85"))
        entries.setdefault(r"sr($W_\ell$) (vertical line: argmax = $k^*$)", ax.plot(x, p["sr_w"], "-o", color="tab:blue", ms=4)[0])
        ax.axvline(p["k_w"], color="tab:blue", ls="-", lw=0.8, alpha=0.6)
        if p.get("sr_w_init"):
            entries.setdefault(r"sr($W_\ell$) at initialisation", ax.plot(x, p["sr_w_init"], "--o", color="tab:blue", ms=3.5,
                                                                         mfc="white", lw=1.2)[0])
        if p.get("k_delta") is not None:
            ax.plot([p["k_delta"]], [p["sr_w"][p["k_delta"]]], marker="*", color="tab:green", ms=11, ls="none", zorder=5)
            entries.setdefault(r"argmax $\Delta$sr", plt.Line2D([], [], marker="*", color="tab:green", ms=9, ls="none"))
        ax2 = ax.twinx()
        ax2.spines["right"].set_visible(True)
        entries.setdefault(r"sr($H_\ell$) uncentred (dotted: argmax)", ax2.plot(x, p["sr_h"], "-s", color="tab:orange", ms=4)[0])
        ax2.axvline(p["k_h"], color="tab:orange", ls=":", lw=1.2)
        if p.get("sr_h_centred"):
            entries.setdefault(r"sr($H_\ell$) centred (dash-dot: argmax)",
                               ax2.plot(x, p["sr_h_centred"], "-^", color="tab:red", ms=4)[0])
            if p.get("k_h_centred") is not None:
                ax2.axvline(p["k_h_centred"], color="tab:red", ls="-.", lw=1)
        ax.set_xticks(x)
        ax.set_xlabel("layer ℓ")
        ax.set_ylabel(r"sr($W_\ell$)", color="tab:blue")
        ax2.set_ylabel(r"sr($H_\ell$)", color="tab:orange")
        emp = "n/a" if p["empirical_k"] is None else p["empirical_k"]
        ks = [r"$k^*_W$=" + str(p["k_w"]), r"$k^*_H$=" + str(p["k_h"])]
        if p.get("k_h_centred") is not None:
            ks.append(r"$k^*_{H,c}$=" + str(p["k_h_centred"]))
        if p.get("k_delta") is not None:
            ks.append(r"$k^*_\Delta$=" + str(p["k_delta"]))
        ax.set_title(f"{p['source']}: " + ", ".join(ks) + f"\nbest k={emp}")
    fig.legend(list(entries.values()), list(entries), frameon=False, loc="upper center", ncol=3, bbox_to_anchor=(0.5, 0.0))
    grid = preds[0].get("grid")
    note = f"; sr(H) on the cohort's {grid[0]}×{grid[1]} grid" if grid else ""
    fig.suptitle(f"{backbone.upper()}: stable-rank profiles of the cohort encoders{note}", fontsize=9)
    fig.tight_layout()
    return _save(fig, out_dir / f"stable_rank_{backbone}")


def backbone_colour(name: str) -> Any:
    """A backbone's colour: tab10 by its registry position (siren C0, ffmlp C1, gauss C2, …); unknown names grey."""
    from ..backbones import backbone_names

    names = backbone_names()
    return _plt().get_cmap("tab10")(names.index(name) % 10) if name in names else (0.4, 0.4, 0.4, 1.0)


def freeze_backbones(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """All backbones side by side: paired PSNR(k) − PSNR(no freeze) vs k, one panel per backbone (registry
    order), one line per source with its stratified 95% band (:func:`inrlens.report.tables.gain_by_depth`)."""
    from .findings import MATCH_TOL_DB
    from .tables import gain_by_depth

    plt = _plt()
    bbs = [b for b in summary.get("backbones") or list(dict.fromkeys(r["backbone"] for r in summary["table1"]))
           if any(r["backbone"] == b for r in summary["table1"])]
    if not bbs:
        return []
    noise = set(summary.get("noise_sources") or [])
    every = list(dict.fromkeys(r["source"] for r in summary["table1"]))  # a source keeps its colour in every panel
    fig, axes = plt.subplots(1, len(bbs), figsize=(3.2 * len(bbs), 2.9), squeeze=False, sharey=True)
    for ax, b in zip(axes[0], bbs):
        sources = list(dict.fromkeys(r["source"] for r in summary["table1"] if r["backbone"] == b))
        drawn = False
        for s in sources:
            g = gain_by_depth(summary, b, s)
            if not g:
                continue
            ks = np.array(list(g))
            m = np.array([g[k][0] for k in ks])
            lo = np.array([g[k][1] for k in ks])
            hi = np.array([g[k][2] for k in ks])
            c = plt.get_cmap("tab10")(every.index(s) % 10)
            ax.plot(ks, m, "--o" if s in noise else "-o", color=c, ms=3.5, lw=1.4, label=f"{s} (noise)" if s in noise else s)
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.any():
                ax.fill_between(ks[ok], lo[ok], hi[ok], color=c, alpha=0.18, lw=0)
            drawn = True
        ax.axhline(0.0, color="0.3", lw=0.8)
        ax.axhline(-MATCH_TOL_DB, color="0.5", lw=0.8, ls=":")
        ks_all = sorted({int(k.split("|")[3]) for k in summary["stats"] if k.startswith(b + "|") and k.split("|")[3].isdigit()})
        if ks_all:
            ax.set_xticks(list(range(ks_all[0], ks_all[-1] + 1)))
        ax.set_title(b)
        ax.set_xlabel("freeze depth k")
        ax.grid(alpha=0.3, lw=0.5)
        if drawn:
            ax.legend(title="source", frameon=False, loc="best", fontsize=7)
    axes[0][0].set_ylabel("PSNR(k) − no freeze (dB)")
    fig.suptitle("Freeze depth vs no freeze, every backbone\n(paired per fit; mean over source → target pairs; bands: 95% "
                 f"stratified t interval; dotted: −{MATCH_TOL_DB:g} dB)", fontsize=9)
    fig.tight_layout()
    return _save(fig, out_dir / "freeze_backbones")


__all__ = ["freeze_sweep", "rank_profiles", "freeze_backbones", "backbone_colour"]
