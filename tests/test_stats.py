"""inrlens.stats against published t quantiles and hand-computed intervals and verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inrlens import stats as S


@pytest.mark.parametrize("df, q", [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (9, 2.262), (29, 2.045), (120, 1.980)])
def test_t_quantile_matches_tables(df, q):
    assert S.t_quantile(0.975, df) == pytest.approx(q, abs=5e-4)
    assert S.t_quantile(0.025, df) == pytest.approx(-q, abs=5e-4)


def test_t_quantile_other_levels_and_normal_limit():
    assert S.t_quantile(0.95, 5) == pytest.approx(2.015, abs=5e-4)  # one-sided 5 %, df 5
    assert S.t_quantile(0.995, 10) == pytest.approx(3.169, abs=5e-4)
    assert S.t_quantile(0.5, 7) == 0.0
    assert S.t_quantile(0.975, 1e6) == pytest.approx(1.95996, abs=1e-4)  # → standard normal
    # df = 1 is the Cauchy distribution: quantile = tan(π (p − ½))
    for p in (0.6, 0.9, 0.99):
        assert S.t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-8)
    # df = 2 has a closed form: t = (2p − 1) √(2 / (4 p (1 − p)))
    for p in (0.7, 0.975):
        assert S.t_quantile(p, 2) == pytest.approx((2 * p - 1) * math.sqrt(2 / (4 * p * (1 - p))), rel=1e-8)
    with pytest.raises(ValueError):
        S.t_quantile(1.0, 3)


def test_betainc_closed_forms():
    # I_x(1, b) = 1 − (1 − x)^b; I_x(a, 1) = x^a; I_½(a, a) = ½
    assert S.betainc(1.0, 3.0, 0.3) == pytest.approx(1 - 0.7 ** 3, rel=1e-12)
    assert S.betainc(2.5, 1.0, 0.4) == pytest.approx(0.4 ** 2.5, rel=1e-12)
    assert S.betainc(4.0, 4.0, 0.5) == pytest.approx(0.5, rel=1e-12)


def test_mean_ci_hand_computed():
    m, lo, hi, n = S.mean_ci([1, 2, 3, 4])
    # mean 2.5, s = √(5/3) = 1.291, half-width t_{0.975,3} · s / √4 = 3.1824 · 0.6455 = 2.0543
    half = 3.182446 * math.sqrt(5 / 3) / 2
    assert (m, n) == (2.5, 4)
    assert lo == pytest.approx(2.5 - half, abs=1e-5) and hi == pytest.approx(2.5 + half, abs=1e-5)
    assert hi - lo == pytest.approx(2 * 2.054, abs=2e-3)
    assert S.mean_ci([]) [3] == 0 and math.isnan(S.mean_ci([])[0])
    m1 = S.mean_ci([5.0])
    assert m1[0] == 5.0 and math.isnan(m1[1]) and math.isnan(m1[2]) and m1[3] == 1
    assert S.mean_ci([1, None, float("nan"), 3])[3] == 2  # non-finite values are dropped


def test_bootstrap_reproducible_and_sensible():
    d = np.random.default_rng(3).normal(1.0, 2.0, size=25)
    a = S.mean_ci(d, method="bootstrap", seed=7)
    assert a == S.mean_ci(d, method="bootstrap", seed=7)
    assert a != S.mean_ci(d, method="bootstrap", seed=8)
    # the percentile interval of the mean is close to the t interval for 25 normal values
    t = S.mean_ci(d)
    assert a[0] == t[0] and a[1] == pytest.approx(t[1], abs=0.35) and a[2] == pytest.approx(t[2], abs=0.35)
    # independent reference: the same resampling written as a plain loop
    rng = np.random.default_rng(7)
    idx = rng.integers(0, d.size, size=(10_000, d.size))
    means = [float(np.mean([d[i] for i in row])) for row in idx[:50]]
    assert np.allclose(means, d[idx[:50]].mean(axis=1))
    with pytest.raises(ValueError):
        S.mean_ci(d, method="jackknife")


def test_stratified_and_welch_hand_computed():
    # one stratum = the plain t interval
    assert S.stratified_ci([[1, 2, 3, 4]]) == pytest.approx(S.mean_ci([1, 2, 3, 4]))
    # two strata with equal variance and size: mean of means, var = (v + v) / 4, df = (2v)² / (2 v² / 3) = 6
    g1, g2 = [1, 2, 3, 4], [11, 12, 13, 14]
    m, lo, hi, n = S.stratified_ci([g1, g2])
    v = (5 / 3) / 4
    half = S.t_quantile(0.975, 6) * math.sqrt(2 * v) / 2
    assert (m, n) == (7.5, 8) and hi - m == pytest.approx(half)
    assert math.isnan(S.stratified_ci([[1, 2], [3]])[1])  # a one-value stratum has no variance
    # Welch: a = [1, 2, 3, 4], b = [0, 0, 1, 1]: diff 2.5 − 0.5 = 2, va = (5/3)/4, vb = (1/3)/4
    va, vb = (5 / 3) / 4, (1 / 3) / 4
    df = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 3)
    m, lo, hi, n = S.welch_ci([1, 2, 3, 4], [0, 0, 1, 1])
    assert m == 2.0 and n == 8 and hi - m == pytest.approx(S.t_quantile(0.975, df) * math.sqrt(va + vb))


def test_verdicts():
    # mean +1 but the interval [-3.68, 5.68] straddles 0 → inconclusive
    m, lo, hi, n = S.mean_ci([3, -2, 4, -1])
    assert S.verdict(lo, hi, True, n=n) == "inconclusive (n = 4)"
    # the same mean with more data (the same four values repeated 16×: s ≈ 2.57, half-width ≈ 2.00 · 2.57 / 8 = 0.64) → excludes 0
    m2, lo2, hi2, n2 = S.mean_ci([3, -2, 4, -1] * 16)
    assert m2 == m and lo2 > 0 and S.verdict(lo2, hi2, True, n=n2) == "agrees"
    assert S.verdict(lo2, hi2, False, n=n2) == "disagrees"
    assert S.verdict(-3.0, -1.0, True, n=5) == "disagrees"
    assert S.verdict(-3.0, -1.0, False, n=5) == "agrees"
    assert S.verdict(1.0, 2.0, True, n=1) == "inconclusive (n = 1)"  # one unit never decides
    assert S.verdict(float("nan"), float("nan"), True, n=9, unit="fits") == "inconclusive (n = 9 fits)"
    # a threshold: "matches within 0.5 dB" = δ > −0.5
    assert S.verdict(-0.4, 0.3, True, n=4, threshold=-0.5) == "agrees"
    assert S.verdict(-2.0, -0.6, True, n=4, threshold=-0.5) == "disagrees"


def test_count_verdict():
    assert S.count_verdict(4, 0, 4) == "agrees"
    assert S.count_verdict(3, 1, 4) == "partly agrees"
    assert S.count_verdict(1, 3, 4) == "disagrees"
    assert S.count_verdict(3, 0, 4, "pairs") == "inconclusive (n = 4 pairs, 1 undecided)"
    assert S.count_verdict(1, 1, 4) == "inconclusive (n = 4, 2 undecided)"
    assert S.count_verdict(0, 0, 0) == "not measured"


def test_paired_differences_ignore_unmatched_rows():
    a = [{"image": "x", "seed": 0, "psnr": 30.0, "status": "ok"}, {"image": "y", "seed": 0, "psnr": 32.0},
         {"image": "z", "seed": 0, "psnr": 50.0},  # no partner in b
         {"image": "x", "seed": 1, "psnr": 31.0, "status": "diverged"},  # not ok
         {"image": "x", "seed": 0, "psnr": 99.0}]  # repeated unit: the first row counts
    b = [{"image": "y", "seed": 0, "psnr": 29.0}, {"image": "x", "seed": 0, "psnr": 28.5},
         {"image": "x", "seed": 1, "psnr": 27.0}, {"image": "w", "seed": 0, "psnr": 10.0}, {"image": "y", "seed": 1, "psnr": None}]
    d = S.paired_differences(a, b)
    assert sorted(d.tolist()) == [1.5, 3.0]
    # pairing on the image alone matches (x, seed 0) with (x, seed 0) — the first b row of image x
    assert sorted(S.paired_differences(a, b, by=("image",)).tolist()) == [1.5, 3.0]


def test_best_set_and_agreement():
    units = [(f"im{i}", 0) for i in range(6)]
    base = dict(zip(units, [28.0, 31.5, 30.2, 26.9, 33.0, 29.4]))
    # depth 1: best (+0.1 on average) but its paired differences to depth 2 alternate ±0.6 → indistinguishable;
    # depth 0: 3 dB worse with a small spread → significantly worse
    wiggle = [0.6, -0.4, 0.7, -0.5, 0.6, -0.4]
    vals = {0: {u: base[u] - 3.0 + 0.1 * (i % 2) for i, u in enumerate(units)},
            1: {u: base[u] + wiggle[i] for i, u in enumerate(units)},
            2: {u: base[u] for u in units}}
    bs = S.best_set(vals)
    assert bs["best"] == 1 and bs["set"] == [1, 2]
    d0 = np.array([vals[0][u] - vals[1][u] for u in units])
    assert bs["diffs"][0] == pytest.approx(S.mean_ci(d0)) and bs["diffs"][0][2] < 0
    d2 = np.array([vals[2][u] - vals[1][u] for u in units])
    assert bs["diffs"][2] == pytest.approx(S.mean_ci(d2)) and bs["diffs"][2][1] < 0 < bs["diffs"][2][2]
    assert S.agreement(2, bs) == "agrees" and S.agreement(1, bs) == "agrees" and S.agreement(0, bs) == "disagrees"
    assert S.agreement(4, bs) == "undecided" and S.agreement(None, bs) == "n/a"
    # two units per depth with a large spread: nothing is significantly worse → every depth in the set → undecided
    two = {k: dict(list(v.items())[:2]) for k, v in vals.items()}
    two[0] = {u: two[1][u] + (5.0 if i == 0 else -9.0) for i, u in enumerate(two[1])}
    b2 = S.best_set(two)
    assert set(b2["set"]) == {0, 1, 2} and S.agreement(1, b2) == "undecided"
    # a given reference depth is kept; strata average per-stratum means
    strat = {0: {("A", 1): 1.0, ("A", 2): 3.0, ("B", 1): 10.0}, 1: {("A", 1): 2.0, ("A", 2): 4.0, ("B", 1): 10.5}}
    b3 = S.best_set(strat, stratum=lambda u: u[0])
    assert b3["best"] == 1  # means over strata: depth 0 (2 + 10) / 2 = 6, depth 1 (3 + 10.5) / 2 = 6.75
    assert b3["diffs"][0][0] == pytest.approx(-0.75)  # mean over strata of (−1, −0.5)
    assert S.best_set(strat, best=0)["best"] == 0


def test_crossfit_gain_hand_computed_and_free_of_the_winners_curse():
    """Three test images × 2 seeds. Depth 1 wins on images a and b, depth 0 on c: held out, image c is scored at
    the depth the others prefer (1), and so on — every difference below is worked out by hand."""
    u = [(im, sd) for im in "abc" for sd in (0, 1)]
    none = dict(zip(u, [30.0, 31.0, 28.0, 29.0, 33.0, 32.0]))
    k0 = dict(zip(u, [30.5, 31.5, 28.5, 29.5, 36.0, 35.0]))  # +0.5, +0.5, +0.5, +0.5, +3, +3
    k1 = dict(zip(u, [32.0, 33.0, 30.0, 31.0, 32.0, 31.0]))  # +2, +2, +2, +2, −1, −1
    cf = S.crossfit_gain({0: k0, 1: k1}, none, group=lambda x: x[0])
    # held out a: means over b, c: k0 (28.5+29.5+36+35)/4 = 32.25 > k1 (30+31+32+31)/4 = 31 → k0 on a: +0.5, +0.5
    # held out b: over a, c: k0 (30.5+31.5+36+35)/4 = 33.25 > k1 (32+33+32+31)/4 = 32 → k0 on b: +0.5, +0.5
    # held out c: over a, b: k0 (30.5+31.5+28.5+29.5)/4 = 30 < k1 31.5 → k1 on c: −1, −1
    want = [0.5, 0.5, 0.5, 0.5, -1.0, -1.0]
    assert cf["picks"] == {"a": 0, "b": 0, "c": 1}
    assert (cf["mean"], cf["lo"], cf["hi"], cf["n"]) == pytest.approx(S.mean_ci(want))
    # the in-sample gain of the overall best depth (k0: mean 33.5 vs k1 31.5) is larger: the winner's curse
    assert S.mean_ci(S.pair_diffs(k0, none))[0] == pytest.approx(4 / 3) and 4 / 3 > cf["mean"]
    # ties go to the first depth in the mapping's order; one group leaves nothing to hold out
    tie = S.crossfit_gain({1: none, 0: none}, none, group=lambda x: x[0])
    assert set(tie["picks"].values()) == {1} and tie["mean"] == 0.0
    one = S.crossfit_gain({0: {("a", 0): 1.0, ("a", 1): 2.0}}, {("a", 0): 0.0, ("a", 1): 0.0}, group=lambda x: x[0])
    assert one["n"] == 0 and math.isnan(one["mean"]) and one["picks"] == {}


def test_regime_flags():
    assert S.regime_flag(56.0, S.paper_band("siren", "celeba")) == "saturated (> 55 dB)"
    assert S.regime_flag(19.0, S.paper_band("ffmlp", "kodak")) == "failed (< 20 dB)"
    assert S.regime_flag(44.0, S.paper_band("siren", "celeba")) == "inside the paper's band (±3 dB)"
    assert S.regime_flag(44.0, S.paper_band("SIREN", "CelebA")) == "inside the paper's band (±3 dB)"
    # FFMLP kodak 28–29 dB, widened to 25–32: 35 dB is 3.00 dB above, 22 dB is 3.00 dB below
    assert S.regime_flag(35.0, S.paper_band("ffmlp", "kodak")) == "outside the band by 3.00 dB"
    assert S.regime_flag(22.0, S.paper_band("ffmlp", "kodak")) == "outside the band by 3.00 dB"
    assert S.paper_band("siren", "faces") is None and S.regime_flag(40.0, None) == "paper band unknown"
    assert S.regime_flag(float("nan"), None) == "no no-freeze fits"


def test_fmt_ci():
    assert S.fmt_ci(1.234, -0.4, 2.9, 4) == "+1.23 [-0.40, 2.90] (n=4)"
    assert S.fmt_ci(1.0, float("nan"), float("nan"), 1) == "+1.00 [n/a] (n=1)"
    assert S.fmt_ci(float("nan"), 0, 0, 0) == "n/a"
