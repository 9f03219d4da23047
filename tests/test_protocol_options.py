"""Protocol options that may change the study's result qualitatively, and their defaults.

* ``TrainConfig.stop_metric``: the cohort's target-PSNR stop on the mean per-image PSNR (default) or on the
  summed-MSE reading 10·log10(4 / Σᵢ MSEᵢ) some STRAINER-derived code logs; ``target_psnr = None`` runs all steps.
* ``reinit`` (``SweepSpec``, ``fit_transfer``, ``transfer_stack``): re-initialised layers drawn 'fresh' (default) or
  the first one by the first-layer rule, as STRAINER's public code builds a decoder.

Every check is against an independent reference (numpy, a hand-written SIREN init loop, hand-made MSE sequences);
the defaults leave every key as it was.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_signals
from inrlens.config import DataConfig, NetConfig, TrainConfig, config_hash, from_dict, key_dict
from inrlens.fit import fit_cohort, fit_transfer, reached_target, stop_psnr
from inrlens.nets import cohort_stack, draw_init, transfer_stack
from inrlens.sweep.plan import make_plan
from inrlens.sweep.spec import SweepSpec, spec_from_dict


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def np_mean_psnr(mse_pm1: np.ndarray) -> float:
    return float(np.mean(10 * np.log10(4.0 / np.asarray(mse_pm1, dtype=np.float64))))


def np_summed_psnr(mse_pm1: np.ndarray) -> float:
    return float(10 * np.log10(4.0 / np.sum(np.asarray(mse_pm1, dtype=np.float64))))


# ------------------------------------------------------------------------------------------- stop metric
def test_stop_psnr_against_numpy():
    rng = np.random.default_rng(0)
    for n in (1, 3, 10):
        mse = rng.uniform(1e-4, 5e-2, size=n)
        t = torch.tensor(mse, dtype=torch.float64)
        alive = torch.ones(n, dtype=torch.bool)
        assert stop_psnr(t, alive) == pytest.approx(np_mean_psnr(mse), abs=1e-12)
        assert stop_psnr(t, alive, "summed_mse_psnr") == pytest.approx(np_summed_psnr(mse), abs=1e-12)
        # the summed reading is the PSNR of the mean MSE minus 10·log10(N) exactly, and by Jensen at most the
        # mean per-image PSNR minus 10·log10(N)
        pooled = float(10 * np.log10(4.0 / mse.mean()))
        assert stop_psnr(t, alive, "summed_mse_psnr") == pytest.approx(pooled - 10 * math.log10(n), abs=1e-12)
        assert stop_psnr(t, alive, "summed_mse_psnr") <= np_mean_psnr(mse) - 10 * math.log10(n) + 1e-12
    # equal MSEs: exactly mean − 10·log10(N) (N = 10: 10 dB)
    eq = torch.full((10,), 4e-3, dtype=torch.float64)
    ones = torch.ones(10, dtype=torch.bool)
    assert stop_psnr(eq, ones) == pytest.approx(30.0, abs=1e-12)
    assert stop_psnr(eq, ones, "summed_mse_psnr") == pytest.approx(20.0, abs=1e-12)
    # only members whose loss is finite count; none alive → NaN
    mse = torch.tensor([4e-3, float("nan"), 4e-2], dtype=torch.float64)
    alive = torch.tensor([True, False, True])
    assert stop_psnr(mse, alive) == pytest.approx(np_mean_psnr([4e-3, 4e-2]), abs=1e-12)
    assert stop_psnr(mse, alive, "summed_mse_psnr") == pytest.approx(np_summed_psnr([4e-3, 4e-2]), abs=1e-12)
    assert math.isnan(stop_psnr(mse, torch.zeros(3, dtype=torch.bool)))
    with pytest.raises(ValueError, match="stop metric"):
        stop_psnr(mse, alive, "median")


def test_stop_step_on_hand_made_mse_sequences():
    """Per-member MSE sequences (N = 4) built so that the two rules cross a 30 dB target at different steps."""
    n = 4
    # mean PSNR of member MSE m: 10·log10(4/m); 30 dB ↔ m = 4e-3; summed 30 dB ↔ Σ m = 4e-3 ↔ m = 1e-3 each
    levels = [4e-2, 1e-2, 5e-3, 4e-3, 3e-3, 2e-3, 1.5e-3, 1.1e-3, 8e-4]
    seq = [np.full(n, m) * np.array([0.9, 1.0, 1.1, 1.0]) for m in levels]  # uneven members
    alive = torch.ones(n, dtype=torch.bool)

    def first_cross(reference) -> int | None:
        return next((i for i, m in enumerate(seq) if reference(m) >= 30.0), None)

    want_mean, want_sum = first_cross(np_mean_psnr), first_cross(np_summed_psnr)
    assert (want_mean, want_sum) == (3, 8)  # by hand: mean 30.01 dB at 4e-3 (29.04 at 5e-3); Σ = 4.4e-3 at 1.1e-3, 3.2e-3 < 4e-3 at 8e-4
    for metric, want in (("mean_psnr", want_mean), ("summed_mse_psnr", want_sum)):
        cfg = TrainConfig(target_psnr=30.0, stop_metric=metric)
        got = next((i for i, m in enumerate(seq) if reached_target(torch.tensor(m), alive, cfg)), None)
        assert got == want, metric
    assert not any(reached_target(torch.tensor(m), alive, TrainConfig(target_psnr=None)) for m in seq)


def _summed_from_curve(curve_row: torch.Tensor) -> float:
    """The summed-MSE reading recomputed from a recorded curve row (per-member PSNR on [0, 1])."""
    mse01 = 10.0 ** (-curve_row.double().numpy() / 10.0)
    return float(-10 * np.log10(mse01.sum()))


def test_cohort_stops_where_each_rule_crosses():
    sigs = tiny_signals(3, 16, 3, seed=1)
    net = NetConfig(width=16, depth=3)
    base = TrainConfig(steps=400, lr=1e-3, log_every=5, device="cpu")
    _, full, _ = fit_cohort(sigs, net, base, progress=False)  # no target: every step runs
    assert full.steps_run == 400 and full.steps[-1] == 399
    curve = full.curve  # (T, 3) per-member PSNR at the logged steps (before that step's update)
    mean = curve.mean(1).numpy()
    summed = np.array([_summed_from_curve(row) for row in curve])
    assert (summed <= mean - 10 * np.log10(3) + 1e-9).all()
    target = float(np.round(summed[-1] - 0.2, 2))  # a level the summed reading reaches near the end
    i_mean, i_sum = int(np.argmax(mean >= target)), int(np.argmax(summed >= target))
    assert mean[i_mean] >= target and summed[i_sum] >= target
    assert i_sum > i_mean  # the summed reading is ≥ 10·log10(3) dB lower: it stops later
    for metric, i in (("mean_psnr", i_mean), ("summed_mse_psnr", i_sum)):
        _, fr, _ = fit_cohort(sigs, net, replace(base, target_psnr=target, stop_metric=metric), progress=False)
        assert fr.steps_run == full.steps[i] + 1, metric  # stopped after the update of the first logged crossing
        torch.testing.assert_close(fr.curve, curve[: i + 1], rtol=0, atol=0)  # same loop up to there


# ------------------------------------------------------------------------------------------- re-initialisation
def siren_reference(width: int, depth: int, out: int, seed: int, omega0: float, first_rule_at: int | None) -> list[torch.Tensor]:
    """A hand-written SIREN init in draw order W₀, b₀, …, W_L, b_L from one generator (weights (in, out))."""
    g = torch.Generator().manual_seed(seed)
    dims = [(2, width)] + [(width, width)] * (depth - 1) + [(width, out)]
    ts = []
    for ell, (fi, fo) in enumerate(dims):
        a = 1.0 / fi if ell in (0, first_rule_at) else math.sqrt(6.0 / fi) / omega0
        ts.append(torch.empty(fi, fo).uniform_(-a, a, generator=g))
        ts.append(torch.empty(1, fo).uniform_(-1 / math.sqrt(fi), 1 / math.sqrt(fi), generator=g))
    return ts


def test_first_layer_rule_reinit_against_hand_written_init():
    net = NetConfig(width=16, depth=4)
    L = net.depth
    enc = cohort_stack(net, 3, 2, seed=5)
    seeds = [7, 8]
    for k in range(L):
        fresh = transfer_stack(enc, k, seeds, 3)
        alt = transfer_stack(enc, k, seeds, 3, reinit="first_layer_rule")
        for ell in range(k + 1):  # the cohort's layers, shared
            assert torch.equal(alt.weights[ell], enc.weights[ell]) and alt.weights[ell].shape[0] == 1
        for i, s in enumerate(seeds):
            want = siren_reference(16, L, 3, s, net.omega0, k + 1 if k + 1 < L else None)
            for ell in range(k + 1, L + 1):
                assert torch.equal(alt.weights[ell][i], want[2 * ell]), (k, ell)
                assert torch.equal(alt.biases[ell][i], want[2 * ell + 1]), (k, ell)
        if k + 1 < L:  # only layer k+1 differs from 'fresh'; its range is the first layer's U(±1/width)
            assert not torch.equal(alt.weights[k + 1], fresh.weights[k + 1])
            assert float(alt.weights[k + 1].detach().abs().max()) <= 1 / 16
            assert float(fresh.weights[k + 1].detach().abs().max()) > 1 / 16 * 0.3
        for ell in range(L + 1):
            if ell != k + 1:
                assert torch.equal(alt.weights[ell], fresh.weights[ell]) and torch.equal(alt.biases[ell], fresh.biases[ell])
    # the default is the plain random init's layers; no-freeze is unchanged by the option
    plain = siren_reference(16, L, 3, 7, net.omega0, None)
    assert torch.equal(transfer_stack(enc, 0, [7], 3).weights[1][0], plain[2])
    a, b = transfer_stack(enc, None, seeds, 3), transfer_stack(enc, None, seeds, 3, reinit="first_layer_rule")
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert draw_init(net, 3, 7).weights[2].shape == draw_init(net, 3, 7, first_rule_at=2).weights[2].shape
    for bad in (0, L):
        with pytest.raises(ValueError, match="first_rule_at"):
            draw_init(net, 3, 7, first_rule_at=bad)
    with pytest.raises(ValueError, match="reinit"):
        transfer_stack(enc, 0, seeds, 3, reinit="zeros")


def test_fit_transfer_reinit_option():
    sigs = tiny_signals(3, 16, 3, seed=2)
    net = NetConfig(width=16, depth=3)
    tc = TrainConfig(steps=6, lr=1e-3, log_every=2, device="cpu")
    enc, _, _ = fit_cohort(sigs[:2], net, tc, progress=False)
    st, _, _ = fit_transfer(enc, sigs[2:], 0, replace(tc, steps=1), seeds=(3,), progress=False, with_lpips=False,
                            reinit="first_layer_rule")
    assert float(st.weights[1].abs().max()) <= 1 / 16 + 1e-3  # one Adam step at lr 1e-3 from U(±1/16)
    s0, _, r0 = fit_transfer(enc, sigs[2:], 1, tc, seeds=(3,), progress=False, with_lpips=False)
    s1, _, r1 = fit_transfer(enc, sigs[2:], 1, tc, seeds=(3,), progress=False, with_lpips=False, reinit="fresh")
    assert r0[0].psnr == r1[0].psnr  # 'fresh' is the default
    with pytest.raises(ValueError, match="reinit"):
        fit_transfer(enc, sigs[2:], 0, tc, progress=False, reinit="zeros")


# ------------------------------------------------------------------------------------------- keys and config
def test_defaults_keep_keys_and_options_enter_them():
    assert "stop_metric" not in key_dict(TrainConfig())
    assert config_hash(TrainConfig(steps=5000, target_psnr=30.0, lr=1e-4, stop_metric="mean_psnr")) == \
        config_hash(TrainConfig(steps=5000, target_psnr=30.0, lr=1e-4))
    assert key_dict(TrainConfig(stop_metric="summed_mse_psnr"))["stop_metric"] == "summed_mse_psnr"
    assert "reinit" not in key_dict(SweepSpec())
    assert key_dict(SweepSpec(reinit="first_layer_rule"))["reinit"] == "first_layer_rule"
    with pytest.raises(ValueError, match="stop_metric"):
        from_dict(TrainConfig, {"stop_metric": "sum"})
    with pytest.raises(ValueError, match="stop_metric"):
        TrainConfig(stop_metric="sum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reinit"):
        spec_from_dict({"reinit": "zeros"})
    spec, _ = spec_from_dict({"reinit": "first_layer_rule", "cohort_train": {"stop_metric": "summed_mse_psnr"}})
    assert spec.reinit == "first_layer_rule" and spec.cohort_train.stop_metric == "summed_mse_psnr"
    assert spec.cohort_train.target_psnr == 30.0  # the rest of the cohort schedule is the default's


def test_plan_keys(tmp_path: Path):
    folder = tmp_path / "set"
    folder.mkdir()
    for i, s in enumerate(tiny_signals(4, 16, 3, seed=0)):
        arr = ((s.pixels.numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"img{i}.png")
    base = SweepSpec(data=(f"a={folder}",), backbones=("siren",), seeds=(0,), n_cohort=2, n_test=2,
                     net=NetConfig(width=8, depth=2), images=DataConfig(size=16), lpips=False)
    p0 = make_plan(base, tmp_path / "run")
    same = make_plan(replace(base, reinit="fresh", cohort_train=replace(base.cohort_train, stop_metric="mean_psnr")), tmp_path / "run")
    assert [f.key for f in same.fits] == [f.key for f in p0.fits] and same.cohorts[0].key == p0.cohorts[0].key
    alt = make_plan(replace(base, reinit="first_layer_rule"), tmp_path / "run")
    assert alt.cohorts[0].key == p0.cohorts[0].key  # the cohort does not depend on the test-time re-initialisation
    for f0, f1 in zip(p0.fits, alt.fits):
        assert (f0.key == f1.key) == (f0.regime == "random"), f0.depth
    summed = make_plan(replace(base, cohort_train=replace(base.cohort_train, stop_metric="summed_mse_psnr")), tmp_path / "run")
    assert summed.cohorts[0].key != p0.cohorts[0].key
    for f0, f1 in zip(p0.fits, summed.fits):
        assert (f0.key == f1.key) == (f0.regime == "random"), f0.depth
