"""The report's sections besides the findings and "Beyond the paper" (:mod:`inrlens.report.findings`,
:mod:`inrlens.report.beyond`): setup, regime check, freeze sweep, sparse autoencoders, ablations, atom semantics,
depth × width and the atom atlas. Each ``*_section`` returns Markdown lines; image paths are written relative to the
run folder."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .findings import Finding, _f, _nan, findings_markdown


def _rel(p: Path, root: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(p)


def _images(named: Iterable[tuple[str, Path]], run_dir: Path) -> list[str]:
    """Markdown image lines, one per (alt text, path)."""
    md: list[str] = []
    for name, p in named:
        md += [f"![{name}]({_rel(p, run_dir)})", ""]
    return md


def _figure_order(p: Path) -> tuple[str, int, str]:
    """Freeze-study figures grouped by kind, each kind's backbones in registry order ('freeze_sweep_gauss' after
    'freeze_sweep_ffmlp', not before)."""
    from .tables import backbone_order

    stem = Path(p).stem
    kind, _, b = stem.rpartition("_")
    return (kind, backbone_order(b), b) if kind and b in _registered() else (stem, -1, "")


def _registered() -> tuple[str, ...]:
    from ..backbones import backbone_names

    return backbone_names()


def versions(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Library versions, device and precision as recorded in the result rows (first row that has them)."""
    for r in rows:
        rt = r.get("runtime")
        if isinstance(rt, dict):
            return rt
    return {}


# ------------------------------------------------------------------------------------------- setup and findings
def setup_section(meta: dict[str, Any], rows: Iterable[dict[str, Any]]) -> list[str]:
    """"Setup": the run's scalar metadata and the runtime recorded in the result rows (:func:`versions`)."""
    md = ["## Setup", ""]
    for k, v in meta.items():
        if not isinstance(v, (dict, list)):
            md.append(f"- {k}: `{v}`")
    rt = versions(rows)
    if rt:
        md.append("- recorded runtime: " + ", ".join(f"{k} `{v}`" for k, v in rt.items()))
    return md + [""]


def findings_section(fs: Sequence[Finding]) -> list[str]:
    """"Findings (paper F1–F5 vs this run)": how a verdict is reached, and the findings table."""
    from .tables import CONVENTION

    return ["## Findings (paper F1–F5 vs this run)", "",
            "Each row is computed from this run's result files; verdict rules are in `inrlens.report.findings`. A verdict "
            "comes from a 95% interval (`inrlens.stats`): agrees only when the interval excludes the other side of the claim, "
            "disagrees only when it excludes the claim, otherwise inconclusive with the number of fits n behind it. "
            + CONVENTION, "",
            findings_markdown(fs)]


# ------------------------------------------------------------------------------------------- freeze sweep
def regime_section(summary: dict[str, Any]) -> list[str]:
    """"Regime check": this run's no-freeze PSNR against the paper's."""
    from .tables import regime_table

    return ["## Regime check (no-freeze PSNR vs the paper)", "",
            "The findings compare like with like only when this run's fits sit in the paper's PSNR regime.", "",
            regime_table(summary), ""]


def freeze_section(summary: dict[str, Any] | None, figures: Sequence[Path], run_dir: Path) -> list[str]:
    """"Freeze sweep": Table 1, the predictions table, the figures (:func:`_figure_order`) and the per-combination
    tables, or a line saying there are no results (summary None)."""
    from . import tables

    md = ["## Freeze sweep", ""]
    if summary is None:
        return md + ["No freeze-sweep results in this run.", ""]
    md += [tables.table1(summary), "", tables.predictions_table(summary), ""]
    md += _images(((Path(p).stem, p) for p in sorted(figures, key=_figure_order)), run_dir)
    return md + ["### Per-combination tables", "", tables.combo_tables(summary), ""]


# ------------------------------------------------------------------------------------------- SAEs and ablations
def sae_table(sae_rows: Sequence[dict[str, Any]]) -> str:
    rows = sorted(sae_rows, key=lambda r: (str(r.get("condition")), int(r.get("layer", 0)), r.get("n", 0), r.get("k", 0)))
    out = ["| condition | image | layer | n | k | R² | PSNR with ĥ (dB) | INR PSNR (dB) | alive % | dead % | ρ |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r.get('condition')} | {r.get('image', '')} | {r.get('layer')} | {r.get('n')} | {r.get('k')} | "
                   f"{_f(r.get('r2'), 3)} | {_f(r.get('psnr_sub'))} | {_f(r.get('psnr_inr'))} | {_f(r.get('alive_pct'), 1)} | "
                   f"{_f(r.get('dead_pct'), 1)} | {_f(r.get('rho'), 3)} |")
    return "\n".join(out) + "\n"


def ablation_table(abl_rows: Sequence[dict[str, Any]], top: int = 12) -> str:
    rows = sorted((r for r in abl_rows if not _nan(r.get("psnr_drop"))), key=lambda r: -float(r["psnr_drop"]))[:top]
    out = ["| condition | layer | atom | PSNR drop (dB) | firing region % | locality |", "|---|---|---|---|---|---|"]
    for r in rows:
        reg = r.get("region_frac")
        out.append(f"| {r.get('condition')} | {r.get('layer')} | {r.get('atom')} | {_f(r.get('psnr_drop'))} | "
                   f"{_f(100 * float(reg) if not _nan(reg) else math.nan, 1)} | {_f(r.get('locality'), 3)} |")
    return "\n".join(out) + "\n"


