"""Core engine against independent references: naive per-INR loops, hand-computed values, skimage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import tiny_signals
from inrlens.config import NetConfig, TrainConfig
from inrlens.data import grid
from inrlens.fit import Group, fit_cohort, fit_single, fit_transfer, make_optimizer, train
from inrlens.metrics import psnr, ssim
from inrlens.nets import Stack, cohort_stack, draw_init, transfer_stack
from inrlens.store import load_stack, save_stack

SIREN = NetConfig(backbone="siren", width=16, depth=5)
FFMLP = NetConfig(backbone="ffmlp", width=16, depth=5, ff_features=8, ff_sigma=2.0)
QUIET = dict(progress=False, with_lpips=False)


def naive_forward(cfg: NetConfig, fourier, weights, biases, coords: torch.Tensor) -> torch.Tensor:
    """Eq. 1 for one INR written the plain way: a python loop over layers with 2-D matmuls."""
    h = coords
    if cfg.backbone == "ffmlp":
        proj = 2 * math.pi * coords @ fourier
        h = torch.cat([torch.sin(proj), torch.cos(proj)], -1)
    for ell in range(cfg.depth):
        z = h @ weights[ell] + biases[ell]
        h = torch.sin((cfg.omega0_first if ell == 0 else cfg.omega0) * z) if cfg.backbone == "siren" else torch.relu(z)
    return h @ weights[-1] + biases[-1]


@pytest.mark.parametrize("cfg", [SIREN, FFMLP], ids=["siren", "ffmlp"])
def test_forward_matches_naive(cfg):
    seeds = [3, 7, 11]
    st = Stack.init(cfg, 3, seeds)
    coords = grid(8, 12)
    out = st(coords)
    assert out.shape == (3, 96, 3)
    for i, s in enumerate(seeds):
        ini = draw_init(cfg, 3, s)
        ref = naive_forward(cfg, ini.encoding.get("fourier"), ini.weights, ini.biases, coords)
        torch.testing.assert_close(out[i], ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cfg", [SIREN, FFMLP], ids=["siren", "ffmlp"])
def test_stack_equals_loop(cfg):
    """B members fitted in one stack == B INRs fitted separately with the same seeds (fp32, 25 steps)."""
    sigs = tiny_signals(3, 16)
    tc = TrainConfig(steps=25, log_every=5)
    stack, fr, res = fit_single(sigs, cfg, tc, seeds=[0], **QUIET)
    for i, s in enumerate(sigs):
        alone, fr1, res1 = fit_single([s], cfg, tc, seeds=[0], **QUIET)
        for ell in range(cfg.depth + 1):
            torch.testing.assert_close(stack.weights[ell][i], alone.weights[ell][0], rtol=0, atol=1e-5)
            torch.testing.assert_close(stack.biases[ell][i], alone.biases[ell][0], rtol=0, atol=1e-5)
        assert abs(res[i].psnr - res1[0].psnr) < 1e-3
        np.testing.assert_allclose(fr.curve[:, i].numpy(), fr1.curve[:, 0].numpy(), atol=1e-3)


def test_fit_improves_psnr():
    sigs = tiny_signals(2, 16)
    _, fr, res = fit_single(sigs, SIREN, TrainConfig(steps=60, lr=1e-3), **QUIET)
    assert all(r.psnr > fr.curve[0, i].item() + 3 for i, r in enumerate(res))


def test_cohort_step_equals_sum_of_mse_naive():
    """One cohort Adam step == one Adam step on Σ_i MSE_i computed by a naive per-image loop (Eq. 2)."""
    sigs = tiny_signals(3, 16)
    stack = cohort_stack(SIREN, 3, 3, seed=5)
    # naive copy: plain leaf tensors, a loop over images
    enc_w = [stack.weights[e][0].detach().clone().requires_grad_() for e in range(SIREN.depth)]
    enc_b = [stack.biases[e][0].detach().clone().requires_grad_() for e in range(SIREN.depth)]
    head_w = [stack.weights[-1][i].detach().clone().requires_grad_() for i in range(3)]
    head_b = [stack.biases[-1][i].detach().clone().requires_grad_() for i in range(3)]
    coords = grid(16, 16)
    loss = 0.0
    for i, s in enumerate(sigs):
        pred = naive_forward(SIREN, None, enc_w + [head_w[i]], enc_b + [head_b[i]], coords)
        loss = loss + ((pred - s.targets()) ** 2).mean()
    opt = torch.optim.Adam(enc_w + enc_b + head_w + head_b, lr=1e-3)
    loss.backward()
    opt.step()
    groups = [Group(coords, torch.stack([s.targets() for s in sigs]), [0, 1, 2], (16, 16))]
    fr = train(stack, groups, TrainConfig(steps=1), lr=1e-3, progress=False)
    # the loss the engine measured at step 0 is the same Σ MSE
    mse0 = (4.0 * 10 ** (-fr.curve[0] / 10)).sum().item()
    assert abs(mse0 - loss.item()) < 1e-5
    for e in range(SIREN.depth):
        torch.testing.assert_close(stack.weights[e][0], enc_w[e].detach(), rtol=0, atol=1e-6)
    for i in range(3):
        torch.testing.assert_close(stack.weights[-1][i], head_w[i].detach(), rtol=0, atol=1e-6)


def test_cohort_mixed_shapes():
    """Landscape and portrait signals in one cohort: one grid per shape, heads kept apart."""
    a = tiny_signals(2, 16)
    from inrlens.data import array_to_signal

    tall = array_to_signal(np.random.default_rng(0).random((20, 12, 3)), "tall")
    stack, fr, res = fit_cohort(a + [tall], SIREN, TrainConfig(steps=5), seed=0, **QUIET)
    assert stack.weights[-1].shape[0] == 3 and [r.image for r in res] == ["astro0", "astro1", "tall"]
    assert all(math.isfinite(r.psnr) for r in res)


def test_cohort_of_one_equals_single_fit():
    s = tiny_signals(1, 16)
    tc = TrainConfig(steps=20, lr=1e-4)
    c, _, rc = fit_cohort(s, SIREN, tc, seed=4, **QUIET)
    f, _, rf = fit_single(s, SIREN, tc, seeds=[4], **QUIET)
    for ell in range(SIREN.depth + 1):
        torch.testing.assert_close(c.weights[ell][0], f.weights[ell][0], rtol=0, atol=1e-6)
    assert abs(rc[0].psnr - rf[0].psnr) < 1e-4


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("cfg", [SIREN, FFMLP], ids=["siren", "ffmlp"])
def test_transfer_freezes_exactly(cfg, k):
    sigs = tiny_signals(2, 16)
    enc, _, _ = fit_cohort(tiny_signals(3, 16, seed=1), cfg, TrainConfig(steps=10), seed=0, **QUIET)
    snap = [w.clone() for w in enc.weights]
    st, fr, res = fit_transfer(enc, sigs, k, TrainConfig(steps=8), seeds=[0, 1], **QUIET)
    for ell in range(cfg.depth):
        if ell <= k:
            assert torch.equal(st.weights[ell][0], snap[ell][0]), f"layer {ell} <= k changed"
            assert st.weights[ell].shape[0] == 1 and st.weights[ell].grad is None
        else:
            assert st.weights[ell].shape[0] == 4
            assert not torch.allclose(st.weights[ell][0], snap[ell][0])
    if cfg.backbone == "ffmlp":
        assert torch.equal(st.fourier, enc.fourier)
    # the optimizer built for depth k holds exactly the unfrozen parameters
    fresh = transfer_stack(enc, k, [0, 1], 3)
    opt = make_optimizer(fresh, k + 1, 1e-4)
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    want = {id(p) for ell in range(k + 1, cfg.depth + 1) for p in (fresh.weights[ell], fresh.biases[ell])}
    assert held == want


def test_transfer_reinit_equals_random_init_layers():
    """Re-initialised layers of a transfer are those of a random init with the same seed."""
    enc = cohort_stack(SIREN, 3, 2, seed=9)
    st = transfer_stack(enc, 1, [42], 3)
    ini = draw_init(SIREN, 3, 42)
    for ell in range(2, SIREN.depth + 1):
        assert torch.equal(st.weights[ell][0], ini.weights[ell])


def test_no_freeze_starts_from_cohort_and_trains_all():
    enc = cohort_stack(SIREN, 3, 2, seed=9)
    st = transfer_stack(enc, None, [0, 1], 3)
    for ell in range(SIREN.depth):
        assert st.weights[ell].shape[0] == 2 and torch.equal(st.weights[ell][1], enc.weights[ell][0])
    with pytest.raises(ValueError, match="freeze depth"):
        transfer_stack(enc, 5, [0], 3)


def test_frozen_prefix_cache_is_exact():
    enc, _, _ = fit_cohort(tiny_signals(3, 16, seed=1), SIREN, TrainConfig(steps=10), seed=0, **QUIET)
    sigs = tiny_signals(2, 16)
    a, _, ra = fit_transfer(enc, sigs, 2, TrainConfig(steps=10), seeds=[0], use_prefix_cache=True, **QUIET)
    b, _, rb = fit_transfer(enc, sigs, 2, TrainConfig(steps=10), seeds=[0], use_prefix_cache=False, **QUIET)
    for ell in range(3, SIREN.depth + 1):
        torch.testing.assert_close(a.weights[ell], b.weights[ell], rtol=0, atol=1e-6)


def test_siren_init_ranges():
    cfg = NetConfig(backbone="siren", width=256, depth=5)
    ini = draw_init(cfg, 3, 0)
    bounds = [1 / 2] + [math.sqrt(6 / 256) / 30] * 5
    for w, bound in zip(ini.weights, bounds):
        assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
        assert abs(w.mean().item()) < bound / 10
    for b, fan_in in zip(ini.biases, [2] + [256] * 5):
        assert b.abs().max() <= 1 / math.sqrt(fan_in)


def test_ffmlp_fourier_fixed_and_gaussian():
    cfg = NetConfig(backbone="ffmlp", width=16, ff_features=256, ff_sigma=10.0)
    st = Stack.init(cfg, 3, [0])
    assert st.fourier.shape == (1, 2, 256)
    assert abs(st.fourier.std().item() - 10.0) < 1.0
    before = st.fourier.clone()
    sigs = tiny_signals(1, 16)
    st2, _, _ = fit_single(sigs, cfg, TrainConfig(steps=5), **QUIET)
    assert torch.equal(Stack.init(cfg, 3, [0]).fourier, before)
    assert torch.equal(st2.fourier, before)
    assert "fourier" not in dict(st2.named_parameters())


def test_psnr_hand_computed():
    x = torch.zeros(1, 4, 4, 1)
    assert abs(psnr(x, x + 0.25).item() - 10 * math.log10(16)) < 1e-9  # mse 1/16 (exact in fp32)
    y = x.clone()
    y[0, 0, 0, 0] = 1.0  # mse = 1/16 → 10·log10(16)
    assert abs(psnr(x, y).item() - 10 * math.log10(16)) < 1e-9
    assert math.isinf(psnr(x, x).item())


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_skimage(channels):
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    sig = tiny_signals(1, 32, channels=channels)[0]
    a = ((sig.pixels + 1) / 2).numpy().astype(np.float64)
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=2)
    got = ssim(torch.from_numpy(a)[None], torch.from_numpy(b)[None]).item()
    assert abs(got - ref) < 1e-3


def test_checkpoint_round_trip(tmp_path):
    for cfg in (SIREN, FFMLP):
        st, _, _ = fit_single(tiny_signals(2, 16), cfg, TrainConfig(steps=3), seeds=[0, 1], **QUIET)
        save_stack(st, tmp_path / cfg.backbone, {"note": "x"})
        back, meta = load_stack(tmp_path / cfg.backbone)
        assert meta == {"note": "x"} and back.cfg == cfg
        coords = grid(16, 16)
        assert torch.equal(back(coords), st(coords))
