"""The study report of a ``reproduce`` run: ``report.md`` and ``report.html``.

Everything here is read from result rows; nothing is recomputed from models and no number is written as fixed
text. The findings section states, for each of the paper's findings F1–F5, what this run measured — with 95%
intervals and the number of fits behind them — and a verdict decided by the rules below.

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

Verdicts (:mod:`inrlens.stats`)
-------------------------------
A difference is judged by its 95% Student-t interval: "agrees" only when the interval excludes the other side
of the claim, "disagrees" only when it excludes the claim, otherwise "inconclusive (n = …)" — a difference
smaller than its uncertainty is never an agreement. Verdicts: 'agrees', 'partly agrees', 'disagrees',
'inconclusive (n = …)' or 'not measured'.

* F1 best depth k = 1 (SIREN), 0 (FFMLP) for every source → target. Per pair, the best-k set holds the depths
  whose paired difference (matched on test image and seed) to the best depth is not significantly negative;
  the paper's k agrees when it is inside the set, disagrees when it is significantly worse than the best, and
  is undecided when every measured depth is inside the set. Over pairs (:func:`inrlens.stats.count_verdict`):
  all agree → agrees; none disagrees → inconclusive; at least half agree → partly agrees; at least half
  disagree → disagrees; else inconclusive.
* F2 argmax sr(W) = empirical best depth in 6/6 (source, backbone) configurations, argmax sr(H) in 4/6. The
  same rule per configuration, with the best-k set over all targets (paired per target, combined over targets);
  the verdict is the count rule on argmax sr(W). The counts of the other predictors are reported beside it with
  the same rule: argmax sr(H) uncentred and centred (the paper does not say which it uses) and argmax Δsr,
  Δsr = sr(W) − sr(W) at initialisation (predictors a cohort row does not record are said to be so). Which
  sr(H) the paper's numbers are closest to: its 4/6 agreement rate against each definition's rate, and, for
  SIREN cohorts of the paper's width 256 only, its sr(H₁) ≈ 32 (:data:`PAPER_SR_H`) against this run's
  uncentred and centred sr(H₁).
* F3 freezing at the predicted k* = argmax sr(W) matches or beats no-freeze on average (SIREN 43.80 vs 40.69 dB,
  FFMLP 35.91 vs 34.66 dB). Per backbone, the mean over pairs of the paired gain k* − no-freeze with its
  interval (pairs held fixed: :func:`inrlens.stats.stratified_ci`); "matches" = gain > −0.5 dB, so a backbone
  agrees when the interval's low end is above −0.5 dB and disagrees when its high end is below. Also reported:
  SIREN's spread over k ≤ 2 and its drop from k = 1 to k = L−1 (paired interval: plateau, then collapse), and
  FFMLP's mean PSNR change per extra frozen layer (least squares slope over k; paper ≈ −4 to −5 dB).
* F4 SIREN atoms localised, FFMLP atoms image-spanning with more dead atoms: over SAEs of layers ≥ 1, Welch
  intervals of FFMLP − SIREN for the mean ρ and the mean dead %; each part agrees when its interval is above 0.
* F5 one FFMLP atom can drop PSNR by ~10 dB image-wide while SIREN ablation errors stay local: Welch intervals
  of FFMLP − SIREN over ablated atoms for the mean PSNR drop and the mean firing-region fraction; each part
  agrees when its interval is above 0. The largest drop per backbone is reported beside them. (The error of an
  ablation is confined to the atom's support by construction — an INR is pointwise in x — so the region
  fraction is the measure of how local it is.)

Parts of one finding, or backbones of F3, combine as: all agree → agrees; all disagree → disagrees; some agree
and some disagree → partly agrees; some disagree and the rest inconclusive → disagrees; otherwise the first
part's "inconclusive (n = …)".
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

from .. import stats as S

PAPER_K = {"siren": 1, "ffmlp": 0}
"""The paper's best freeze depth per backbone [paper]."""
PAPER_F3 = {"siren": (43.80, 40.69), "ffmlp": (35.91, 34.66)}
"""The paper's mean PSNR (dB) at k* and with no freeze, per backbone [paper]."""
PAPER_F2 = {"w": (6, 6), "h": (4, 6)}
"""The paper's F2 counts: argmax sr(W) and argmax sr(H) equal the best depth in (hits, configurations) [paper]."""
PAPER_SR_H = {("siren", 256): {1: 32.0}}
"""The paper's per-layer activation stable ranks that the report compares with, per (backbone, width):
{layer: sr(H_ℓ)} — SIREN sr(H₁) ≈ 32 at width 256 [paper]. No others are used."""
MATCH_TOL_DB = 0.5
"""F3: k* "matches" no-freeze when its gain is above −MATCH_TOL_DB dB."""


@dataclass
class Finding:
    """One of the paper's findings and what this run measured for it."""

    id: str
    claim: str
    """What the paper reports."""
    measured: str
    """The numbers this run measured, with 95% intervals and n, as a sentence."""
    verdict: str
    """'agrees', 'partly agrees', 'disagrees', 'inconclusive (n = …)' or 'not measured'."""


def _nan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _f(x: Any, d: int = 2) -> str:
    return "n/a" if _nan(x) else f"{float(x):.{d}f}"


def _combine(verdicts: Sequence[str]) -> str:
    """One verdict from the verdicts of a finding's parts (rule in the module docstring)."""
    ag = sum(v == "agrees" for v in verdicts)
    dis = sum(v == "disagrees" for v in verdicts)
    if verdicts and ag == len(verdicts):
        return "agrees"
    if verdicts and dis == len(verdicts):
        return "disagrees"
    if ag and dis:
        return "partly agrees"
    if dis:  # some disagree, none agrees, the rest inconclusive
        return "disagrees"
    rest = [v for v in verdicts if v not in ("agrees", "disagrees")]
    return rest[0] if rest else "not measured"