def sae_section(sae_rows: Sequence[dict[str, Any]], sae_figures: Sequence[Path], galleries: Sequence[tuple[str, Path]],
                run_dir: Path) -> list[str]:
    """"Sparse autoencoders": the SAE table, the SAE figures and the atom galleries."""
    md = ["## Sparse autoencoders", ""]
    md += [sae_table(sae_rows), ""] if sae_rows else ["No SAE results in this run.", ""]
    md += _images(((Path(p).stem, p) for p in sae_figures), run_dir)
    return md + _images(galleries, run_dir)


def ablation_section(abl_rows: Sequence[dict[str, Any]], ablation_figs: Sequence[tuple[str, Path]], run_dir: Path) -> list[str]:
    """"Ablations": the largest drops and the ablation figures."""
    md = ["## Ablations", ""]
    md += [ablation_table(abl_rows), ""] if abl_rows else ["No ablation results in this run.", ""]
    return md + _images(ablation_figs, run_dir)


# ------------------------------------------------------------------------------------------- atom semantics
SEMANTICS_TEXT = (
    "Pearson r, over the pixels, between each stored top atom map z_j(x) and feature maps of the decomposed image "
    "(luminance, colour channels, Sobel edges, local frequency), the input coordinates (x, y, radius) and, for "
    "`sample:mri`, the slice's grey matter, white matter and CSF (docs/protocol.md, \"Atom semantics\"). Each cell: "
    "mean |r| over the layer's atoms (in parentheses: the number of atoms whose top correlate, largest |r|, the feature "
    "is). Baseline: neighbouring pixels are not independent and atom maps and most features are spatially smooth, so "
    "|r| is inflated compared with independent samples — a smooth map correlates with any smooth feature (coordinates, "
    "luminance) more than chance would suggest. Read |r| against a baseline, e.g. an SAE on a random-init INR of the "
    "same image, not as a test."
)


def semantics_table(rows: Sequence[dict[str, Any]], where: str = "all") -> str:
    """Per (condition, layer) × feature: 'mean |r| (top count)' of the semantics rows of record ``where``; the
    features are the union over the rows in :data:`inrlens.probes.semantics.FEATURE_ORDER` ('—' where a
    condition has no such feature)."""
    from ..probes.semantics import feature_order

    rs = sorted((r for r in rows if r.get("where", "all") == where),
                key=lambda r: (str(r.get("condition")), int(r.get("layer", 0)), r.get("n", 0), r.get("k", 0)))
    feats = feature_order([f for r in rs for f in r.get("features", [])])
    out = ["| condition | backbone | regime | layer | n | k | atoms | most often top | " + " | ".join(feats) + " |",
           "|" + "---|" * (8 + len(feats))]
    for r in rs:
        summ = r.get("summary", {})
        counts = [(int(summ[f].get("top_count") or 0), -i, f) for i, f in enumerate(r.get("features", [])) if f in summ]
        best = max(counts) if counts else None
        top = f"{best[2]} ({best[0]})" if best and best[0] > 0 else "—"
        cells = [f"{_f(summ[f].get('mean_abs_r'))} ({int(summ[f].get('top_count') or 0)})" if f in summ else "—" for f in feats]
        out.append(f"| {r.get('condition')} | {r.get('backbone') or ''} | {r.get('regime') or ''} | {r.get('layer')} | {r.get('n')} | "
                   f"{r.get('k')} | {r.get('atoms')} | {top} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def semantics_section(rows: Sequence[dict[str, Any]], figure: Path | None, run_dir: Path) -> list[str]:
    """The report's "Atom semantics" section (Markdown lines): text, the table over all pixels, the table inside
    the brain mask when an MRI run has one, and the figure (mean |r| vs layer per feature, one panel per condition)."""
    md = ["## Atom semantics", "", SEMANTICS_TEXT, ""]
    if not rows:
        return md + ["No atom semantics in this run (semantics.json is written by `inrlens atoms`).", ""]
    md += [semantics_table(rows, "all"), ""]
    if any(r.get("where") == "brain" for r in rows):
        md += ["### Inside the brain mask (MRI: luminance > 0.05)", "", semantics_table(rows, "brain"), ""]
    if figure is not None:
        md += [f"![semantics]({_rel(figure, run_dir)})", ""]
    return md


# ------------------------------------------------------------------------------------------- depth × width, atlas
def depth_width_section(rows: Sequence[dict[str, Any]], figure: Path | None, note: str, run_dir: Path) -> list[str]:
    """"Depth × width": the study's setup (``note``), its table (:func:`inrlens.depth_width.table_markdown`) and
    figure."""
    from ..depth_width import table_markdown

    md = ["## Depth × width", "", note, ""] if note else ["## Depth × width", ""]
    md += [table_markdown(rows), ""] if rows else ["No depth × width results in this run.", ""]
    if figure is not None:
        md += [f"![depth × width]({_rel(figure, run_dir)})", ""]
    return md


def atlas_section(atlas: Path, run_dir: Path) -> list[str]:
    """"Atom atlas": the link to the atlas page."""
    return ["## Atom atlas", "", f"Browse every condition → layer → atom: [{_rel(atlas, run_dir)}]({_rel(atlas, run_dir)})", ""]


__all__ = ["versions", "setup_section", "findings_section", "regime_section", "freeze_section", "sae_table", "sae_section",
           "ablation_table", "ablation_section", "SEMANTICS_TEXT", "semantics_table", "semantics_section", "depth_width_section",
           "atlas_section"]
