"""The paper's findings F1–F5 and what a run measured for each: one :class:`Finding` per claim, with a verdict.

Everything is read from result rows (the inputs are described in :mod:`inrlens.report.document`); nothing is
recomputed from models and no number is written as fixed text.

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

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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


def ablations_by_backbone(abl_rows: Sequence[dict[str, Any]], sae_rows: Sequence[dict[str, Any]] = ()) -> dict[str, list[dict[str, Any]]]:
    """The ablation rows with a measured PSNR drop, by backbone (read from the row, else from its SAE condition's
    row); a defaultdict, so a backbone without ablations gives []."""
    cond_bb = {str(r.get("condition")): str(r.get("backbone")) for r in sae_rows if r.get("backbone")}
    by_b: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in abl_rows:
        b = _backbone_of(r, cond_bb)
        if b and not _nan(r.get("psnr_drop")):
            by_b[b].append(r)
    return by_b


def finding_f5(abl_rows: Sequence[dict[str, Any]], sae_rows: Sequence[dict[str, Any]] = ()) -> Finding:
    claim = "one FFMLP atom can drop PSNR by ~10 dB image-wide; SIREN ablation errors stay inside the atom's region"
    by_b = ablations_by_backbone(abl_rows, sae_rows)
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
        top_reg = 100 * float(top["region_frac"]) if not _nan(top.get("region_frac")) else math.nan
        parts.append(f"{b}: largest drop {float(top['psnr_drop']):.2f} dB (atom {top.get('atom')} at layer {top.get('layer')} of "
                     f"{top.get('condition')}, firing region {_f(top_reg, 1)} % of the image); "
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


__all__ = ["PAPER_K", "PAPER_F3", "PAPER_F2", "PAPER_SR_H", "MATCH_TOL_DB", "Finding", "findings", "finding_f1", "finding_f2",
           "finding_f3", "finding_f4", "finding_f5", "findings_markdown", "findings_text"]