def _kset(ks: Sequence[int]) -> str:
    return "{" + ", ".join(str(k) for k in ks) + "}"


def _depths(summary: dict[str, Any], b: str, s: str, t: str) -> list[int]:
    """Freeze depths of one pair that have at least one ok fit."""
    pre = f"{b}|{s}|{t}|"
    return sorted(int(k[len(pre):]) for k, v in summary.get("units", {}).items() if k.startswith(pre) and k[len(pre):].isdigit() and v)


# ------------------------------------------------------------------------------------------- F1–F3
def finding_f1(summary: dict[str, Any]) -> Finding:
    claim = "best freeze depth k = 1 for SIREN and k = 0 for FFMLP, for every source and target"
    t1 = [r for r in summary.get("table1", []) if r.get("best_k") is not None and r["backbone"] in PAPER_K]  # the paper's backbones
    if not t1:
        return Finding("F1", claim, "no freeze-sweep results of SIREN or FFMLP", "not measured")
    parts, n_ag, n_dis, n = [], 0, 0, 0
    for b in dict.fromkeys(r["backbone"] for r in t1):
        rs = [r for r in t1 if r["backbone"] == b]
        pk = PAPER_K.get(b)
        st = [S.agreement(pk, {"best": r["best_k"], "set": r.get("best_set", [r["best_k"]])}, _depths(summary, b, r["source"], r["target"]))
              for r in rs]
        hits, dis = st.count("agrees"), st.count("disagrees")
        n_ag, n_dis, n = n_ag + hits, n_dis + dis, n + len(rs)
        ks = ", ".join(f"{r['source']}→{r['target']} k={r['best_k']} set {_kset(r.get('best_set', [r['best_k']]))}" for r in rs)
        parts.append(f"{b}: best k = paper's k = {pk if pk is not None else '?'} in {hits}/{len(rs)} pairs ({ks}) — the paper's k is "
                     f"inside the best-k set in {hits}, significantly worse in {dis}, undecided in {len(rs) - hits - dis}")
    return Finding("F1", claim, "; ".join(parts) + ".", S.count_verdict(n_ag, n_dis, n, "pairs"))


def finding_f2(summary: dict[str, Any]) -> Finding:
    from .tables import PREDICTORS, predictor_counts

    claim = "argmax sr(W) equals the best depth in 6/6 (source, backbone) configurations; argmax sr(H) in 4/6"
    preds = [p for p in summary.get("predictions", []) if p.get("empirical_k") is not None and p["backbone"] in PAPER_K]
    if not preds:
        return Finding("F2", claim, "no stable-rank profiles of SIREN or FFMLP with sweep results", "not measured")
    cnt = predictor_counts(preds)
    n = len(preds)
    short = {"w": "sr(W)", "h": "sr(H)", "hc": "sr(H) centred", "d": "Δsr"}
    have = [tag for tag, _f, _l in PREDICTORS if cnt[tag]["n"]]

    def frac(tag: str) -> str:
        c = cnt[tag]
        return f"{c['agrees']}/{c['n']}" + ("" if c["n"] == n else f" of the {c['n']} configurations whose cohort row records it")

    head = f"argmax sr(W) = best depth in {frac('w')}, argmax sr(H) in {frac('h')}"
    for tag in ("hc", "d"):
        head += f", argmax {short[tag]} in {frac(tag)}" if cnt[tag]["n"] else f", argmax {short[tag]} not recorded"
    worse = ", ".join(f"{short[t]} {cnt[t]['disagrees']}" for t in have)
    und = ", ".join(f"{short[t]} {cnt[t]['undecided']}" for t in have)

    def k(p: dict[str, Any], f: str) -> str:
        return "—" if p.get(f) is None else str(p[f])

    detail = "; ".join(f"{p['source']}/{p['backbone']}: " + ", ".join(f"{short[t]}→{k(p, f)}" for t, f, _l in PREDICTORS)
                       + f", best {p['empirical_k']} set {_kset(p.get('best_set', [p['empirical_k']]))}" for p in preds)
    measured = (f"{head} (inside the best-k set over all targets, 95%; significantly worse: {worse}; undecided: {und}) "
                f"({detail}). {_sr_h_definition(summary.get('predictions', []), cnt)}")
    return Finding("F2", claim, measured, S.count_verdict(cnt["w"]["agrees"], cnt["w"]["disagrees"], n, "configurations"))


