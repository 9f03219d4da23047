"""The report's "Beyond the paper: other backbones" section: for every backbone besides SIREN and FFMLP, the
measurements of F1–F5 with the same intervals, and which of the paper's patterns the backbone resembles (rules in
:data:`BEYOND_TEXT`); and noise-trained vs image-trained encoders."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .. import stats as S
from .findings import MATCH_TOL_DB, PAPER_K, _backbone_of, _depths, _f, _kset, _nan, _paired_over_pairs, ablations_by_backbone

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


_NAN4 = (math.nan, math.nan, math.nan, 0)
"""An interval that was not measured: (mean, lo, hi, n)."""


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _gain_of_kstar(s: dict[str, Any], b: str, t1: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The paired gain of k* = argmax sr(W) over no freeze, pairs as strata (as F3), and its word."""
    kw = {p["source"]: p.get("k_w") for p in s.get("predictions", []) if p["backbone"] == b}
    U = s.get("units", {})
    diffs = []
    for r in t1:
        k = kw.get(r["source"])
        pre = f"{b}|{r['source']}|{r['target']}|"
        if k is not None and U.get(pre + str(k)) and U.get(pre + "none"):
            diffs.append(S.pair_diffs(U[pre + str(k)], U[pre + "none"]))
    gain = S.stratified_ci(diffs) if diffs else _NAN4
    word = (_word(S.verdict(gain[1], gain[2], True, n=gain[3], threshold=-MATCH_TOL_DB, unit="fits"),
                  "matches or beats no freeze", "worse than no freeze") if diffs else "not measured")
    return {"gain": gain, "gain_word": word}


def _per_layer_change(s: dict[str, Any], b: str, common: Sequence[int]) -> tuple[dict[str, Any], str]:
    """The PSNR change per extra frozen layer over the depths k ≤ :data:`PLATEAU_MAX_K` below L−1 (all of k ≤
    PLATEAU_MAX_K when fewer than two are below L−1), and which freeze pattern it resembles."""
    last = common[-1] if common else None
    ks = [k for k in common if k <= PLATEAU_MAX_K and k < (last or 0)]
    if len(ks) < 2:
        ks = [k for k in common if k <= PLATEAU_MAX_K]
    out = {"slope_ks": ks if len(ks) >= 2 else [], "slope": _slope_ci(s, b, ks) if len(ks) >= 2 else _NAN4}
    if not out["slope_ks"]:
        return out, "not measured"
    v = S.verdict(out["slope"][1], out["slope"][2], True, n=out["slope"][3], threshold=-MATCH_TOL_DB, unit="fits")
    return out, {"agrees": "SIREN", "disagrees": "FFMLP"}.get(v, v)


def _collapse(s: dict[str, Any], b: str, common: Sequence[int]) -> dict[str, Any]:
    """PSNR(k = L−1) − PSNR(k = 1), paired within pairs, and its word (needs k = 1 and a deeper k in every pair)."""
    last = common[-1] if common else None
    if last is not None and last >= 2 and 1 in common:
        ci = _paired_over_pairs(s, b, str(last), "1")
        word = _word(S.verdict(ci[1], ci[2], False, n=ci[3], threshold=-MATCH_TOL_DB, unit="fits"), "collapses", "no collapse")
        return {"last": last, "collapse": ci, "collapse_word": word}
    return {"last": last, "collapse": _NAN4, "collapse_word": "not measured"}


