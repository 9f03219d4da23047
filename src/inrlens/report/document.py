"""The study report of a ``reproduce`` run: ``report.md`` and ``report.html`` (SPEC §7–8).

Everything here is read from result rows; nothing is recomputed from models and no number is written as fixed
text. The findings section states, for each of the paper's findings F1–F5, what this run measured and a
verdict ('agrees', 'partly agrees', 'disagrees' or 'not measured') decided by the rules below.

Inputs
------
* ``summary``: :func:`inrlens.report.tables.summarise` of the freeze-sweep rows (Table 1 rows with best k,
  no-freeze and random-init PSNR; per (source, backbone) stable-rank predictions; per (backbone, source,
  target, depth) statistics keyed ``"b|s|t|d"``).
* ``sae_rows``: one row per SAE (``inrlens sae``): condition, regime, backbone, layer, r2, alive_pct,
  dead_pct, rho, psnr_sub, psnr_inr.
* ``abl_rows``: one row per ablated atom (``inrlens ablate``): condition, layer, atom, psnr_drop, locality,
  region_frac.

Verdict rules (paper values from SPEC §7)
-----------------------------------------
* F1 best depth k = 1 (SIREN), 0 (FFMLP) for every source → target: agrees when every measured pair has the
  paper's k, partly when at least half do, else disagrees.
* F2 argmax sr(W) = empirical best depth in 6/6 (source, backbone) configurations, argmax sr(H) in 4/6: agrees
  when sr(W) is right in all configurations and sr(H) in no more of them than sr(W); partly when sr(W) is right
  in at least half; else disagrees.
* F3 freezing at the predicted k* matches or beats no-freeze on average (SIREN 43.80 vs 40.69 dB, FFMLP 35.91
  vs 34.66 dB): per backbone, "matches" = mean PSNR at k* ≥ mean no-freeze PSNR − 0.5 dB; agrees when it holds
  for every backbone, partly for some, else disagrees. Also reported: SIREN's spread over k ≤ 2 and its drop
  from k = 1 to k = L−1 (plateau, then collapse), and FFMLP's mean PSNR change per extra frozen layer (least
  squares slope over k; paper ≈ −4 to −5 dB).
* F4 SIREN atoms localised, FFMLP atoms image-spanning with more dead atoms: over layers ≥ 1, mean ρ of SIREN <
  mean ρ of FFMLP and mean dead % of FFMLP > SIREN; agrees when both hold, partly when one does.
* F5 one FFMLP atom can drop PSNR by ~10 dB image-wide while SIREN ablation errors stay local: agrees when the
  largest FFMLP drop exceeds the largest SIREN drop and the mean firing-region fraction of SIREN's ablated atoms
  is below FFMLP's; partly when one holds. (The error of an ablation is confined to the atom's support by
  construction — an INR is pointwise in x — so the region fraction is the measure of how local it is.)
"""

from __future__ import annotations

import html
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

PAPER_K = {"siren": 1, "ffmlp": 0}
PAPER_F3 = {"siren": (43.80, 40.69), "ffmlp": (35.91, 34.66)}
MATCH_TOL_DB = 0.5


@dataclass
class Finding:
    """One of the paper's findings and what this run measured for it."""

    id: str
    claim: str
    """What the paper reports (SPEC §7)."""
    measured: str
    """The numbers this run measured, as a sentence."""
    verdict: str
    """'agrees', 'partly agrees', 'disagrees' or 'not measured'."""


def _nan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _f(x: Any, d: int = 2) -> str:
    return "n/a" if _nan(x) else f"{float(x):.{d}f}"


def _verdict(all_ok: bool, some_ok: bool) -> str:
    return "agrees" if all_ok else ("partly agrees" if some_ok else "disagrees")


# ------------------------------------------------------------------------------------------- F1–F3
def finding_f1(summary: dict[str, Any]) -> Finding:
    claim = "best freeze depth k = 1 for SIREN and k = 0 for FFMLP, for every source and target"
    t1 = [r for r in summary.get("table1", []) if r.get("best_k") is not None]
    if not t1:
        return Finding("F1", claim, "no freeze-sweep results", "not measured")
    parts, ok_all, n_ok, n = [], True, 0, 0
    for b in dict.fromkeys(r["backbone"] for r in t1):
        rs = [r for r in t1 if r["backbone"] == b]
        hits = sum(r["best_k"] == PAPER_K.get(b) for r in rs)
        n_ok, n = n_ok + hits, n + len(rs)
        ok_all &= hits == len(rs)
        ks = ", ".join(f"{r['source']}→{r['target']} k={r['best_k']}" for r in rs)
        parts.append(f"{b}: best k = paper's k = {PAPER_K.get(b, '?')} in {hits}/{len(rs)} pairs ({ks})")
    return Finding("F1", claim, "; ".join(parts) + ".", _verdict(ok_all, 2 * n_ok >= n))