def _sr_h_definition(preds: Sequence[dict[str, Any]], cnt: dict[str, dict[str, int]]) -> str:
    """Which sr(H) definition (uncentred or centred) the paper's numbers are closest to, from what this run has:
    the agreement rate against the paper's, and the per-layer values of :data:`PAPER_SR_H` where a cohort of that
    backbone and width exists."""
    hits, total = PAPER_F2["h"]
    parts = []
    if cnt["h"]["n"] and cnt["hc"]["n"]:
        ru, rc = cnt["h"]["agrees"] / cnt["h"]["n"], cnt["hc"]["agrees"] / cnt["hc"]["n"]
        du, dc = abs(ru - hits / total), abs(rc - hits / total)
        closer = "uncentred" if du < dc else ("centred" if dc < du else "neither (equally close)")
        parts.append(f"agreement rate of argmax sr(H): paper {hits}/{total}, uncentred {cnt['h']['agrees']}/{cnt['h']['n']}, "
                     f"centred {cnt['hc']['agrees']}/{cnt['hc']['n']} → closer: {closer}")
    else:
        parts.append("agreement rate: the centred sr(H) is not recorded by this run's cohort rows, so the definitions "
                     "cannot be compared")
    compared = False
    for (b, width), layers in PAPER_SR_H.items():
        for ell, ref in layers.items():
            ps = [p for p in preds if p.get("backbone") == b and p.get("width") == width]
            un = [float(p["sr_h"][ell]) for p in ps if p.get("sr_h") and ell < len(p["sr_h"])]
            ce = [float(p["sr_h_centred"][ell]) for p in ps if p.get("sr_h_centred") and ell < len(p["sr_h_centred"])]
            if not un:
                continue
            compared = True
            mu = float(np.mean(un))
            txt = f"{b} width {width}, sr(H) at layer {ell}: paper ≈ {ref:g}, this run uncentred {mu:.1f}"
            if ce:
                mc = float(np.mean(ce))
                closer = "uncentred" if abs(mu - ref) < abs(mc - ref) else ("centred" if abs(mc - ref) < abs(mu - ref) else "neither")
                txt += f", centred {mc:.1f} (mean over {len(ce)} cohort(s)) → closer: {closer}"
            else:
                txt += f" (mean over {len(un)} cohort(s); centred not recorded)"
            parts.append(txt)
    if not compared:
        names = ", ".join(f"{b} sr(H) at layer {ell} ≈ {v:g} at width {w}" for (b, w), ls in PAPER_SR_H.items() for ell, v in ls.items())
        parts.append(f"per-layer values: this run has no cohort of the width the paper reports them at ({names}), so none "
                     "are compared")
    return "Which sr(H) the paper's numbers are closest to — " + "; ".join(parts) + "."


def _depth_means(summary: dict[str, Any], backbone: str) -> dict[str, list[float]]:
    """Depth tag → per-(source, target) mean PSNRs for one backbone."""
    out: dict[str, list[float]] = defaultdict(list)
    for key, st in summary.get("stats", {}).items():
        b, _s, _t, d = key.split("|")
        if b == backbone and not _nan(st.get("psnr")):
            out[d].append(float(st["psnr"]))
    return out


def _paired_over_pairs(summary: dict[str, Any], backbone: str, a: str, b: str) -> tuple[float, float, float, int]:
    """Depth a − depth b, paired per fit within each (source, target) pair of a backbone, mean over pairs with
    :func:`inrlens.stats.stratified_ci`."""
    U = summary.get("units", {})
    groups = []
    for r in summary.get("table1", []):
        if r["backbone"] == backbone:
            pre = f"{backbone}|{r['source']}|{r['target']}|"
            groups.append(S.pair_diffs(U.get(pre + a, {}), U.get(pre + b, {})))
    return S.stratified_ci(groups)


def finding_f3(summary: dict[str, Any]) -> Finding:
    claim = ("freezing at k* matches or beats no-freeze on average (SIREN 43.80 vs 40.69 dB, FFMLP 35.91 vs 34.66 dB); "
             "SIREN plateaus for k ≤ 2 and collapses at k = 4; FFMLP loses ~4–5 dB per extra frozen layer")
    kw = {(p["source"], p["backbone"]): p["k_w"] for p in summary.get("predictions", [])}
    stats, U = summary.get("stats", {}), summary.get("units", {})
    per_b: dict[str, tuple[list[float], list[float], list[np.ndarray]]] = {}
    for r in summary.get("table1", []):
        if r["backbone"] not in PAPER_K:  # other backbones: section "Beyond the paper"
            continue
        k = kw.get((r["source"], r["backbone"]))
        pre = f"{r['backbone']}|{r['source']}|{r['target']}|"
        st = stats.get(f"{pre}{k}") if k is not None else None
        if st is None or _nan(st.get("psnr")) or _nan(r.get("none")):
            continue
        at_k, none, diffs = per_b.setdefault(r["backbone"], ([], [], []))
        at_k.append(float(st["psnr"]))
        none.append(float(r["none"]))
        diffs.append(S.pair_diffs(U.get(f"{pre}{k}", {}), U.get(f"{pre}none", {})))
    if not per_b:
        return Finding("F3", claim, "no freeze-sweep results with both k* and no-freeze", "not measured")
    parts, vs = [], []
    for b, (at_k, none, diffs) in per_b.items():
        mk, mn = float(np.mean(at_k)), float(np.mean(none))
        m, lo, hi, n = S.stratified_ci(diffs)
        v = S.verdict(lo, hi, True, n=n, threshold=-MATCH_TOL_DB, unit="fits")
        vs.append(v)
        ref = PAPER_F3.get(b)
        parts.append(f"{b}: k* {mk:.2f} vs no-freeze {mn:.2f} dB (gain {mk - mn:+.2f} dB over {len(at_k)} pairs, paired "
                     f"{S.fmt_ci(m, lo, hi, n)} 95% CI over fits matched on image and seed"
                     + (f"; paper {ref[0] - ref[1]:+.2f} dB" if ref else "") + f") → {v} (claim: gain > {-MATCH_TOL_DB:+.1f} dB)")
        dm = {d: float(np.mean(v)) for d, v in _depth_means(summary, b).items() if v}
        ks = sorted(int(d) for d in dm if d.isdigit())
        if b == "siren" and ks:
            low = [dm[str(k)] for k in ks if k <= 2]
            last = ks[-1]
            plateau = max(low) - min(low) if low else math.nan
            coll = dm.get("1", math.nan) - dm[str(last)] if "1" in dm else math.nan
            drop = S.fmt_ci(*_paired_over_pairs(summary, b, "1", str(last))) if "1" in dm else "n/a"
            parts.append(f"siren spread over k ≤ 2: {_f(plateau)} dB, drop from k = 1 to k = {last}: {_f(coll)} dB (paired {drop})")
        if b == "ffmlp" and len(ks) >= 2:
            slope = float(np.polyfit(ks, [dm[str(k)] for k in ks], 1)[0])
            parts.append(f"ffmlp PSNR change per extra frozen layer: {slope:+.2f} dB")
    return Finding("F3", claim, "; ".join(parts) + ".", _combine(vs))