def _freeze_measures(s: dict[str, Any], b: str, t1: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """The freeze-sweep part of :func:`backbone_measures`: best-k set over all pairs, gain of k*, per-layer
    change, collapse at L−1, and which freeze pattern the backbone resembles."""
    bs = _pooled_best(s, b) if t1 else {"best": None, "set": [], "diffs": {}}
    out: dict[str, Any] = {"best_k": bs["best"], "best_set": bs["set"]}
    out.update(_gain_of_kstar(s, b, t1))
    common = sorted(set.intersection(*(set(_depths(s, b, r["source"], r["target"])) for r in t1))) if t1 else []
    slope, like = _per_layer_change(s, b, common)
    out.update(slope)
    out.update(_collapse(s, b, common))
    return out, like


def _predictor_measures(s: dict[str, Any], b: str) -> dict[str, Any]:
    """The stable-rank predictors' agreement counts of one backbone (as F2)."""
    from .tables import PREDICTORS, predictor_counts

    preds = [p for p in s.get("predictions", []) if p["backbone"] == b and p.get("empirical_k") is not None]
    return {"n_configs": len(preds), "predictors": predictor_counts(preds),
            "predictor_labels": {tag: label for tag, _f, label in PREDICTORS}}


def _sae_measures(sae_rows: Sequence[dict[str, Any]], b: str) -> tuple[dict[str, Any], str]:
    """The SAE part (as F4): ρ and dead % per layer (every layer), their means over layers ≥ 1 with Welch
    intervals against SIREN and FFMLP, and which atom pattern the backbone resembles."""
    sae = _sae_by_backbone(sae_rows)
    mine = sae.get(b, [])
    per_layer = {}
    for ell in sorted({int(r.get("layer", 0)) for r in mine}):
        rs = [r for r in mine if int(r.get("layer", 0)) == ell]
        rho, dead = _vals(rs, "rho"), _vals(rs, "dead_pct")
        per_layer[ell] = (_mean(rho), _mean(dead), len(rs))
    rho, dead = _vals(mine, "rho", min_layer=1), _vals(mine, "dead_pct", min_layer=1)
    refs = {ref: (_vals(sae.get(ref, []), "rho", min_layer=1), _vals(sae.get(ref, []), "dead_pct", min_layer=1)) for ref in PAPER_BACKBONES}
    out = {"sae_layers": per_layer, "rho": _mean(rho), "dead": _mean(dead), "n_sae": len(rho),
           "rho_vs": {ref: S.welch_ci(rho, rv[0]) for ref, rv in refs.items() if rv[0] and b != ref},
           "dead_vs": {ref: S.welch_ci(dead, rv[1]) for ref, rv in refs.items() if rv[1] and b != ref}}
    like = ("not measured" if not rho else "reference" if b in PAPER_BACKBONES
            else _side(out["rho_vs"].get("siren"), out["rho_vs"].get("ffmlp"), "SAEs"))
    return out, like


def _ablation_measures(sae_rows: Sequence[dict[str, Any]], abl_rows: Sequence[dict[str, Any]], b: str) -> tuple[dict[str, Any], str]:
    """The ablation part (as F5): drops, firing regions and locality of the backbone's ablated atoms, Welch
    intervals against SIREN and FFMLP, and which ablation pattern it resembles."""
    abl = ablations_by_backbone(abl_rows, sae_rows)
    mine = abl.get(b, [])
    drops, regs = _vals(mine, "psnr_drop"), _vals(mine, "region_frac", 100.0)
    out = {"n_abl": len(mine), "drop": _mean(drops), "drop_max": max(drops) if drops else math.nan, "region": _mean(regs),
           "locality": _mean(_vals(mine, "locality")),
           "drop_vs": {ref: S.welch_ci(drops, _vals(abl.get(ref, []), "psnr_drop")) for ref in PAPER_BACKBONES
                       if abl.get(ref) and b != ref},
           "region_vs": {ref: S.welch_ci(regs, _vals(abl.get(ref, []), "region_frac", 100.0)) for ref in PAPER_BACKBONES
                         if abl.get(ref) and b != ref}}
    like = ("not measured" if not regs else "reference" if b in PAPER_BACKBONES
            else _side(out["region_vs"].get("siren"), out["region_vs"].get("ffmlp"), "ablated atoms"))
    return out, like


def _resembles(like: dict[str, str]) -> str:
    """'SIREN' or 'FFMLP' when every decided part says so, 'neither' when they differ, 'undecided' when none is decided."""
    decided = [v for v in like.values() if v in ("SIREN", "FFMLP", "neither")]
    if not decided:
        return "undecided"
    if all(v == "SIREN" for v in decided):
        return "SIREN"
    if all(v == "FFMLP" for v in decided):
        return "FFMLP"
    return "neither"


def backbone_measures(summary: dict[str, Any] | None, sae_rows: Sequence[dict[str, Any]], abl_rows: Sequence[dict[str, Any]],
                      b: str) -> dict[str, Any]:
    """Every measurement of the "Beyond the paper" section for one backbone (rules in :data:`BEYOND_TEXT`), as a
    dict of numbers, intervals ``(mean, lo, hi, n)`` and words; ``like`` says which paper pattern it resembles
    per part (freeze, atoms, ablations) and ``resembles`` overall."""
    s = summary or {}
    t1 = [r for r in s.get("table1", []) if r["backbone"] == b and r.get("best_k") is not None]
    m: dict[str, Any] = {"backbone": b, "pairs": [(_pair_label(r), r.get("best_set", [r["best_k"]])) for r in t1]}
    freeze, like_freeze = _freeze_measures(s, b, t1)
    m.update(freeze)
    m.update(_predictor_measures(s, b))
    sae, like_atoms = _sae_measures(sae_rows, b)
    m.update(sae)
    abl, like_ablations = _ablation_measures(sae_rows, abl_rows, b)
    m.update(abl)
    m["like"] = {"freeze": like_freeze, "atoms": like_atoms, "ablations": like_ablations}
    m["resembles"] = _resembles(m["like"])
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


__all__ = ["PLATEAU_MAX_K", "PAPER_BACKBONES", "BEYOND_TEXT", "beyond_section", "beyond_measures", "backbone_measures",
           "beyond_table", "backbone_text", "resembles_line", "noise_text"]
