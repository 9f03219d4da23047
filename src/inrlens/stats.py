"""Uncertainty for the study's verdicts: paired differences, confidence intervals and three-way verdicts.

Pure functions on numbers (numpy only, no scipy). Every verdict of the report comes from here, so that a
difference smaller than its uncertainty is never called an agreement.

Conventions
-----------
* A *unit* is one test fit: (target image, seed) inside one source → target pair. Two regimes of the same
  pair are compared *paired*: d_i = PSNR_a(unit i) − PSNR_b(unit i) over the units both regimes have.
* The interval of a mean difference is the two-sided Student-t interval

      d̄ ± t_{1−α/2, n−1} · s / √n,    s² = Σ (d_i − d̄)² / (n − 1)   (the sample std of the report's "±"),

  or, with ``method="bootstrap"``, the percentile interval of B resampled means (seeded generator).
* Several pairs held fixed (strata, e.g. the source → target pairs of a backbone) are combined by
  :func:`stratified_ci`: the mean of the per-stratum mean differences, with variance Σ_j s_j² / n_j / P² and
  Welch–Satterthwaite degrees of freedom.
* :func:`verdict`: "agrees" only when the interval excludes the other side of the claim, "disagrees" only when
  it excludes the claim, otherwise "inconclusive (n = …)"; fewer than 2 units are always inconclusive.
* Best depth with its uncertainty (:func:`best_set`): the depths whose paired difference to the best depth is
  not significantly negative (upper end of its interval ≥ 0). A predicted depth *agrees* when it is inside that
  set, *disagrees* when it is significantly worse than the best, and is *undecided* when the set holds every
  measured depth (the data cannot tell the depths apart, so any prediction would "agree").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

LEVEL = 0.95
"""Confidence level of every interval in the report."""

# ------------------------------------------------------------------------------------------- Student t


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz method)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            step = c * d
            h *= step
        if abs(step - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) = B(x; a, b) / B(a, b), for a, b > 0 and 0 ≤ x ≤ 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc: x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    ln_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with df degrees of freedom: 1 − ½ I_{df/(df+t²)}(df/2, ½) for t ≥ 0, symmetric."""
    if df <= 0:
        raise ValueError(f"t distribution needs df > 0, got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with df degrees of freedom (bisection on :func:`t_cdf`, |error| < 1e-10).

    Examples: t_quantile(0.975, 1) = 12.706, (0.975, 4) = 2.776, (0.975, 9) = 2.262, (0.975, 29) = 2.045.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile: p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


# ------------------------------------------------------------------------------------------- pairing


def _finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def unit_values(rows: Iterable[Mapping[str, Any]], by: Sequence[str] = ("image", "seed"), metric: str = "psnr") -> dict[tuple, float]:
    """{(row[by[0]], row[by[1]], …): row[metric]} over rows with status "ok" (or no status) and a finite metric.

    A unit that occurs twice keeps its first row (a resumed writer may repeat a row)."""
    out: dict[tuple, float] = {}
    for r in rows:
        if r.get("status", "ok") != "ok" or not _finite(r.get(metric)):
            continue
        key = tuple(r.get(f) for f in by)
        if key not in out:
            out[key] = float(r[metric])
    return out


def pair_diffs(a: Mapping[Hashable, float], b: Mapping[Hashable, float]) -> np.ndarray:
    """a[u] − b[u] for every unit u present in both mappings, in a's order; unmatched units are ignored."""
    return np.asarray([a[u] - b[u] for u in a if u in b], dtype=float)


def paired_differences(rows_a: Iterable[Mapping[str, Any]], rows_b: Iterable[Mapping[str, Any]],
                       by: Sequence[str] = ("image", "seed"), metric: str = "psnr") -> np.ndarray:
    """d_u = metric(a, u) − metric(b, u) for the units u = (row[f] for f in by) that both row sets have.

    Rows that are not "ok", have no finite metric, or whose unit the other set lacks are left out."""
    return pair_diffs(unit_values(rows_a, by, metric), unit_values(rows_b, by, metric))


# ------------------------------------------------------------------------------------------- intervals


def mean_ci(diffs: Iterable[float], level: float = LEVEL, method: str = "t", seed: int = 0,
            n_boot: int = 10_000) -> tuple[float, float, float, int]:
    """(mean, lo, hi, n) of the finite values: the two-sided ``level`` interval of their mean.

    method "t": d̄ ± t_{(1+level)/2, n−1} · s / √n with s the sample std (ddof = 1).
    method "bootstrap": the (1−level)/2 and (1+level)/2 percentiles of n_boot means of resamples with replacement,
    drawn by ``numpy.random.default_rng(seed)`` (the same seed gives the same interval).
    n = 0 gives (nan, nan, nan, 0); n = 1 gives (d, nan, nan, 1): one value has no interval.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    d = np.asarray([x for x in diffs if _finite(x)], dtype=float)
    n = int(d.size)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    m = float(d.mean())
    if n < 2:
        return m, math.nan, math.nan, n
    if method == "t":
        half = t_quantile(0.5 + level / 2.0, n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
        return m, m - half, m + half, n
    if method == "bootstrap":
        rng = np.random.default_rng(seed)
        means = d[rng.integers(0, n, size=(int(n_boot), n))].mean(axis=1)
        lo, hi = np.quantile(means, [0.5 - level / 2.0, 0.5 + level / 2.0])
        return m, float(lo), float(hi), n
    raise ValueError(f"unknown interval method {method!r}; use 't' or 'bootstrap'")


def stratified_ci(groups: Iterable[Iterable[float]], level: float = LEVEL) -> tuple[float, float, float, int]:
    """(mean, lo, hi, n) for the average over P fixed strata of their mean differences.

    mean = (1/P) Σ_j d̄_j;  var = (1/P²) Σ_j v_j with v_j = s_j² / n_j;  df = (Σ v_j)² / Σ_j v_j² / (n_j − 1)
    (Welch–Satterthwaite); interval mean ± t_{(1+level)/2, df} · √var. n = Σ n_j. Empty strata are dropped; a
    stratum with one value has no variance estimate, so the interval is (nan, nan). With every s_j = 0 the
    interval has zero width. One stratum gives exactly :func:`mean_ci`'s t interval.
    """
    gs = [np.asarray([x for x in g if _finite(x)], dtype=float) for g in groups]
    gs = [g for g in gs if g.size]
    if not gs:
        return math.nan, math.nan, math.nan, 0
    P, n = len(gs), int(sum(g.size for g in gs))
    m = float(np.mean([g.mean() for g in gs]))
    if any(g.size < 2 for g in gs):
        return m, math.nan, math.nan, n
    v = np.asarray([g.var(ddof=1) / g.size for g in gs])
    se = math.sqrt(float(v.sum())) / P
    if se == 0.0:
        return m, m, m, n
    df = float(v.sum()) ** 2 / float(sum(vj * vj / (g.size - 1) for vj, g in zip(v, gs)))
    half = t_quantile(0.5 + level / 2.0, df) * se
    return m, m - half, m + half, n


def welch_ci(a: Iterable[float], b: Iterable[float], level: float = LEVEL) -> tuple[float, float, float, int]:
    """(mean(a) − mean(b), lo, hi, n_a + n_b) for two unpaired samples: Welch's t interval
    (var = s_a²/n_a + s_b²/n_b, Welch–Satterthwaite df). The interval is (nan, nan) when a side has < 2 values."""
    x = np.asarray([v for v in a if _finite(v)], dtype=float)
    y = np.asarray([v for v in b if _finite(v)], dtype=float)
    n = int(x.size + y.size)
    if not (x.size and y.size):
        return math.nan, math.nan, math.nan, n
    m = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return m, math.nan, math.nan, n
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(va + vb)
    if se == 0.0:
        return m, m, m, n
    df = (va + vb) ** 2 / (va * va / (x.size - 1) + vb * vb / (y.size - 1))
    half = t_quantile(0.5 + level / 2.0, df) * se
    return m, m - half, m + half, n


# ------------------------------------------------------------------------------------------- verdicts


def verdict(lo: float, hi: float, claim_positive: bool = True, *, n: int, threshold: float = 0.0, unit: str = "") -> str:
    """Three-way verdict on a claim about a difference δ, given its interval [lo, hi] from n units.

    Positive claim (δ > threshold): "agrees" when lo > threshold, "disagrees" when hi < threshold. Negative claim
    (δ < threshold): "agrees" when hi < threshold, "disagrees" when lo > threshold. Otherwise, or when n < 2 or
    the interval is undefined: "inconclusive (n = N[ unit])".
    """
    undecided = f"inconclusive (n = {n}{' ' + unit if unit else ''})"
    if n < 2 or not (_finite(lo) and _finite(hi)):
        return undecided
    above, below = lo > threshold, hi < threshold
    if claim_positive:
        return "agrees" if above else ("disagrees" if below else undecided)
    return "agrees" if below else ("disagrees" if above else undecided)


def count_verdict(n_agree: int, n_disagree: int, n_total: int, unit: str = "") -> str:
    """Verdict on a claim that should hold in each of n_total units, n_agree of which agree and n_disagree
    disagree (the rest are undecided):

    all agree → "agrees"; none disagrees (some undecided) → "inconclusive (n = …)"; at least half agree →
    "partly agrees"; at least half disagree → "disagrees"; otherwise "inconclusive (n = …)"; no units →
    "not measured".
    """
    if n_total <= 0:
        return "not measured"
    undecided = f"inconclusive (n = {n_total}{' ' + unit if unit else ''}, {n_total - n_agree - n_disagree} undecided)"
    if n_agree == n_total:
        return "agrees"
    if n_disagree == 0:
        return undecided
    if 2 * n_agree >= n_total:
        return "partly agrees"
    if 2 * n_disagree >= n_total:
        return "disagrees"
    return undecided


def best_set(values: Mapping[Any, Mapping[Hashable, float]], best: Any = None, level: float = LEVEL,
             stratum: Callable[[Hashable], Any] | None = None) -> dict[str, Any]:
    """The best depth and the depths statistically indistinguishable from it.

    values: {depth: {unit: value}} (higher is better). best: the reference depth (default: the highest mean,
    the first depth in ``values``' order on ties; with ``stratum``, the mean over strata of per-stratum means).
    stratum: unit → stratum (e.g. the target of a (target, image, seed) unit); differences are then combined
    with :func:`stratified_ci`, otherwise with :func:`mean_ci`.

    Returns {"best", "set" (depths, in values' order, whose paired difference to best has hi ≥ 0 or no
    interval), "diffs": {depth: (mean, lo, hi, n) of depth − best}}. Empty values give best None and set [].
    """
    def smean(m: Mapping[Hashable, float]) -> float:
        if not m:
            return math.nan
        if stratum is None:
            return float(np.mean(list(m.values())))
        per: dict[Any, list[float]] = {}
        for u, v in m.items():
            per.setdefault(stratum(u), []).append(v)
        return float(np.mean([np.mean(v) for v in per.values()]))

    depths = [d for d in values if values[d]]
    if best is None:
        means = {d: smean(values[d]) for d in depths}
        best = max(depths, key=lambda d: (means[d], -depths.index(d))) if depths else None
    if best is None or best not in values:
        return {"best": best, "set": [], "diffs": {}}
    diffs: dict[Any, tuple[float, float, float, int]] = {}
    members = []
    for d in values:
        if d == best:
            members.append(d)
            continue
        if stratum is None:
            ci = mean_ci(pair_diffs(values[d], values[best]), level)
        else:
            groups: dict[Any, list[float]] = {}
            for u, v in values[d].items():
                if u in values[best]:
                    groups.setdefault(stratum(u), []).append(v - values[best][u])
            ci = stratified_ci(groups.values(), level)
        diffs[d] = ci
        if not (_finite(ci[2]) and ci[2] < 0.0):
            members.append(d)
    return {"best": best, "set": members, "diffs": diffs}


def crossfit_gain(values: Mapping[Any, Mapping[Hashable, float]], baseline: Mapping[Hashable, float],
                  group: Callable[[Hashable], Hashable], level: float = LEVEL) -> dict[str, Any]:
    """The gain of the best depth over a baseline, with the depth chosen on held-out units (no winner's curse).

    Picking the best depth and scoring it on the same fits biases the gain upward whenever depths are close.
    Here the units are split into groups (``group``: unit → group, e.g. the test image of an (image, seed)
    unit); for each group g the depth is the one with the highest mean over the units *outside* g (the first
    depth in ``values``' order on ties) and it is scored on g's own units, paired with ``baseline``. The pooled
    differences give the interval (:func:`mean_ci`).

    values: {depth: {unit: value}} (higher is better); baseline: {unit: value}. Returns {"mean", "lo", "hi", "n",
    "picks": {group: depth}}; with fewer than two groups nothing is held out: NaN, n = 0 and no picks.
    """
    groups = list(dict.fromkeys(group(u) for d in values for u in values[d]))
    if len(groups) < 2:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n": 0, "picks": {}}
    diffs: list[float] = []
    picks: dict[Hashable, Any] = {}
    order = list(values)
    for g in groups:
        means = {}
        for d in order:
            rest = [v for u, v in values[d].items() if group(u) != g]
            if rest:
                means[d] = float(np.mean(rest))
        if not means:
            continue
        k = max(means, key=lambda d: (means[d], -order.index(d)))
        picks[g] = k
        diffs += [v - baseline[u] for u, v in values[k].items() if group(u) == g and u in baseline]
    m, lo, hi, n = mean_ci(diffs, level)
    return {"mean": m, "lo": lo, "hi": hi, "n": n, "picks": picks}


def agreement(predicted: Any, bs: Mapping[str, Any], depths: Sequence[Any] | None = None) -> str:
    """'agrees' (predicted depth inside the best set, which excludes some measured depth), 'disagrees'
    (significantly worse than the best), 'undecided' (the set holds every measured depth, or the predicted depth
    was not measured) or 'n/a' (no prediction or no best depth)."""
    if predicted is None or bs.get("best") is None:
        return "n/a"
    measured = list(depths) if depths is not None else [bs["best"], *bs.get("diffs", {})]
    if predicted not in measured:
        return "undecided"
    if predicted in bs["set"]:
        return "undecided" if set(bs["set"]) >= set(measured) else "agrees"
    return "disagrees"


# ------------------------------------------------------------------------------------------- formatting


def fmt_ci(mean: float, lo: float, hi: float, n: int, d: int = 2, signed: bool = True) -> str:
    """'+1.23 [-0.40, 2.90] (n=4)'; 'n/a' without a mean, '[n/a]' when the interval is undefined."""
    if not _finite(mean):
        return "n/a"
    m = f"{mean:+.{d}f}" if signed else f"{mean:.{d}f}"
    iv = f"[{lo:.{d}f}, {hi:.{d}f}]" if _finite(lo) and _finite(hi) else "[n/a]"
    return f"{m} {iv} (n={n})"


# ------------------------------------------------------------------------------------------- regime check

PAPER_NO_FREEZE_DB: dict[str, dict[str, tuple[float, float]]] = {
    "siren": {"celeba": (43.0, 43.0), "oasis": (49.0, 49.0), "kodak": (30.0, 31.0)},
    "ffmlp": {"celeba": (33.0, 35.0), "oasis": (40.0, 44.0), "kodak": (28.0, 29.0)},
}
"""The paper's no-freeze test PSNR (dB) per backbone and target dataset, as (low, high) of its reported values
[paper]. Keys are the paper's dataset names; other target names have no band."""
BAND_TOL_DB = 3.0
"""A run is "inside the paper's band" when its mean no-freeze PSNR is within this many dB of the paper's range."""
SATURATED_DB = 55.0
"""Above this mean PSNR the fits are saturated (reconstruction near lossless), so depth effects are compressed."""
FAILED_DB = 20.0
"""Below this mean PSNR the fits failed to fit the images at all."""


PAPER_DATASETS: tuple[str, ...] = ("celeba", "oasis", "kodak")
"""The paper's datasets, as the keys of :data:`PAPER_NO_FREEZE_DB` name them: CelebA-HQ faces, OASIS axial MRI
slices, Kodak photographs."""


def check_analogues(analogues: Mapping[str, str] | None, datasets: Iterable[str] | None = None) -> dict[str, str]:
    """A mapping {dataset name: paper dataset} checked: every value one of :data:`PAPER_DATASETS` (any case; returned
    in lower case), every key a string and, when ``datasets`` is given, one of them. One-line ValueError otherwise."""
    out: dict[str, str] = {}
    if not analogues:
        return out
    if not isinstance(analogues, Mapping):
        raise ValueError(f"analogues: expected a table {{dataset = paper dataset}}, got {analogues!r}")
    names = None if datasets is None else list(datasets)
    for k, v in analogues.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValueError(f"analogues: expected dataset = \"paper dataset\" strings, got {k!r} = {v!r}")
        if v.lower() not in PAPER_DATASETS:
            raise ValueError(f"analogues: {k} = {v!r} is not one of the paper's datasets ({', '.join(PAPER_DATASETS)})")
        if names is not None and k not in names:
            raise ValueError(f"analogues: {k!r} is not a dataset ({', '.join(names)})")
        out[k] = v.lower()
    return out


def paper_name(target: str, analogues: Mapping[str, str] | None = None) -> str | None:
    """The paper dataset a target is compared with: its analogue when ``analogues`` names one, else the target's
    own name when it is a paper dataset (case-insensitive), else None."""
    mapped = (analogues or {}).get(target)
    if mapped is not None:
        return str(mapped).lower()
    t = str(target).lower()
    return t if t in PAPER_DATASETS else None


def paper_band(backbone: str, target: str, analogues: Mapping[str, str] | None = None) -> tuple[float, float] | None:
    """The paper's no-freeze (low, high) in dB for (backbone, target dataset), or None. The target is the paper's
    dataset name (case-insensitive) or a dataset that ``analogues`` maps to one (:func:`paper_name`)."""
    name = paper_name(target, analogues)
    return None if name is None else PAPER_NO_FREEZE_DB.get(str(backbone).lower(), {}).get(name)


def band_distance(mean: float, band: tuple[float, float] | None, tol: float = BAND_TOL_DB) -> float:
    """dB between ``mean`` and the band widened by ``tol`` on both sides: 0 inside, positive outside; NaN without
    a band or a finite mean."""
    if band is None or not _finite(mean):
        return math.nan
    lo, hi = band[0] - tol, band[1] + tol
    return max(lo - mean, mean - hi, 0.0)


def regime_flag(mean: float, band: tuple[float, float] | None, tol: float = BAND_TOL_DB) -> str:
    """Words for where a mean no-freeze PSNR sits: 'saturated (> 55 dB)', 'failed (< 20 dB)', "inside the
    paper's band (±3 dB)", 'outside the band by X dB' (distance to the nearest edge of the widened band), or
    'paper band unknown' / 'no no-freeze fits'."""
    if not _finite(mean):
        return "no no-freeze fits"
    if mean > SATURATED_DB:
        return f"saturated (> {SATURATED_DB:g} dB)"
    if mean < FAILED_DB:
        return f"failed (< {FAILED_DB:g} dB)"
    if band is None:
        return "paper band unknown"
    lo, hi = band[0] - tol, band[1] + tol
    if lo <= mean <= hi:
        return f"inside the paper's band (±{tol:g} dB)"
    return f"outside the band by {(lo - mean) if mean < lo else (mean - hi):.2f} dB"


__all__ = ["LEVEL", "betainc", "t_cdf", "t_quantile", "unit_values", "pair_diffs", "paired_differences", "mean_ci",
           "stratified_ci", "welch_ci", "verdict", "count_verdict", "best_set", "agreement", "fmt_ci", "PAPER_NO_FREEZE_DB",
           "BAND_TOL_DB", "SATURATED_DB", "FAILED_DB", "PAPER_DATASETS", "check_analogues", "paper_name", "paper_band",
           "band_distance", "regime_flag"]
