"""Reports: tables, figures and the static HTML atlas, read from saved results (never recomputed)."""

from pathlib import Path as _Path


def write_report(run_dir, out=None, analogues=None, noise=()) -> list[_Path]:
    """Freeze-study tables (Markdown + LaTeX), figures (PNG + PDF), summary.json and report.md (regime check,
    findings with their verdicts, other backbones, noise sources) from a run's results.

    run_dir: a sweep folder (its results/ is read) or any folder / file of result JSONL rows.
    out: where to write (default run_dir/report). analogues: {target: paper dataset} for the regime check in
    summary.json (:func:`inrlens.stats.paper_name`). noise: sources whose encoders were trained on noise, besides
    those the cohort rows or the sweep's run.json mark (Table 1 marks them; noise_vs_image.md/.tex compares them
    with the image sources). Returns the written paths. Raises FileNotFoundError when no fit rows are found.
    """
    from ..identity import read_current_rows
    from ..store import REPORT_DIR, RESULTS_DIR, atomic_write_json, atomic_write_text
    from . import figures, tables

    run_dir = _Path(run_dir)
    if not run_dir.exists():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    src = run_dir / RESULTS_DIR if (run_dir / RESULTS_DIR).is_dir() else run_dir
    rows = read_current_rows(src)  # without stale rows (of a cohort replaced since): inrlens.identity
    summary = tables.summarise(rows, analogues, noise=[*noise, *tables.sweep_noise_sources(run_dir)])
    if not summary["table1"]:
        raise FileNotFoundError(f"{run_dir}: no freeze-sweep result rows found")
    out = _Path(out) if out is not None else (run_dir if run_dir.is_dir() else run_dir.parent) / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    written = []
    named = [("table1", tables.table1), ("predictions", tables.predictions_table), ("per_combination", tables.combo_tables)]
    if summary["noise_vs_image"]:
        named.append(("noise_vs_image", tables.noise_table))
    for name, fn in named:
        for ext, latex in ((".md", False), (".tex", True)):
            p = out / f"{name}{ext}"
            atomic_write_text(p, fn(summary, latex=latex))
            written.append(p)
    p = out / "summary.json"
    atomic_write_json(p, summary, indent=1)
    written.append(p)
    for b in dict.fromkeys(r["backbone"] for r in summary["table1"]):
        written += figures.freeze_sweep(summary, b, out)
        written += figures.rank_profiles(summary, b, out)
    written += figures.freeze_backbones(summary, out)  # every backbone side by side
    written.append(_write_findings(run_dir, out, rows, written, analogues, [*noise, *tables.sweep_noise_sources(run_dir)]))
    return written


def _write_findings(run_dir, out, rows, written, analogues, noise) -> _Path:
    """report.md beside the tables: the regime check, the findings with their verdicts, the other backbones and
    noise sources, and the figures — the sweep part of what ``inrlens reproduce`` writes."""
    from ..store import atomic_write_text
    from .document import build

    figs = [p for p in written if p.suffix == ".png"]
    md, _ = build(out, {"run folder": str(run_dir)}, rows, [], [], figs, analogues=analogues, noise=tuple(noise),
                  title=f"# inrlens freeze-sweep report — `{run_dir.name}`", probes=False)
    p = out / "report.md"
    atomic_write_text(p, md)
    return p