def finding_f2(summary: dict[str, Any]) -> Finding:
    claim = "argmax sr(W) equals the best depth in 6/6 (source, backbone) configurations; argmax sr(H) in 4/6"
    preds = [p for p in summary.get("predictions", []) if p.get("empirical_k") is not None]
    if not preds:
        return Finding("F2", claim, "no stable-rank profiles with sweep results", "not measured")
    nw = sum(bool(p["w_agrees"]) for p in preds)
    nh = sum(bool(p["h_agrees"]) for p in preds)
    n = len(preds)
    detail = "; ".join(f"{p['source']}/{p['backbone']}: sr(W)→{p['k_w']}, sr(H)→{p['k_h']}, best {p['empirical_k']}" for p in preds)
    measured = f"argmax sr(W) = best depth in {nw}/{n}, argmax sr(H) in {nh}/{n} ({detail})."
    return Finding("F2", claim, measured, _verdict(nw == n and nh <= nw, 2 * nw >= n))


def _depth_means(summary: dict[str, Any], backbone: str) -> dict[str, list[float]]:
    """Depth tag → per-(source, target) mean PSNRs for one backbone."""
    out: dict[str, list[float]] = defaultdict(list)
    for key, st in summary.get("stats", {}).items():
        b, _s, _t, d = key.split("|")
        if b == backbone and not _nan(st.get("psnr")):
            out[d].append(float(st["psnr"]))
    return out


def finding_f3(summary: dict[str, Any]) -> Finding:
    claim = ("freezing at k* matches or beats no-freeze on average (SIREN 43.80 vs 40.69 dB, FFMLP 35.91 vs 34.66 dB); "
             "SIREN plateaus for k ≤ 2 and collapses at k = 4; FFMLP loses ~4–5 dB per extra frozen layer")
    kw = {(p["source"], p["backbone"]): p["k_w"] for p in summary.get("predictions", [])}
    stats = summary.get("stats", {})
    per_b: dict[str, tuple[list[float], list[float]]] = {}
    for r in summary.get("table1", []):
        k = kw.get((r["source"], r["backbone"]))
        st = stats.get(f"{r['backbone']}|{r['source']}|{r['target']}|{k}") if k is not None else None
        if st is None or _nan(st.get("psnr")) or _nan(r.get("none")):
            continue
        at_k, none = per_b.setdefault(r["backbone"], ([], []))
        at_k.append(float(st["psnr"]))
        none.append(float(r["none"]))
    if not per_b:
        return Finding("F3", claim, "no freeze-sweep results with both k* and no-freeze", "not measured")
    parts, oks = [], []
    for b, (at_k, none) in per_b.items():
        mk, mn = float(np.mean(at_k)), float(np.mean(none))
        ok = mk >= mn - MATCH_TOL_DB
        oks.append(ok)
        ref = PAPER_F3.get(b)
        parts.append(f"{b}: k* {mk:.2f} vs no-freeze {mn:.2f} dB (gain {mk - mn:+.2f} dB over {len(at_k)} pairs"
                     + (f"; paper {ref[0] - ref[1]:+.2f} dB" if ref else "") + ")")
        dm = {d: float(np.mean(v)) for d, v in _depth_means(summary, b).items() if v}
        ks = sorted(int(d) for d in dm if d.isdigit())
        if b == "siren" and ks:
            low = [dm[str(k)] for k in ks if k <= 2]
            last = ks[-1]
            plateau = max(low) - min(low) if low else math.nan
            coll = dm.get("1", math.nan) - dm[str(last)] if "1" in dm else math.nan
            parts.append(f"siren spread over k ≤ 2: {_f(plateau)} dB, drop from k = 1 to k = {last}: {_f(coll)} dB")
        if b == "ffmlp" and len(ks) >= 2:
            slope = float(np.polyfit(ks, [dm[str(k)] for k in ks], 1)[0])
            parts.append(f"ffmlp PSNR change per extra frozen layer: {slope:+.2f} dB")
    return Finding("F3", claim, "; ".join(parts) + ".", _verdict(all(oks), any(oks)))


