"""Tables of the freeze study (SPEC §8), computed from result rows alone (never from models).

Inputs are the JSONL rows a sweep writes (``kind = "fit"`` per finished fit, ``kind = "cohort"`` per cohort with
its stable-rank profile). Statistics are mean ± sample std (ddof = 1; 0 for one value) over test images × seeds
of the rows with ``status == "ok"``; a diverged fit is counted in ``n_bad`` and left out of the means.

* Table 1: per backbone, source → target: no-freeze PSNR, the best freeze depth k and its PSNR (the better of
  the two in bold), the random-init PSNR, and whether argmax sr(W) / argmax sr(H) of the source cohort equals
  that best k (✓/✗).
* Predictions: per (source, backbone), predicted k* = argmax sr(W) and argmax sr(H) beside the empirical best
  depth, argmax over k of the target-averaged mean PSNR.
* Per-combination tables: k, sr(W_k), sr(H_k), PSNR, SSIM, LPIPS for every regime of one source → target.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable, Sequence

import numpy as np

Key = tuple[str, str, str, str]  # (backbone, source, target, depth tag)


def depth_tag(row: dict[str, Any]) -> str:
    """'none', 'random' or the freeze depth as a string."""
    if row.get("regime") == "random":
        return "random"
    return "none" if row.get("freeze") is None else str(int(row["freeze"]))


def split_rows(rows: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[tuple[str, str], dict[str, Any]]]:
    """(fit rows, first one per key) and {(source, backbone): cohort row (the last one written)}."""
    fits, seen, cohorts = [], set(), {}
    for r in rows:
        kind = r.get("kind", "fit")
        if kind == "cohort":
            cohorts[(r["source"], r["backbone"])] = r
        elif kind == "fit" and r.get("key") not in seen:
            seen.add(r.get("key"))
            fits.append(r)
    return fits, cohorts


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))], dtype=float)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def aggregate(fits: Sequence[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """Statistics per (backbone, source, target, depth). Random-init rows (no source) are listed under every
    source that has transfer rows for that (backbone, target), so each source → target block is complete."""
    groups: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for r in fits:
        groups[(r["backbone"], r.get("source") or "", r["target"], depth_tag(r))].append(r)
    out: dict[Key, dict[str, Any]] = {}
    for k, rs in groups.items():
        ok = [r for r in rs if r.get("status", "ok") == "ok"]
        st: dict[str, Any] = {"n": len(ok), "n_bad": len(rs) - len(ok)}
        for m in ("psnr", "ssim", "lpips"):
            st[m], st[m + "_std"] = mean_std([r.get(m) for r in ok])
        out[k] = st
    pairs = {(b, s, t) for (b, s, t, d) in out if s}
    for (b, s, t) in pairs:
        rnd = out.get((b, "", t, "random"))
        if rnd is not None:
            out[(b, s, t, "random")] = rnd
    return {k: v for k, v in out.items() if k[1]}


def combos(stats: dict[Key, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(backbone, source, target) triples in a stable order (siren first)."""
    order = {"siren": 0, "ffmlp": 1}
    return sorted({k[:3] for k in stats}, key=lambda c: (order.get(c[0], 9), c[0], c[1], c[2]))


def depths_of(stats: dict[Key, dict[str, Any]], combo: tuple[str, str, str]) -> list[int]:
    return sorted(int(k[3]) for k in stats if k[:3] == combo and k[3].isdigit())


def best_k(stats: dict[Key, dict[str, Any]], combo: tuple[str, str, str]) -> int | None:
    """The freeze depth with the highest mean PSNR (first on ties); None when no depth was run."""
    ks = [k for k in depths_of(stats, combo) if not math.isnan(stats[(*combo, str(k))]["psnr"])]
    if not ks:
        return None
    return max(ks, key=lambda k: (stats[(*combo, str(k))]["psnr"], -k))


def empirical_k(stats: dict[Key, dict[str, Any]], backbone: str, source: str) -> int | None:
    """argmax over k of the mean (over targets) of the per-target mean PSNR, for one source cohort."""
    per_k: dict[int, list[float]] = defaultdict(list)
    for c in combos(stats):
        if c[0] == backbone and c[1] == source:
            for k in depths_of(stats, c):
                per_k[k].append(stats[(*c, str(k))]["psnr"])
    vals = {k: float(np.mean(v)) for k, v in per_k.items() if v and not any(math.isnan(x) for x in v)}
    if not vals:
        return None
    return max(vals, key=lambda k: (vals[k], -k))