# ------------------------------------------------------------------------------------------- F4–F5
def _backbone_of(row: dict[str, Any], cond_bb: dict[str, str]) -> str | None:
    """A SAE or ablation row's backbone: its field, its condition's (from SAE rows), or the registered backbone its
    condition names (:func:`inrlens.report.tables.backbone_in`)."""
    from .tables import backbone_in

    b = row.get("backbone") or cond_bb.get(str(row.get("condition")))
    if b:
        return str(b)
    b = backbone_in(row.get("condition"))
    if b:
        return b
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
    rho_ci = S.welch_ci(acc["ffmlp"]["rho"], acc["siren"]["rho"])
    dead_ci = S.welch_ci(acc["ffmlp"]["dead"], acc["siren"]["dead"])
    v_rho = S.verdict(rho_ci[1], rho_ci[2], True, n=rho_ci[3], unit="SAEs")
    v_dead = S.verdict(dead_ci[1], dead_ci[2], True, n=dead_ci[3], unit="SAEs")
    measured = (f"layers ≥ 1, mean over SAEs: ρ SIREN {rs:.3f} vs FFMLP {rf:.3f} ({len(acc['siren']['rho'])} and "
                f"{len(acc['ffmlp']['rho'])} SAEs); dead atoms SIREN {_f(ds, 1)} % vs FFMLP {_f(df, 1)} %. FFMLP − SIREN, "
                f"Welch 95% CI: ρ {S.fmt_ci(*rho_ci, d=3)} → {v_rho}; dead % {S.fmt_ci(*dead_ci, d=1)} → {v_dead}.")
    return Finding("F4", claim, measured, _combine([v_rho, v_dead]))


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
    parts, drops, regions = [], {}, {}
    for b in ("siren", "ffmlp"):
        rs = by_b[b]
        top = max(rs, key=lambda r: float(r["psnr_drop"]))
        drops[b] = [float(r["psnr_drop"]) for r in rs]
        regions[b] = [float(r["region_frac"]) for r in rs if not _nan(r.get("region_frac"))]
        reg = float(np.mean(regions[b])) if regions[b] else math.nan
        locs = [float(r["locality"]) for r in rs if not _nan(r.get("locality"))]
        parts.append(f"{b}: largest drop {float(top['psnr_drop']):.2f} dB (atom {top.get('atom')} at layer {top.get('layer')} of {top.get('condition')}, "
                     f"firing region {_f(100 * float(top['region_frac']) if not _nan(top.get('region_frac')) else math.nan, 1)} % of the image); "
                     f"over its {len(rs)} ablated atoms mean firing region {_f(100 * reg, 1)} %, mean drop {np.mean(drops[b]):.2f} dB, "
                     f"mean locality {_f(np.mean(locs) if locs else math.nan, 3)}")
    drop_ci = S.welch_ci(drops["ffmlp"], drops["siren"])
    reg_ci = S.welch_ci([100 * x for x in regions["ffmlp"]], [100 * x for x in regions["siren"]])
    v_drop = S.verdict(drop_ci[1], drop_ci[2], True, n=drop_ci[3], unit="ablated atoms")
    v_reg = S.verdict(reg_ci[1], reg_ci[2], True, n=reg_ci[3], unit="ablated atoms")
    parts.append(f"FFMLP − SIREN, Welch 95% CI: mean drop {S.fmt_ci(*drop_ci)} dB → {v_drop}; mean firing region "
                 f"{S.fmt_ci(*reg_ci, d=1)} % → {v_reg}")
    return Finding("F5", claim, "; ".join(parts) + ".", _combine([v_drop, v_reg]))


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


# ------------------------------------------------------------------------------------------- beyond the paper
PLATEAU_MAX_K = 2
"""The paper's SIREN plateau range, k ≤ 2 [paper]: the per-layer change that tells a plateau from a loss per
frozen layer is measured over the depths k ≤ 2 below L−1 (:func:`backbone_measures`)."""
PAPER_BACKBONES = tuple(PAPER_K)
"""The backbones the paper's findings are about; every other one is reported under "Beyond the paper"."""
_LIKE = {"freeze": {"SIREN": "SIREN's plateau", "FFMLP": "FFMLP's loss per frozen layer"},
         "atoms": {"SIREN": "SIREN's localised atoms", "FFMLP": "FFMLP's image-spanning atoms",
                   "neither": "neither (between SIREN's and FFMLP's)"},
         "ablations": {"SIREN": "SIREN's local errors", "FFMLP": "FFMLP's image-wide errors",
                       "neither": "neither (between SIREN's and FFMLP's)"}}

BEYOND_TEXT = (
    "The paper's findings are about SIREN and FFMLP (above). For every other backbone in this run, the same "
    "measurements with the same intervals: the best-k set per source → target pair and over all pairs (paired per fit, "
    "pairs as strata), the paired gain of k* = argmax sr(W) over no freeze (as F3; matches when above "
    f"−{MATCH_TOL_DB:g} dB), the PSNR change per extra frozen layer over k ≤ {PLATEAU_MAX_K} below k = L−1 (a "
    "least-squares slope per fit over those depths, averaged over pairs with a stratified interval), the drop from k = 1 "
    f"to k = L−1 (collapses when the interval is below −{MATCH_TOL_DB:g} dB), the stable-rank predictors' agreement "
    "counts (as F2), and, where SAE and ablation rows exist, ρ and dead % per layer and the ablation drops and firing "
    "regions with Welch intervals against SIREN and FFMLP (as F4, F5). Which pattern a backbone resembles is decided by "
    f"the intervals alone: freeze depth — SIREN's plateau when the per-layer change is above −{MATCH_TOL_DB:g} dB, "
    f"FFMLP's loss per frozen layer when it is below −{MATCH_TOL_DB:g} dB; atoms (ρ, layers ≥ 1) and ablations (firing "
    "region) — SIREN's when significantly below FFMLP's and not above SIREN's, FFMLP's when significantly above SIREN's "
    "and not below FFMLP's, neither when between both; a backbone resembles SIREN or FFMLP overall when every decided "
    "part says so, neither when they differ, and is undecided when no part is decided. SIREN and FFMLP are listed in "
    "the table as measured in this run, for reference."
)


