"""TopK SAE: sparsity, atom norms, init, reconstruction, centring, diagnostics — against naive references."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import tiny_signals
from inrlens.config import NetConfig, TrainConfig
from inrlens.data import grid
from inrlens.fit import fit_cohort, fit_single
from inrlens.probes.sae import (
    Codes,
    SAEConfig,
    TopKSAE,
    atom_stats,
    auxk_loss,
    diagnostics,
    fvu,
    layer_acts,
    load_sae,
    run_from,
    save_sae,
    summarise,
    train_sae,
)

TINY = SAEConfig(n=64, k=4, steps=50, batch=256, lr=1e-3)


def _data(P: int = 512, d: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(P, d, generator=g) * torch.linspace(0.5, 2.0, d) + 0.3


def test_shapes_and_init():
    h = _data()
    sae = TopKSAE(16, TINY, b_dec=h.mean(0))
    assert sae.W_enc.shape == (64, 16) and sae.W_dec.shape == (64, 16)
    assert sae.b_enc.shape == (64,) and sae.b_dec.shape == (16,)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64))
    torch.testing.assert_close(sae.W_enc, sae.W_dec)  # encoder map = (W_decᵀ)ᵀ at init
    torch.testing.assert_close(sae.b_dec, h.mean(0))
    out = sae(h[:10])
    assert out.pre.shape == (10, 64) and out.z.shape == (10, 64) and out.recon.shape == (10, 16)
    # trained SAE starts from the activation mean too
    sae2, _ = train_sae(h, replace(TINY, steps=0), progress=False)
    torch.testing.assert_close(sae2.b_dec, h.mean(0))


def test_topk_exact_k_nonzeros_and_naive_reference():
    h = _data(64)
    sae = TopKSAE(16, TINY)
    with torch.no_grad():
        sae.b_enc.fill_(100.0)  # every pre-activation positive → ReLU keeps all k
    out = sae(h)
    assert ((out.z != 0).sum(1) == TINY.k).all()
    # naive: per row, keep the k largest pre-activations (ReLU'd)
    pre = out.pre.detach().numpy()
    for p in range(h.shape[0]):
        keep = np.argsort(-pre[p])[: TINY.k]
        ref = np.zeros(64, dtype=np.float32)
        ref[keep] = np.maximum(pre[p, keep], 0)
        np.testing.assert_allclose(out.z[p].detach().numpy(), ref, rtol=1e-6)
    # generic case: at most k, exactly the positive kept entries
    sae2 = TopKSAE(16, TINY)
    z = sae2(h).z
    assert ((z != 0).sum(1) <= TINY.k).all()
    # sparse and dense paths agree
    torch.testing.assert_close(sae2.codes(h).dense(64), z)
    torch.testing.assert_close(sae2.decode_sparse(sae2.codes(h)), sae2.decode(z))


def test_centring_uses_b_dec():
    h = _data(32)
    sae = TopKSAE(16, TINY, b_dec=torch.zeros(16))
    with torch.no_grad():
        sae.b_enc.normal_()
    shift = torch.randn(16)
    z0 = sae.encode(h)
    with torch.no_grad():
        sae.b_dec.add_(shift)
    # shifting data and b_dec together leaves the codes unchanged and shifts ĥ by the same vector
    torch.testing.assert_close(sae.encode(h + shift), z0)
    ref = (h + shift - sae.b_dec) @ sae.W_enc.T + sae.b_enc
    torch.testing.assert_close(sae.preact(h + shift), ref)
    torch.testing.assert_close(sae.decode(z0), z0 @ sae.W_dec + sae.b_dec)


def test_fvu_against_numpy():
    h, r = _data(100), _data(100, seed=1)
    hn, rn = h.double().numpy(), r.double().numpy()
    ref = ((hn - rn) ** 2).sum() / ((hn - hn.mean(0)) ** 2).sum()
    assert abs(float(fvu(h, r)) - ref) < 1e-5 * ref


def test_atoms_unit_norm_after_every_step_and_grad_projection():
    h = _data()
    for steps in range(1, 6):
        sae, _ = train_sae(h, replace(TINY, steps=steps), progress=False)
        torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64), atol=1e-6, rtol=0)
    # the parallel component of the decoder gradient is removed
    sae = TopKSAE(16, TINY, b_dec=h.mean(0))
    out = sae(h)
    fvu(h, out.recon).backward()
    sae.remove_parallel_grad()
    dots = (sae.W_dec.grad * sae.W_dec).sum(1)
    assert dots.abs().max() < 1e-6


def test_high_r2_with_k_equal_d():
    """n ≥ d and k = d: the SAE can represent any vector, so on random data it reaches high R²."""
    d = 8
    h = _data(512, d)
    sae, log = train_sae(h, SAEConfig(n=32, k=d, steps=200, batch=512, lr=1e-2), progress=False)
    r2 = 1 - float(fvu(h, sae.decode(sae.encode(h))))
    assert r2 > 0.95, r2
    assert log.fvu[-1] < log.fvu[0]


def test_training_is_seeded():
    h = _data()
    a, _ = train_sae(h, replace(TINY, steps=20, batch=64), progress=False)
    b, _ = train_sae(h, replace(TINY, steps=20, batch=64), progress=False)
    torch.testing.assert_close(a.W_dec, b.W_dec)
    c, _ = train_sae(h, replace(TINY, steps=20, batch=64, seed=1), progress=False)
    assert not torch.allclose(a.W_dec, c.W_dec)


def test_auxk_against_naive_and_revives_gradient():
    h = _data(64)
    cfg = replace(TINY, k_aux=3)
    sae = TopKSAE(16, cfg, b_dec=h.mean(0))
    out = sae(h)
    dead = torch.zeros(64, dtype=torch.bool)
    assert float(auxk_loss(sae, h, out, dead)) == 0.0
    dead[::2] = True
    loss = auxk_loss(sae, h, out, dead)
    # naive: per row the 3 largest pre-activations among dead atoms, ReLU'd, decode residual without bias
    pre = out.pre.detach()
    e = (h - out.recon).detach()
    e_hat = torch.zeros_like(e)
    for p in range(64):
        cand = [(float(pre[p, j]), j) for j in range(64) if dead[j]]
        for v, j in sorted(cand, reverse=True)[:3]:
            e_hat[p] += max(v, 0.0) * sae.W_dec[j].detach()
    ref = ((e - e_hat) ** 2).sum() / ((e - e.mean(0)) ** 2).sum()
    assert abs(float(loss.detach()) - float(ref)) < 1e-4
    loss.backward()
    assert sae.W_dec.grad[1::2].abs().sum() == 0  # live atoms get no AuxK gradient
    assert sae.W_dec.grad[::2].abs().sum() > 0
    s, log = train_sae(h, replace(cfg, auxk=True, steps=30, dead_steps=5), progress=False)
    assert all(math.isfinite(x) for x in log.fvu)


def test_save_load_roundtrip(tmp_path):
    h = _data()
    sae, _ = train_sae(h, replace(TINY, steps=5), progress=False)
    save_sae(sae, tmp_path / "s", {"layer": 2})
    back, meta = load_sae(tmp_path / "s")
    assert meta == {"layer": 2} and back.cfg == sae.cfg
    torch.testing.assert_close(back(h).recon, sae(h).recon)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["cfg.json", "sae.safetensors"]
    with pytest.raises(FileNotFoundError):
        load_sae(tmp_path)


def test_stats_against_naive_loop():
    g = torch.Generator().manual_seed(3)
    P, n, k, tau = 50, 12, 3, 1e-3
    vals = torch.rand(P, k, generator=g)
    vals[vals < 0.3] = 0.0  # some kept entries are zero (ReLU) and some are below τ
    vals[0, 0] = 5e-4
    idx = torch.stack([torch.randperm(n - 2, generator=g)[:k] for _ in range(P)])  # atoms n-2, n-1 never fire
    codes = Codes(vals, idx)
    st = atom_stats(codes, n, tau)
    z = codes.dense(n)
    rate, mact, mactive = [], [], []
    for j in range(n):
        col = [float(z[p, j]) for p in range(P)]
        fires = [v for v in col if v > tau]
        rate.append(len(fires) / P)
        mact.append(sum(col) / P)
        mactive.append(sum(fires) / len(fires) if fires else 0.0)
    np.testing.assert_allclose(st.firing_rate.numpy(), rate, rtol=1e-6)
    np.testing.assert_allclose(st.mean_act.numpy(), mact, rtol=1e-5)
    np.testing.assert_allclose(st.mean_active.numpy(), mactive, rtol=1e-5)
    s = summarise(st)
    alive = [r > 0 for r in rate]
    assert s["alive_pct"] == pytest.approx(100 * sum(alive) / n)
    assert s["dead_pct"] == pytest.approx(100 * (n - sum(alive)) / n)
    assert s["rho"] == pytest.approx(np.mean([r for r, a in zip(rate, alive) if a]), rel=1e-6)
    assert s["dead_pct"] >= 100 * 2 / n


@pytest.mark.parametrize("regime", ["single", "cohort"])
def test_substituting_exact_activation_reproduces_output(regime):
    sigs = tiny_signals(3, 16)
    net = NetConfig(width=16, depth=4)
    tc = TrainConfig(steps=5, device="cpu")
    if regime == "single":
        stack, _, _ = fit_single(sigs, net, tc, progress=False, with_lpips=False)
    else:
        stack, _, _ = fit_cohort(sigs, net, tc, progress=False)
    coords = grid(16, 16)
    with torch.no_grad():
        full = stack(coords)  # (B, P, C)
    for member in range(3):
        acts = layer_acts(stack, coords, member)
        for ell in range(net.depth):
            torch.testing.assert_close(run_from(stack, acts[ell], ell, member), full[member], atol=1e-6, rtol=1e-5)


def test_diagnostics_on_real_inr():
    sigs = tiny_signals(1, 16)
    stack, _, res = fit_single(sigs, NetConfig(width=16, depth=3), TrainConfig(steps=30, device="cpu"), progress=False, with_lpips=False)
    coords = grid(16, 16)
    h = layer_acts(stack, coords, 0)[1]
    sae, _ = train_sae(h, SAEConfig(n=32, k=16, steps=300, batch=256, lr=1e-2), progress=False)
    row, st, codes = diagnostics(stack, sae, 1, 0, coords, sigs[0].targets())
    assert row["psnr_inr"] == pytest.approx(res[0].psnr, abs=1e-3)  # same metric as fit.evaluate
    assert row["r2"] == pytest.approx(1 - float(fvu(h, sae.decode(sae.encode(h)))), abs=1e-5)
    assert row["r2"] > 0.9 and row["psnr_sub_vs_inr"] > 25
    assert abs(row["psnr_sub"] - row["psnr_inr"]) < 1.0
    assert 0 < row["rho"] <= 1 and row["alive_pct"] + row["dead_pct"] == pytest.approx(100)
