"""Figures of the freeze study, drawn from :func:`inrlens.report.tables.summarise` output alone.

* ``freeze_sweep_<backbone>``: test PSNR vs freeze depth k, one panel per source cohort, one line per target
  (the mean) with a band of ± 1 sample std (ddof = 1, the report's "±" convention, :func:`inrlens.rules.mean_std`)
  over test images × seeds; no-freeze and random-init drawn as reference markers (with error bars of the same
  std) left and right of the k axis, in the target's colour. The figure's title states the convention.
* ``stable_rank_<backbone>``: sr(W_ℓ) and sr(H_ℓ) per layer, one panel per source cohort, with the predicted
  k* = argmax sr(W) (dashed), argmax sr(H) (dotted) and the empirical best depth (grey band) marked.

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
    """sr(W_ℓ) and sr(H_ℓ) per layer with predicted and empirical k* marked, one panel per source."""
    plt = _plt()
    preds = [p for p in summary["predictions"] if p["backbone"] == backbone]
    if not preds:
        return []
    fig, axes = plt.subplots(1, len(preds), figsize=(3.2 * len(preds), 2.8), squeeze=False)
    for ax, p in zip(axes[0], preds):
        L = len(p["sr_w"])
        x = np.arange(L)
        if p["empirical_k"] is not None:
            ax.axvspan(p["empirical_k"] - 0.35, p["empirical_k"] + 0.35, color="0.85", zorder=0, label="empirical best k")
        l1 = ax.plot(x, p["sr_w"], "-o", color="tab:blue", ms=4, label="sr(W)")
        ax.axvline(p["k_w"], color="tab:blue", ls="--", lw=1)
        ax2 = ax.twinx()
        ax2.spines["right"].set_visible(True)
        l2 = ax2.plot(x, p["sr_h"], "-s", color="tab:orange", ms=4, label="sr(H)")
        ax2.axvline(p["k_h"], color="tab:orange", ls=":", lw=1.2)
        ax.set_xticks(x)
        ax.set_xlabel("layer ℓ")
        ax.set_ylabel(r"sr($W_\ell$)", color="tab:blue")
        ax2.set_ylabel(r"sr($H_\ell$)", color="tab:orange")
        emp = "n/a" if p["empirical_k"] is None else p["empirical_k"]
        ax.set_title(f"{p['source']}: " + r"$k^*_W$" + f"={p['k_w']}, " + r"$k^*_H$" + f"={p['k_h']}, best k={emp}")
        handles = l1 + l2 + [plt.Rectangle((0, 0), 1, 1, color="0.85")]
    fig.legend(handles, [r"sr($W_\ell$) (dashed: argmax = predicted $k^*$)", r"sr($H_\ell$) (dotted: argmax)", "empirical best k"],
               frameon=False, loc="lower center", ncol=3, bbox_to_anchor=(0.5, -0.06))
    grid = preds[0].get("grid")
    note = f"; sr(H) on the cohort's {grid[0]}×{grid[1]} grid" if grid else ""
    fig.suptitle(f"{backbone.upper()}: stable-rank profiles of the cohort encoders{note}", fontsize=9)
    fig.tight_layout()
    return _save(fig, out_dir / f"stable_rank_{backbone}")


__all__ = ["freeze_sweep", "rank_profiles"]
