"""The study report of a ``reproduce`` run: ``report.md`` and ``report.html`` (:func:`build`, :func:`write`).

Everything here is read from result rows; nothing is recomputed from models and no number is written as fixed
text. The findings section states, for each of the paper's findings F1–F5, what this run measured — with 95%
intervals and the number of fits behind them — and a verdict.

Inputs
------
* ``summary``: :func:`inrlens.report.tables.summarise` of the freeze-sweep rows (Table 1 rows with best k,
  best-k set, paired gain over no freeze, no-freeze and random-init PSNR; per (source, backbone) stable-rank
  predictions with their status; per (backbone, source, target, depth) statistics keyed ``"b|s|t|d"`` and the
  per-fit PSNRs ``units["b|s|t|d"] = {"image|seed": dB}`` that paired intervals are computed from).
* ``sae_rows``: one row per SAE (``inrlens sae``): condition, regime, backbone, layer, r2, alive_pct,
  dead_pct, rho, psnr_sub, psnr_inr.
* ``abl_rows``: one row per ablated atom (``inrlens ablate``): condition, layer, atom, psnr_drop, locality,
  region_frac.
* ``semantics`` (optional): :func:`inrlens.probes.semantics.read_semantics` rows, one per (SAE, record): the
  per-layer summary of the atoms' Pearson r with feature maps (section "Atom semantics", :func:`semantics_section`).
* ``depth_width`` (optional): the depth × width SAE study's rows (:mod:`inrlens.depth_width`, section
  "Depth × width", :func:`inrlens.depth_width.table_markdown`).

Where each part lives
---------------------
* :mod:`inrlens.report.findings`: the findings F1–F5 and the rules their verdicts are decided by.
* :mod:`inrlens.report.beyond`: the section "Beyond the paper: other backbones" (rules in its ``BEYOND_TEXT``).
* :mod:`inrlens.report.sections`: the other sections (setup, regime check, freeze sweep, SAEs, ablations, atom
  semantics, depth × width, atlas).
* :mod:`inrlens.report.html_page`: Markdown → the self-contained HTML page.

The names of those modules are importable from here as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import stats as S  # noqa: F401  (importable from here: the verdict rules live in inrlens.stats)
from .beyond import (
    BEYOND_TEXT,
    PAPER_BACKBONES,
    PLATEAU_MAX_K,
    backbone_measures,
    backbone_text,
    beyond_measures,
    beyond_section,
    beyond_table,
    noise_text,
    resembles_line,
)
from .findings import (
    MATCH_TOL_DB,
    PAPER_F2,
    PAPER_F3,
    PAPER_K,
    PAPER_SR_H,
    Finding,
    finding_f1,
    finding_f2,
    finding_f3,
    finding_f4,
    finding_f5,
    findings,
    findings_markdown,
    findings_text,
)
from .html_page import md_to_html
from .sections import (
    SEMANTICS_TEXT,
    ablation_section,
    ablation_table,
    atlas_section,
    depth_width_section,
    findings_section,
    freeze_section,
    regime_section,
    sae_section,
    sae_table,
    semantics_section,
    semantics_table,
    setup_section,
    versions,
)


def build(run_dir: Path, meta: dict[str, Any], sweep_rows: Sequence[dict[str, Any]], sae_rows: Sequence[dict[str, Any]],
          abl_rows: Sequence[dict[str, Any]], figures: Sequence[Path] = (), sae_figures: Sequence[Path] = (),
          galleries: Sequence[tuple[str, Path]] = (), ablation_figs: Sequence[tuple[str, Path]] = (), atlas: Path | None = None,
          analogues: dict[str, str] | None = None, semantics: Sequence[dict[str, Any]] | None = None,
          semantics_figure: Path | None = None, depth_width: Sequence[dict[str, Any]] | None = None,
          depth_width_figure: Path | None = None, depth_width_note: str = "", noise: Sequence[str] = (),
          title: str | None = None, probes: bool = True) -> tuple[str, list[Finding]]:
    """The report as Markdown (and the findings it states). Paths are written relative to run_dir. ``analogues``
    {target: paper dataset} tells the regime check which paper band a target is compared with. ``semantics``
    (None = no section) adds "Atom semantics" with ``semantics_figure``; ``depth_width`` (None = no section) adds
    "Depth × width" with its figure and ``depth_width_note`` (the study's setup) before the table. ``noise``: sources
    whose encoders were trained on noise, besides those the cohort rows and ``run_dir/sweep/run.json`` name
    (:func:`inrlens.report.tables.noise_sources`). Backbones other than SIREN and FFMLP, and noise sources, get
    the section "Beyond the paper: other backbones" (:func:`beyond_section`). ``title`` replaces the heading;
    ``probes=False`` leaves out the SAE and ablation sections (a sweep's own report has none)."""
    from . import tables

    run_dir = Path(run_dir)
    noise = [*noise, *tables.sweep_noise_sources(run_dir / "sweep")]
    summary = tables.summarise(sweep_rows, analogues, noise=noise) if sweep_rows else None
    if summary is not None and not summary["table1"]:
        summary = None
    fs = findings(summary, sae_rows, abl_rows)
    md = [title or f"# inrlens reproduction report — preset `{meta.get('preset', '?')}`", ""]
    md += setup_section(meta, [*sweep_rows, *sae_rows])
    md += findings_section(fs)
    md += beyond_section(summary, sae_rows, abl_rows)
    if summary is not None:
        md += regime_section(summary)
    md += freeze_section(summary, figures, run_dir)
    if probes:
        md += sae_section(sae_rows, sae_figures, galleries, run_dir)
        md += ablation_section(abl_rows, ablation_figs, run_dir)
    if semantics is not None:
        md += semantics_section(semantics, semantics_figure, run_dir)
    if depth_width is not None:
        md += depth_width_section(depth_width, depth_width_figure, depth_width_note, run_dir)
    if atlas is not None:
        md += atlas_section(atlas, run_dir)
    return "\n".join(md), fs


def write(run_dir: Path, md: str, title: str = "inrlens report") -> tuple[Path, Path]:
    """Write run_dir/report.md and run_dir/report.html (atomically)."""
    from ..store import RunFolder, atomic_write_text

    run = RunFolder(run_dir)
    p_md, p_html = run.report_md, run.report_html
    atomic_write_text(p_md, md)  # atomic_write gives the umask's mode (a page to open, not a private temp file)
    atomic_write_text(p_html, md_to_html(md, title))
    return p_md, p_html


__all__ = ["build", "write",
           # re-exported from the modules that hold them
           "beyond_section", "beyond_measures", "backbone_measures", "beyond_table", "backbone_text", "resembles_line", "noise_text",
           "BEYOND_TEXT", "PAPER_BACKBONES", "PLATEAU_MAX_K",
           "Finding", "findings", "finding_f1", "finding_f2", "finding_f3", "finding_f4", "finding_f5", "findings_markdown",
           "findings_text", "MATCH_TOL_DB", "PAPER_F2", "PAPER_F3", "PAPER_K", "PAPER_SR_H",
           "md_to_html",
           "versions", "setup_section", "findings_section", "regime_section", "freeze_section", "sae_table", "sae_section",
           "ablation_table", "ablation_section", "SEMANTICS_TEXT", "semantics_table", "semantics_section", "depth_width_section",
           "atlas_section"]