def summarise(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Every number the tables and figures show, as one JSON-able dict."""
    fits, cohorts = split_rows(rows)
    stats = aggregate(fits)
    t1, per_bb = [], defaultdict(lambda: {"none": [], "best": [], "random": []})
    for c in combos(stats):
        b, s, t = c
        none = stats.get((*c, "none"))
        rnd = stats.get((*c, "random"))
        k = best_k(stats, c)
        co = cohorts.get((s, b))
        row = {"backbone": b, "source": s, "target": t, "best_k": k,
               "none": none["psnr"] if none else math.nan, "none_std": none["psnr_std"] if none else math.nan,
               "best": stats[(*c, str(k))]["psnr"] if k is not None else math.nan,
               "best_std": stats[(*c, str(k))]["psnr_std"] if k is not None else math.nan,
               "random": rnd["psnr"] if rnd else math.nan, "random_std": rnd["psnr_std"] if rnd else math.nan,
               "k_w": co["k_w"] if co else None, "k_h": co["k_h"] if co else None}
        row["w_agrees"] = row["k_w"] is not None and row["k_w"] == k
        row["h_agrees"] = row["k_h"] is not None and row["k_h"] == k
        t1.append(row)
        for name in ("none", "best", "random"):
            if not math.isnan(row[name]):
                per_bb[b][name].append(row[name])
    preds = []
    for (s, b), co in sorted(cohorts.items(), key=lambda x: ({"siren": 0, "ffmlp": 1}.get(x[0][1], 9), x[0][0])):
        ek = empirical_k(stats, b, s)
        preds.append({"source": s, "backbone": b, "k_w": co["k_w"], "k_h": co["k_h"], "empirical_k": ek,
                      "w_agrees": ek is not None and co["k_w"] == ek, "h_agrees": ek is not None and co["k_h"] == ek,
                      "sr_w": co["sr_w"], "sr_h": co["sr_h"], "grid": co.get("grid"), "cohort_psnr": co.get("psnr_mean"),
                      "cohort_steps": co.get("steps_run")})
    averages = {b: {k: float(np.mean(v)) if v else math.nan for k, v in d.items()} for b, d in per_bb.items()}
    return {"table1": t1, "predictions": preds, "averages": averages,
            "stats": {"|".join(k): v for k, v in stats.items()}, "n_fits": len(fits), "n_cohorts": len(cohorts)}


# ------------------------------------------------------------------------------------------------ rendering
def _f(x: float, d: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"


def _pm(m: float, s: float, d: int = 2) -> str:
    return f"{_f(m, d)} ± {_f(s, d)}" if not math.isnan(m) else "n/a"


def _bold(text: str, on: bool, latex: bool) -> str:
    if not on:
        return text
    return f"\\textbf{{{text}}}" if latex else f"**{text}**"


def _mark(ok: bool, k: int | None, latex: bool) -> str:
    if k is None:
        return "n/a"
    sym = ("$\\checkmark$" if ok else "$\\times$") if latex else ("✓" if ok else "✗")
    return f"{k} {sym}"


def _table(header: list[str], rows: list[list[str]], latex: bool, caption: str = "", align: str | None = None) -> str:
    if latex:
        al = align or ("l" * 3 + "r" * (len(header) - 3))
        esc = lambda s: s.replace("±", "$\\pm$").replace("×", "$\\times$").replace("→", "$\\to$").replace("_", "\\_").replace("✓", "$\\checkmark$").replace("✗", "$\\times$")  # noqa: E731
        lines = ["\\begin{table}[t]", "\\centering", "\\small", f"\\begin{{tabular}}{{{al}}}", "\\toprule",
                 " & ".join(esc(h) for h in header) + " \\\\", "\\midrule"]
        lines += [" & ".join(esc(c) for c in r) + " \\\\" for r in rows]
        lines += ["\\bottomrule", "\\end{tabular}"]
        if caption:
            lines.append(f"\\caption{{{esc(caption)}}}")
        lines.append("\\end{table}")
        return "\n".join(lines) + "\n"
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return ("" if not caption else f"{caption}\n\n") + "\n".join(out) + "\n"


def table1(summary: dict[str, Any], latex: bool = False) -> str:
    """Table 1: no-freeze vs best k per source → target and backbone (PSNR dB, mean ± std)."""
    header = ["backbone", "source → target", "no freeze", "best k", "PSNR at best k", "random init", "argmax sr(W)", "argmax sr(H)"]
    rows = []
    for r in summary["table1"]:
        better_k = not math.isnan(r["best"]) and (math.isnan(r["none"]) or r["best"] >= r["none"])
        rows.append([r["backbone"], f"{r['source']} → {r['target']}", _bold(_pm(r["none"], r["none_std"]), not better_k and not math.isnan(r["none"]), latex),
                     str(r["best_k"]) if r["best_k"] is not None else "n/a", _bold(_pm(r["best"], r["best_std"]), better_k, latex),
                     _pm(r["random"], r["random_std"]), _mark(r["w_agrees"], r["k_w"], latex), _mark(r["h_agrees"], r["k_h"], latex)])
    for b, a in summary["averages"].items():
        rows.append([b, "mean over pairs", _f(a["none"]), "", _f(a["best"]), _f(a["random"]), "", ""])
    cap = ("Table 1. Test PSNR (dB, mean ± std over test images × seeds): no freeze vs the best freeze depth k; "
           "bold = better of the two; ✓/✗ = argmax of the source cohort's stable rank equals the best k.")
    return _table(header, rows, latex, cap, "llrrrrcc")


def predictions_table(summary: dict[str, Any], latex: bool = False) -> str:
    header = ["source", "backbone", "k* = argmax sr(W)", "argmax sr(H)", "empirical best k", "sr(W) per layer", "sr(H) per layer"]
    rows = []
    for p in summary["predictions"]:
        rows.append([p["source"], p["backbone"], _mark(p["w_agrees"], p["k_w"], latex), _mark(p["h_agrees"], p["k_h"], latex),
                     str(p["empirical_k"]) if p["empirical_k"] is not None else "n/a",
                     " / ".join(_f(x, 1) for x in p["sr_w"]), " / ".join(_f(x, 1) for x in p["sr_h"])])
    n = len(summary["predictions"])
    nw = sum(p["w_agrees"] for p in summary["predictions"])
    nh = sum(p["h_agrees"] for p in summary["predictions"])
    cap = (f"Predicted vs empirical freeze depth per (source, backbone): argmax sr(W) agrees in {nw}/{n}, "
           f"argmax sr(H) in {nh}/{n}. Empirical k = argmax over k of the target-averaged mean PSNR.")
    return _table(header, rows, latex, cap, "llcccll")


def combo_tables(summary: dict[str, Any], latex: bool = False) -> str:
    """One table per (backbone, source, target): k, sr(W), sr(H), PSNR, SSIM, LPIPS (mean ± std)."""
    stats = summary["stats"]
    preds = {(p["source"], p["backbone"]): p for p in summary["predictions"]}
    by_combo: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for key in stats:
        b, s, t, d = key.split("|")
        by_combo[(b, s, t)].append(d)
    order = lambda d: (-1 if d == "none" else (999 if d == "random" else int(d)))  # noqa: E731
    parts = []
    for r in summary["table1"]:
        c = (r["backbone"], r["source"], r["target"])
        p = preds.get((c[1], c[0]))
        rows = []
        for d in sorted(by_combo[c], key=order):
            st = stats["|".join((*c, d))]
            srw = _f(p["sr_w"][int(d)]) if p and d.isdigit() else ""
            srh = _f(p["sr_h"][int(d)]) if p and d.isdigit() else ""
            label = {"none": "no freeze", "random": "random init"}.get(d, d)
            best = d.isdigit() and r["best_k"] == int(d)
            rows.append([_bold(label, best, latex), srw, srh, _pm(st["psnr"], st["psnr_std"]), _pm(st["ssim"], st["ssim_std"], 4),
                         _pm(st["lpips"], st["lpips_std"], 4), str(st["n"])])
        cap = f"{c[0]}: {c[1]} → {c[2]}" + (f" (sr(H) on the cohort's {p['grid'][0]}x{p['grid'][1]} grid)" if p and p.get("grid") else "")
        parts.append(_table(["k", "sr(W_k)", "sr(H_k)", "PSNR (dB)", "SSIM", "LPIPS", "n"], rows, latex, cap, "lrrrrrr"))
    return "\n".join(parts)


__all__ = ["summarise", "table1", "predictions_table", "combo_tables", "aggregate", "split_rows", "best_k", "empirical_k", "mean_std", "depth_tag"]