# ------------------------------------------------------------------------------------------- F4–F5
def _backbone_of(row: dict[str, Any], cond_bb: dict[str, str]) -> str | None:
    b = row.get("backbone") or cond_bb.get(str(row.get("condition")))
    if b:
        return str(b)
    m = re.search(r"(siren|ffmlp)", str(row.get("condition", "")))
    return m.group(1) if m else None


def finding_f4(sae_rows: Sequence[dict[str, Any]]) -> Finding:
    claim = "SIREN atoms are localised (low ρ); FFMLP atoms from layer 1 on are image-spanning (high ρ), with more dead atoms"
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"rho": [], "dead": []})
    for r in sae_rows:
        b = _backbone_of(r, {})
        if b and int(r.get("layer", 0)) >= 1:
            if not _nan(r.get("rho")):
                acc[b]["rho"].append(float(r["rho"]))
            if not _nan(r.get("dead_pct")):
                acc[b]["dead"].append(float(r["dead_pct"]))
    if not (acc["siren"]["rho"] and acc["ffmlp"]["rho"]):
        have = ", ".join(b for b in acc if acc[b]["rho"]) or "none"
        return Finding("F4", claim, f"needs SAEs on layers ≥ 1 of both backbones (have: {have})", "not measured")
    rs, rf = float(np.mean(acc["siren"]["rho"])), float(np.mean(acc["ffmlp"]["rho"]))
    ds, df = float(np.mean(acc["siren"]["dead"] or [math.nan])), float(np.mean(acc["ffmlp"]["dead"] or [math.nan]))
    rho_ok, dead_ok = rs < rf, (not _nan(ds) and not _nan(df) and df > ds)
    measured = (f"layers ≥ 1, mean over SAEs: ρ SIREN {rs:.3f} vs FFMLP {rf:.3f} ({len(acc['siren']['rho'])} and "
                f"{len(acc['ffmlp']['rho'])} SAEs); dead atoms SIREN {_f(ds, 1)} % vs FFMLP {_f(df, 1)} %.")
    return Finding("F4", claim, measured, _verdict(rho_ok and dead_ok, rho_ok or dead_ok))


def finding_f5(abl_rows: Sequence[dict[str, Any]], sae_rows: Sequence[dict[str, Any]] = ()) -> Finding:
    claim = "one FFMLP atom can drop PSNR by ~10 dB image-wide; SIREN ablation errors stay inside the atom's region"
    cond_bb = {str(r.get("condition")): str(r.get("backbone")) for r in sae_rows if r.get("backbone")}
    by_b: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in abl_rows:
        b = _backbone_of(r, cond_bb)
        if b and not _nan(r.get("psnr_drop")):
            by_b[b].append(r)
    if not (by_b["siren"] and by_b["ffmlp"]):
        have = ", ".join(b for b in by_b if by_b[b]) or "none"
        return Finding("F5", claim, f"needs ablations on both backbones (have: {have})", "not measured")
    parts, tops, regions = [], {}, {}
    for b in ("siren", "ffmlp"):
        rs = by_b[b]
        top = max(rs, key=lambda r: float(r["psnr_drop"]))
        tops[b] = float(top["psnr_drop"])
        regs = [float(r["region_frac"]) for r in rs if not _nan(r.get("region_frac"))]
        regions[b] = float(np.mean(regs)) if regs else math.nan
        locs = [float(r["locality"]) for r in rs if not _nan(r.get("locality"))]
        parts.append(f"{b}: largest drop {tops[b]:.2f} dB (atom {top.get('atom')} at layer {top.get('layer')} of {top.get('condition')}, "
                     f"firing region {_f(100 * float(top['region_frac']) if not _nan(top.get('region_frac')) else math.nan, 1)} % of the image); "
                     f"over its {len(rs)} ablated atoms mean firing region {_f(100 * regions[b], 1)} %, mean locality {_f(np.mean(locs) if locs else math.nan, 3)}")
    drop_ok = tops["ffmlp"] > tops["siren"]
    reg_ok = not _nan(regions["siren"]) and not _nan(regions["ffmlp"]) and regions["siren"] < regions["ffmlp"]
    return Finding("F5", claim, "; ".join(parts) + ".", _verdict(drop_ok and reg_ok, drop_ok or reg_ok))


