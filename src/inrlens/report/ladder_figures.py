"""The scale ladder's figure, drawn from :func:`inrlens.ladder.ladder_summary` output alone.

``ladder``: one column of panels per backbone, one row per source → target pair. Each panel shows the paired
gain of the best freeze depth k* over no freeze (dB) against the resolution scale (log₂ axis), one line per
hidden width, with the 95% Student-t interval of the mean paired difference as error bars and k* written next
to each point. Scales of the full ladder (1/8 … 1) without a point are marked "not run". The caption under the
panels states the interval convention and that k* is picked on the same fits. Written as PNG (150 dpi) and PDF.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

from .figures import _plt, _save


def _fin(x: Any) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def ladder_figure(summary: dict[str, Any], stem: str | Path) -> list[Path]:
    """stem.png and stem.pdf (see the module docstring); [] when the summary has no rows."""
    from ..ladder import CAPTION, FULL_SCALES, scale_label

    rows = summary.get("rows", [])
    if not rows:
        return []
    plt = _plt()
    backbones = list(dict.fromkeys(summary.get("backbones") or [r["backbone"] for r in rows]))
    backbones = [b for b in backbones if any(r["backbone"] == b for r in rows)]
    pairs = [p for p in summary.get("pairs", []) if any(r["pair"] == p for r in rows)]
    pairs += [p for p in dict.fromkeys(r["pair"] for r in rows) if p not in pairs]
    widths = sorted({int(r["width"]) for r in rows} | {int(s["width"]) for s in summary.get("rungs", [])})
    scales = sorted({float(r["scale"]) for r in rows} | set(FULL_SCALES) | {float(s["scale"]) for s in summary.get("rungs", [])})
    cmap = plt.get_cmap("viridis")
    colours = {w: cmap(0.1 + 0.75 * i / max(1, len(widths) - 1)) for i, w in enumerate(widths)}
    markers = "osD^v<>ph"
    nr, nc = len(pairs), len(backbones)
    caption = textwrap.wrap(CAPTION + " Error bars: that interval.", 60 + 55 * nc)
    foot = 0.2 + 0.11 * len(caption)  # inches under the panels for the caption
    height = 2.7 * nr + foot
    fig, axes = plt.subplots(nr, nc, figsize=(3.6 * nc, height), squeeze=False, sharex=True)
    xs = [math.log2(s) for s in scales]
    for i, p in enumerate(pairs):
        for j, b in enumerate(backbones):
            ax = axes[i][j]
            mine = [r for r in rows if r["pair"] == p and r["backbone"] == b]
            ax.axhline(0.0, color="0.5", lw=0.8, ls="--", zorder=0)
            for wi, w in enumerate(widths):
                pts = sorted((r for r in mine if int(r["width"]) == w and _fin(r["gain"])), key=lambda r: r["scale"])
                if not pts:
                    continue
                off = (wi - (len(widths) - 1) / 2) * 0.07
                x = [math.log2(r["scale"]) + off for r in pts]
                y = [r["gain"] for r in pts]
                lo = [r["gain"] - r["gain_lo"] if _fin(r["gain_lo"]) else 0.0 for r in pts]
                hi = [r["gain_hi"] - r["gain"] if _fin(r["gain_hi"]) else 0.0 for r in pts]
                ax.errorbar(x, y, yerr=[lo, hi], fmt="-" + markers[wi % len(markers)], color=colours[w], ms=4, lw=1.3,
                            capsize=2.5, label=f"width {w}")
                for xx, r in zip(x, pts):
                    if r.get("best_k") is not None:
                        top = r["gain_hi"] if _fin(r["gain_hi"]) else r["gain"]
                        ax.annotate(f"k*={r['best_k']}", (xx, top), textcoords="offset points", xytext=(0, 3), ha="center",
                                    fontsize=6.5, color=colours[w])
            have = {float(r["scale"]) for r in mine}
            for s in scales:
                if s not in have:
                    ax.text(math.log2(s), 0.0, "not run", ha="center", va="bottom", fontsize=6.5, color="0.55", rotation=90)
            src, _, tgt = p.partition(":")
            ax.set_title(f"{b}: {src} → {tgt}")
            ax.set_xticks(xs)
            ax.set_xticklabels([scale_label(s) for s in scales])
            ax.set_xlim(min(xs) - 0.4, max(xs) + 0.4)
            if i == nr - 1:
                ax.set_xlabel("resolution scale (× native size)")
            if j == 0:
                ax.set_ylabel("gain of k* over no freeze (dB)")
            if i == 0 and j == nc - 1:
                ax.legend(loc="best", frameon=False)
    fig.tight_layout(rect=(0, foot / height, 1, 1))
    fig.text(0.01, 0.01, "\n".join(caption), fontsize=6.5, va="bottom", ha="left", color="0.25")
    return _save(fig, Path(stem))


__all__ = ["ladder_figure"]