def _pair_label(r: dict[str, Any]) -> str:
    return f"{r['source']}{' (noise)' if r.get('noise') else ''}→{r['target']}"


def _slope_ci(summary: dict[str, Any], b: str, ks: Sequence[int]) -> tuple[float, float, float, int]:
    """Least-squares slope of PSNR over the depths ``ks``, per fit (units with every depth), averaged over the
    backbone's pairs with :func:`inrlens.stats.stratified_ci`."""
    U = summary.get("units", {})
    kk = np.asarray(ks, dtype=float)
    kc = kk - kk.mean()
    den = float((kc * kc).sum())
    groups = []
    for r in summary.get("table1", []):
        if r["backbone"] != b:
            continue
        pre = f"{b}|{r['source']}|{r['target']}|"
        vals = [U.get(pre + str(k), {}) for k in ks]
        units = [u for u in vals[0] if all(u in v for v in vals[1:])]
        groups.append([float(np.dot(kc, [v[u] for v in vals])) / den for u in units])
    return S.stratified_ci(groups)


def _pooled_best(summary: dict[str, Any], b: str) -> dict[str, Any]:
    """The best depth and best-k set of a backbone over all its pairs: per-fit PSNRs keyed (pair, image|seed),
    pairs as strata (:func:`inrlens.stats.best_set`)."""
    U = summary.get("units", {})
    values: dict[int, dict[tuple[str, str, str], float]] = defaultdict(dict)
    for r in summary.get("table1", []):
        if r["backbone"] == b:
            pre = f"{b}|{r['source']}|{r['target']}|"
            for d in _depths(summary, b, r["source"], r["target"]):
                values[d].update({(r["source"], r["target"], u): v for u, v in U.get(pre + str(d), {}).items()})
    return S.best_set({d: values[d] for d in sorted(values)}, stratum=lambda u: u[:2])


def _word(v: str, yes: str, no: str) -> str:
    return {"agrees": yes, "disagrees": no}.get(v, v)


def _side(ci_siren: tuple | None, ci_ffmlp: tuple | None, unit: str) -> str:
    """'SIREN', 'FFMLP', 'neither', 'inconclusive (n = …)' or 'not compared' from the Welch intervals of this
    backbone − SIREN and this backbone − FFMLP (rule in :data:`BEYOND_TEXT`)."""
    if ci_siren is None or ci_ffmlp is None:
        missing = " and ".join(x for x, c in (("SIREN", ci_siren), ("FFMLP", ci_ffmlp)) if c is None)
        return f"not compared (no {missing} rows)"
    above_s = S.verdict(ci_siren[1], ci_siren[2], True, n=ci_siren[3]) == "agrees"
    below_f = S.verdict(ci_ffmlp[1], ci_ffmlp[2], False, n=ci_ffmlp[3]) == "agrees"
    if below_f and not above_s:
        return "SIREN"
    if above_s and not below_f:
        return "FFMLP"
    if above_s and below_f:
        return "neither"
    return f"inconclusive (n = {ci_siren[3]} and {ci_ffmlp[3]} {unit} vs SIREN and FFMLP)"