def findings(summary: dict[str, Any] | None, sae_rows: Sequence[dict[str, Any]], abl_rows: Sequence[dict[str, Any]]) -> list[Finding]:
    """F1–F5 from the results (summary None = no sweep results)."""
    s = summary or {}
    return [finding_f1(s), finding_f2(s), finding_f3(s), finding_f4(sae_rows), finding_f5(abl_rows, sae_rows)]


def findings_markdown(fs: Sequence[Finding]) -> str:
    lines = ["| finding | paper | this run | verdict |", "|---|---|---|---|"]
    lines += [f"| {f.id} | {f.claim} | {f.measured} | **{f.verdict}** |" for f in fs]
    return "\n".join(lines) + "\n"


def findings_text(fs: Sequence[Finding]) -> str:
    """Plain text for the terminal."""
    return "\n".join(f"{f.id} [{f.verdict}] {f.measured}\n    paper: {f.claim}" for f in fs)


# ------------------------------------------------------------------------------------------- tables
def sae_table(sae_rows: Sequence[dict[str, Any]]) -> str:
    rows = sorted(sae_rows, key=lambda r: (str(r.get("condition")), int(r.get("layer", 0)), r.get("n", 0), r.get("k", 0)))
    out = ["| condition | image | layer | n | k | R² | PSNR with ĥ (dB) | INR PSNR (dB) | alive % | dead % | ρ |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r.get('condition')} | {r.get('image', '')} | {r.get('layer')} | {r.get('n')} | {r.get('k')} | {_f(r.get('r2'), 3)} | "
                   f"{_f(r.get('psnr_sub'))} | {_f(r.get('psnr_inr'))} | {_f(r.get('alive_pct'), 1)} | {_f(r.get('dead_pct'), 1)} | {_f(r.get('rho'), 3)} |")
    return "\n".join(out) + "\n"


def ablation_table(abl_rows: Sequence[dict[str, Any]], top: int = 12) -> str:
    rows = sorted((r for r in abl_rows if not _nan(r.get("psnr_drop"))), key=lambda r: -float(r["psnr_drop"]))[:top]
    out = ["| condition | layer | atom | PSNR drop (dB) | firing region % | locality |", "|---|---|---|---|---|---|"]
    for r in rows:
        reg = r.get("region_frac")
        out.append(f"| {r.get('condition')} | {r.get('layer')} | {r.get('atom')} | {_f(r.get('psnr_drop'))} | "
                   f"{_f(100 * float(reg) if not _nan(reg) else math.nan, 1)} | {_f(r.get('locality'), 3)} |")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------- markdown → html
def md_to_html(md: str, title: str = "inrlens report") -> str:
    """HTML for the Markdown subset this report uses: headings, paragraphs, lists, pipe tables, images, links,
    **bold**, `code` and fenced code blocks. Self-contained (inline CSS), offline."""
    def inline(s: str) -> str:
        s = html.escape(s, quote=False)
        s = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", lambda m: f'<img src="{html.escape(m.group(2))}" alt="{m.group(1)}">', s)
        s = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>', s)
        s = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", s)

    out, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        ln = lines[i]
        if ln.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append("<pre>" + html.escape("\n".join(lines[i + 1 : j])) + "</pre>")
            i = j + 1
        elif m := re.match(r"(#{1,6}) (.*)", ln):
            n = len(m.group(1))
            out.append(f"<h{n}>{inline(m.group(2))}</h{n}>")
            i += 1
        elif ln.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in lines[i:j]]
            body = [r for r in cells[1:] if not all(set(c) <= set("-: ") for c in r)]
            t = ["<table><thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in cells[0]) + "</tr></thead><tbody>"]
            t += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in body]
            out.append("".join(t) + "</tbody></table>")
            i = j
        elif ln.startswith(("- ", "* ")):
            j = i
            while j < len(lines) and lines[j].startswith(("- ", "* ")):
                j += 1
            out.append("<ul>" + "".join(f"<li>{inline(x[2:])}</li>" for x in lines[i:j]) + "</ul>")
            i = j
        elif not ln.strip():
            i += 1
        else:
            j = i
            while j < len(lines) and lines[j].strip() and not lines[j].startswith(("#", "|", "- ", "* ", "```")):
                j += 1
            out.append("<p>" + inline(" ".join(lines[i:j])) + "</p>")
            i = j
    css = ("body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#1d1d1f}"
           "table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}"
           "th{background:#f2f2f4}img{max-width:100%}pre{background:#f6f6f8;padding:8px;overflow-x:auto}code{background:#f2f2f4}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{css}</style></head>'
            f"<body>\n" + "\n".join(out) + "\n</body></html>\n")


# ------------------------------------------------------------------------------------------- document
def _rel(p: Path, root: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(p)


def versions(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Library versions, device and precision as recorded in the result rows (first row that has them)."""
    for r in rows:
        rt = r.get("runtime")
        if isinstance(rt, dict):
            return rt
    return {}


def build(run_dir: Path, meta: dict[str, Any], sweep_rows: Sequence[dict[str, Any]], sae_rows: Sequence[dict[str, Any]],
          abl_rows: Sequence[dict[str, Any]], figures: Sequence[Path] = (), sae_figures: Sequence[Path] = (), galleries: Sequence[tuple[str, Path]] = (),
          ablation_figs: Sequence[tuple[str, Path]] = (), atlas: Path | None = None) -> tuple[str, list[Finding]]:
    """The report as Markdown (and the findings it states). Paths are written relative to run_dir."""
    from . import tables

    run_dir = Path(run_dir)
    summary = tables.summarise(sweep_rows) if sweep_rows else None
    if summary is not None and not summary["table1"]:
        summary = None
    fs = findings(summary, sae_rows, abl_rows)
    md = [f"# inrlens reproduction report — preset `{meta.get('preset', '?')}`", ""]
    md += ["## Setup", ""]
    for k, v in meta.items():
        if not isinstance(v, (dict, list)):
            md.append(f"- {k}: `{v}`")
    rt = versions([*sweep_rows, *sae_rows])
    if rt:
        md.append("- recorded runtime: " + ", ".join(f"{k} `{v}`" for k, v in rt.items()))
    md += ["", "## Findings (paper F1–F5 vs this run)", "",
           "Each row is computed from this run's result files; verdict rules are in `inrlens.report.document`.", "",
           findings_markdown(fs)]
    md += ["## Freeze sweep", ""]
    if summary is None:
        md += ["No freeze-sweep results in this run.", ""]
    else:
        md += [tables.table1(summary), "", tables.predictions_table(summary), ""]
        for p in figures:
            md += [f"![{Path(p).stem}]({_rel(p, run_dir)})", ""]
        md += ["### Per-combination tables", "", tables.combo_tables(summary), ""]
    md += ["## Sparse autoencoders", ""]
    md += [sae_table(sae_rows), ""] if sae_rows else ["No SAE results in this run.", ""]
    for p in sae_figures:
        md += [f"![{Path(p).stem}]({_rel(p, run_dir)})", ""]
    for name, p in galleries:
        md += [f"![{name}]({_rel(p, run_dir)})", ""]
    md += ["## Ablations", ""]
    md += [ablation_table(abl_rows), ""] if abl_rows else ["No ablation results in this run.", ""]
    for name, p in ablation_figs:
        md += [f"![{name}]({_rel(p, run_dir)})", ""]
    if atlas is not None:
        md += ["## Atom atlas", "", f"Browse every condition → layer → atom: [{_rel(atlas, run_dir)}]({_rel(atlas, run_dir)})", ""]
    return "\n".join(md), fs


def write(run_dir: Path, md: str, title: str = "inrlens report") -> tuple[Path, Path]:
    """Write run_dir/report.md and run_dir/report.html (atomically)."""
    from ..store import RunFolder, atomic_write_text

    run = RunFolder(run_dir)
    p_md, p_html = run.report_md, run.report_html
    atomic_write_text(p_md, md)  # atomic_write gives the umask's mode (a page to open, not a private temp file)
    atomic_write_text(p_html, md_to_html(md, title))
    return p_md, p_html


__all__ = ["Finding", "findings", "finding_f1", "finding_f2", "finding_f3", "finding_f4", "finding_f5", "findings_markdown",
           "findings_text", "sae_table", "ablation_table", "md_to_html", "build", "write"]