def _sae_by_backbone(sae_rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in sae_rows:
        b = _backbone_of(r, {})
        if b:
            out[b].append(r)
    return out


def _vals(rows: Iterable[dict[str, Any]], field: str, scale: float = 1.0, min_layer: int = 0) -> list[float]:
    return [scale * float(r[field]) for r in rows if not _nan(r.get(field)) and int(r.get("layer", 0)) >= min_layer]


def backbone_measures(summary: dict[str, Any] | None, sae_rows: Sequence[dict[str, Any]], abl_rows: Sequence[dict[str, Any]],
                      b: str) -> dict[str, Any]:
    """Every measurement of the "Beyond the paper" section for one backbone (rules in :data:`BEYOND_TEXT`), as a
    dict of numbers, intervals ``(mean, lo, hi, n)`` and words; ``like`` says which paper pattern it resembles
    per part (freeze, atoms, ablations) and ``resembles`` overall."""
    from .tables import PREDICTORS, predictor_counts

    s = summary or {}
    t1 = [r for r in s.get("table1", []) if r["backbone"] == b and r.get("best_k") is not None]
    m: dict[str, Any] = {"backbone": b, "pairs": [(_pair_label(r), r.get("best_set", [r["best_k"]])) for r in t1]}
    nan4 = (math.nan, math.nan, math.nan, 0)
    like: dict[str, str] = {}
    # best-k sets, gain of k*, per-layer change, collapse
    bs = _pooled_best(s, b) if t1 else {"best": None, "set": [], "diffs": {}}
    m["best_k"], m["best_set"] = bs["best"], bs["set"]
    kw = {p["source"]: p.get("k_w") for p in s.get("predictions", []) if p["backbone"] == b}
    U = s.get("units", {})
    diffs = []
    for r in t1:
        k = kw.get(r["source"])
        pre = f"{b}|{r['source']}|{r['target']}|"
        if k is not None and U.get(pre + str(k)) and U.get(pre + "none"):
            diffs.append(S.pair_diffs(U[pre + str(k)], U[pre + "none"]))
    m["gain"] = S.stratified_ci(diffs) if diffs else nan4
    m["gain_word"] = (_word(S.verdict(m["gain"][1], m["gain"][2], True, n=m["gain"][3], threshold=-MATCH_TOL_DB, unit="fits"),
                            "matches or beats no freeze", "worse than no freeze") if diffs else "not measured")
    common = sorted(set.intersection(*(set(_depths(s, b, r["source"], r["target"])) for r in t1))) if t1 else []
    last = common[-1] if common else None
    ks = [k for k in common if k <= PLATEAU_MAX_K and k < (last or 0)]
    if len(ks) < 2:
        ks = [k for k in common if k <= PLATEAU_MAX_K]
    m["slope_ks"] = ks if len(ks) >= 2 else []
    m["slope"] = _slope_ci(s, b, ks) if len(ks) >= 2 else nan4
    if m["slope_ks"]:
        v = S.verdict(m["slope"][1], m["slope"][2], True, n=m["slope"][3], threshold=-MATCH_TOL_DB, unit="fits")
        like["freeze"] = {"agrees": "SIREN", "disagrees": "FFMLP"}.get(v, v)
    else:
        like["freeze"] = "not measured"
    m["last"] = last
    if last is not None and last >= 2 and 1 in common:
        m["collapse"] = _paired_over_pairs(s, b, str(last), "1")
        m["collapse_word"] = _word(S.verdict(m["collapse"][1], m["collapse"][2], False, n=m["collapse"][3], threshold=-MATCH_TOL_DB,
                                             unit="fits"), "collapses", "no collapse")
    else:
        m["collapse"], m["collapse_word"] = nan4, "not measured"
    preds = [p for p in s.get("predictions", []) if p["backbone"] == b and p.get("empirical_k") is not None]
    m["n_configs"] = len(preds)
    m["predictors"] = predictor_counts(preds)
    m["predictor_labels"] = {tag: label for tag, _f, label in PREDICTORS}
    # SAEs (as F4: layers ≥ 1 for the means and intervals; every layer in the per-layer list)
    sae = _sae_by_backbone(sae_rows)
    mine = sae.get(b, [])
    per_layer = {}
    for ell in sorted({int(r.get("layer", 0)) for r in mine}):
        rs = [r for r in mine if int(r.get("layer", 0)) == ell]
        rho, dead = _vals(rs, "rho"), _vals(rs, "dead_pct")
        per_layer[ell] = (float(np.mean(rho)) if rho else math.nan, float(np.mean(dead)) if dead else math.nan, len(rs))
    m["sae_layers"] = per_layer
    rho, dead = _vals(mine, "rho", min_layer=1), _vals(mine, "dead_pct", min_layer=1)
    m["rho"], m["dead"], m["n_sae"] = (float(np.mean(rho)) if rho else math.nan), (float(np.mean(dead)) if dead else math.nan), len(rho)
    refs = {ref: (_vals(sae.get(ref, []), "rho", min_layer=1), _vals(sae.get(ref, []), "dead_pct", min_layer=1)) for ref in PAPER_BACKBONES}
    m["rho_vs"] = {ref: S.welch_ci(rho, rv[0]) for ref, rv in refs.items() if rv[0] and b != ref}
    m["dead_vs"] = {ref: S.welch_ci(dead, rv[1]) for ref, rv in refs.items() if rv[1] and b != ref}
    like["atoms"] = ("not measured" if not rho else "reference" if b in PAPER_BACKBONES
                     else _side(m["rho_vs"].get("siren"), m["rho_vs"].get("ffmlp"), "SAEs"))
    # ablations (as F5)
    cond_bb = {str(r.get("condition")): str(r.get("backbone")) for r in sae_rows if r.get("backbone")}
    abl: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in abl_rows:
        bb = _backbone_of(r, cond_bb)
        if bb and not _nan(r.get("psnr_drop")):
            abl[bb].append(r)
    mine_a = abl.get(b, [])
    m["n_abl"] = len(mine_a)
    drops, regs = _vals(mine_a, "psnr_drop"), _vals(mine_a, "region_frac", 100.0)
    m["drop"] = float(np.mean(drops)) if drops else math.nan
    m["drop_max"] = max(drops) if drops else math.nan
    m["region"] = float(np.mean(regs)) if regs else math.nan
    locs = _vals(mine_a, "locality")
    m["locality"] = float(np.mean(locs)) if locs else math.nan
    m["drop_vs"] = {ref: S.welch_ci(drops, _vals(abl.get(ref, []), "psnr_drop")) for ref in PAPER_BACKBONES if abl.get(ref) and b != ref}
    m["region_vs"] = {ref: S.welch_ci(regs, _vals(abl.get(ref, []), "region_frac", 100.0)) for ref in PAPER_BACKBONES
                      if abl.get(ref) and b != ref}
    like["ablations"] = ("not measured" if not regs else "reference" if b in PAPER_BACKBONES
                         else _side(m["region_vs"].get("siren"), m["region_vs"].get("ffmlp"), "ablated atoms"))
    m["like"] = like
    decided = [v for v in like.values() if v in ("SIREN", "FFMLP", "neither")]
    if not decided:
        m["resembles"] = "undecided"
    elif all(v == "SIREN" for v in decided):
        m["resembles"] = "SIREN"
    elif all(v == "FFMLP" for v in decided):
        m["resembles"] = "FFMLP"
    else:
        m["resembles"] = "neither"
    return m


def beyond_measures(summary: dict[str, Any] | None, sae_rows: Sequence[dict[str, Any]],
                    abl_rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`backbone_measures` for every backbone with sweep, SAE or ablation rows, in registry order."""
    from .tables import backbone_order

    cond_bb = {str(r.get("condition")): str(r.get("backbone")) for r in sae_rows if r.get("backbone")}
    names = set((summary or {}).get("backbones") or []) | {r["backbone"] for r in (summary or {}).get("table1", [])}
    names |= {b for r in sae_rows if (b := _backbone_of(r, {}))} | {b for r in abl_rows if (b := _backbone_of(r, cond_bb))}
    return [backbone_measures(summary, sae_rows, abl_rows, b) for b in sorted(names, key=lambda b: (backbone_order(b), b))]


def _ci_s(ci: tuple, d: int = 2) -> str:
    return S.fmt_ci(*ci, d=d)


def _like_phrase(part: str, v: str) -> str:
    return _LIKE[part].get(v, v)


def resembles_line(m: dict[str, Any]) -> str:
    """The closing line of one backbone: which of the paper's patterns it resembles, per part and overall."""
    parts = "; ".join(f"{name} — {_like_phrase(part, m['like'][part])}" for part, name in
                      (("freeze", "freeze depth"), ("atoms", "atoms"), ("ablations", "ablations")))
    overall = {"SIREN": "resembles SIREN", "FFMLP": "resembles FFMLP", "neither": "neither (its decided parts differ)",
               "undecided": "undecided (no part decided)"}[m["resembles"]]
    return f"{m['backbone']}: {parts} → overall: {overall}."


def backbone_text(m: dict[str, Any]) -> list[str]:
    """Markdown lines stating one backbone's measurements (a heading, a list, the closing line)."""
    b = m["backbone"]
    out = [f"### {b}", ""]
    if m["pairs"]:
        pairs = ", ".join(f"{lab} {_kset(st)}" for lab, st in m["pairs"])
        out.append(f"- best k: per pair {pairs}; over all pairs best k = {m['best_k']}, best k ∈ {_kset(m['best_set'])}")
        out.append(f"- gain of k* = argmax sr(W) over no freeze: {_ci_s(m['gain'])} dB → {m['gain_word']}")
        if m["slope_ks"]:
            out.append(f"- PSNR change per extra frozen layer over k ∈ {_kset(m['slope_ks'])}: {_ci_s(m['slope'])} dB → "
                       f"{_like_phrase('freeze', m['like']['freeze'])}")
        else:
            out.append("- PSNR change per extra frozen layer: not measured (fewer than two freeze depths)")
        if m["collapse_word"] != "not measured":
            out.append(f"- collapse at k = L−1 = {m['last']}: PSNR(k = {m['last']}) − PSNR(k = 1) = {_ci_s(m['collapse'])} dB → "
                       f"{m['collapse_word']}")
        else:
            out.append("- collapse at k = L−1: not measured (needs k = 1 and a deeper k in every pair)")
        if m["n_configs"]:
            from .tables import count_phrase

            out.append("- stable-rank predictors: " + "; ".join(count_phrase(m["predictor_labels"][tag], c, m["n_configs"])
                                                               for tag, c in m["predictors"].items()))
        else:
            out.append("- stable-rank predictors: no cohort rows with sweep results")
    else:
        out.append("- freeze sweep: no results for this backbone")
    if m["sae_layers"]:
        layers = ", ".join(f"layer {ell}: ρ {_f(r, 3)}, dead {_f(d, 1)} % ({n} SAE{'s' if n != 1 else ''})"
                           for ell, (r, d, n) in m["sae_layers"].items())
        vs = "; ".join(f"{b} − {ref.upper()}: ρ {_ci_s(m['rho_vs'][ref], 3)}"
                       + (f", dead % {_ci_s(m['dead_vs'][ref], 1)}" if ref in m["dead_vs"] else "")
                       for ref in PAPER_BACKBONES if ref in m["rho_vs"])
        out.append(f"- SAEs: {layers}; layers ≥ 1: mean ρ {_f(m['rho'], 3)}, dead {_f(m['dead'], 1)} % over {m['n_sae']} SAEs"
                   + (f"; Welch 95% CI {vs}" if vs else "") + f" → {_like_phrase('atoms', m['like']['atoms'])}")
    if m["n_abl"]:
        vs = "; ".join(f"{b} − {ref.upper()}: drop {_ci_s(m['drop_vs'][ref])} dB, firing region {_ci_s(m['region_vs'][ref], 1)} %"
                       for ref in PAPER_BACKBONES if ref in m["region_vs"])
        out.append(f"- ablations: {m['n_abl']} ablated atoms, largest drop {_f(m['drop_max'])} dB, mean drop {_f(m['drop'])} dB, mean "
                   f"firing region {_f(m['region'], 1)} %, mean locality {_f(m['locality'], 3)}" + (f"; Welch 95% CI {vs}" if vs else "")
                   + f" → {_like_phrase('ablations', m['like']['ablations'])}")
    out += ["", f"**{resembles_line(m)}**", ""]
    return out


def beyond_table(ms: Sequence[dict[str, Any]]) -> str:
    """One row per backbone: best-k set over all pairs, gain of k* over no freeze, per-layer change, collapse at
    L−1 (95% intervals), argmax sr(W) agreements, mean ρ and dead % (layers ≥ 1) and what it resembles."""
    out = ["| backbone | best-k set | gain k* vs no freeze (dB, 95% CI) | change per frozen layer (dB, 95% CI) | "
           "collapse at L−1: PSNR(L−1) − PSNR(1) (dB, 95% CI) | argmax sr(W) agrees | ρ mean | dead % | resembles |",
           "|---|---|---|---|---|---|---|---|---|"]
    for m in ms:
        w = m["predictors"]["w"]
        agree = f"{w['agrees']}/{w['n']}" if w["n"] else "n/a"
        ref = " (paper's backbone)" if m["backbone"] in PAPER_BACKBONES else ""
        res = f"freeze depth: {_like_phrase('freeze', m['like']['freeze'])}" if ref else m["resembles"]
        out.append(f"| {m['backbone']}{ref} | {_kset(m['best_set']) if m['best_set'] else 'n/a'} | {_ci_s(m['gain'])} | "
                   f"{_ci_s(m['slope'])} | {_ci_s(m['collapse'])} | {agree} | {_f(m['rho'], 3)} | {_f(m['dead'], 1)} | {res} |")
    return "\n".join(out) + "\n"


def noise_text(summary: dict[str, Any]) -> list[str]:
    """The "Noise-trained vs image-trained encoders" lines: the table and one sentence per comparison."""
    from .tables import noise_table

    rs = summary.get("noise_vs_image") or []
    md = ["### Noise-trained vs image-trained encoders", ""]
    if not rs:
        return md + [f"Noise sources ({', '.join(summary.get('noise_sources', []))}) have no image-trained source of the same "
                     "backbone and target to compare with.", ""]
    md += [noise_table(summary), ""]
    def ci(c: dict[str, Any]) -> str:
        return S.fmt_ci(c["mean"], c["lo"], c["hi"], c["n"])

    for r in rs:
        md.append(f"- {r['backbone']}, {r['noise_source']} (noise) vs {r['image_source']} → {r['target']}: no freeze "
                  f"{ci(r['none'])} dB → {r['none_word']}; best k ({r['k_noise']} vs {r['k_image']}) {ci(r['best'])} dB → {r['best_word']}")
    return md + [""]


def beyond_section(summary: dict[str, Any] | None, sae_rows: Sequence[dict[str, Any]], abl_rows: Sequence[dict[str, Any]]) -> list[str]:
    """The report's "Beyond the paper: other backbones" section (Markdown lines), or [] when the run has neither a
    backbone other than SIREN and FFMLP nor a noise source."""
    ms = beyond_measures(summary, sae_rows, abl_rows)
    others = [m for m in ms if m["backbone"] not in PAPER_BACKBONES]
    noise = (summary or {}).get("noise_sources") or []
    if not others and not noise:
        return []
    md = ["## Beyond the paper: other backbones", "", BEYOND_TEXT, ""]
    if others:
        md += [beyond_table(ms), ""]
        for m in others:
            md += backbone_text(m)
    else:
        md += ["This run has no backbone besides SIREN and FFMLP.", ""]
    if noise:
        md += noise_text(summary or {})
    return md


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


def build(run_dir: Path, meta: dict[str, Any], sweep_rows: Sequence[dict[str, Any]], sae_rows: Sequence[dict[str, Any]],
          abl_rows: Sequence[dict[str, Any]], figures: Sequence[Path] = (), sae_figures: Sequence[Path] = (), galleries: Sequence[tuple[str, Path]] = (),
          ablation_figs: Sequence[tuple[str, Path]] = (), atlas: Path | None = None,
          analogues: dict[str, str] | None = None, semantics: Sequence[dict[str, Any]] | None = None,
          semantics_figure: Path | None = None, depth_width: Sequence[dict[str, Any]] | None = None,
          depth_width_figure: Path | None = None, depth_width_note: str = "", noise: Sequence[str] = ()) -> tuple[str, list[Finding]]:
    """The report as Markdown (and the findings it states). Paths are written relative to run_dir. ``analogues``
    {target: paper dataset} tells the regime check which paper band a target is compared with. ``semantics``
    (None = no section) adds "Atom semantics" with ``semantics_figure``; ``depth_width`` (None = no section) adds
    "Depth × width" with its figure and ``depth_width_note`` (the study's setup) before the table. ``noise``: sources
    whose encoders were trained on noise, besides those the cohort rows and ``run_dir/sweep/run.json`` name
    (:func:`inrlens.report.tables.noise_sources`). Backbones other than SIREN and FFMLP, and noise sources, get
    the section "Beyond the paper: other backbones" (:func:`beyond_section`)."""
    from . import tables

    run_dir = Path(run_dir)
    noise = [*noise, *tables.sweep_noise_sources(run_dir / "sweep")]
    summary = tables.summarise(sweep_rows, analogues, noise=noise) if sweep_rows else None
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
           "Each row is computed from this run's result files; verdict rules are in `inrlens.report.document`. A verdict "
           "comes from a 95% interval (`inrlens.stats`): agrees only when the interval excludes the other side of the claim, "
           "disagrees only when it excludes the claim, otherwise inconclusive with the number of fits n behind it. "
           + tables.CONVENTION, "",
           findings_markdown(fs)]
    md += beyond_section(summary, sae_rows, abl_rows)
    if summary is not None:
        md += ["## Regime check (no-freeze PSNR vs the paper)", "",
               "The findings compare like with like only when this run's fits sit in the paper's PSNR regime.", "",
               tables.regime_table(summary), ""]
    md += ["## Freeze sweep", ""]
    if summary is None:
        md += ["No freeze-sweep results in this run.", ""]
    else:
        md += [tables.table1(summary), "", tables.predictions_table(summary), ""]
        for p in sorted(figures, key=_figure_order):
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
    if semantics is not None:
        md += semantics_section(semantics, semantics_figure, run_dir)
    if depth_width is not None:
        from ..depth_width import table_markdown

        md += ["## Depth × width", "", depth_width_note, ""] if depth_width_note else ["## Depth × width", ""]
        md += [table_markdown(depth_width), ""] if depth_width else ["No depth × width results in this run.", ""]
        if depth_width_figure is not None:
            md += [f"![depth × width]({_rel(depth_width_figure, run_dir)})", ""]
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


__all__ = ["beyond_section", "beyond_measures", "backbone_measures", "beyond_table", "backbone_text", "resembles_line", "noise_text",
           "Finding", "findings", "finding_f1", "finding_f2", "finding_f3", "finding_f4", "finding_f5", "findings_markdown",
           "findings_text", "sae_table", "ablation_table", "semantics_table", "semantics_section", "md_to_html", "build", "write"]
