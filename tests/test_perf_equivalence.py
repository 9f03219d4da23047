"""Every speed-up of the engine gives the results of the plain path, on CPU at 16 px.

Speed-ups covered: ω₀ folded into the weights (nets.FOLD_OMEGA), bias inside the GEMM (nets.FUSED_BIAS), the
frozen-prefix cache, fused Adam, chunking a stack (1 vs 8 members per stack), torch.compile (slow), and the
memory estimate behind the chunk size. References are naive per-member loops or the switch turned off.
Tolerance: final PSNR within 0.01 dB, outputs within float32 rounding amplified by the fit.
"""

from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_signals
from inrlens import nets
from inrlens.config import NetConfig, TrainConfig
from inrlens.data import grid
from inrlens.fit import Group, fit_cohort, fit_single, fit_transfer, fused_adam_available, runtime_info, train
from inrlens.memory import available_bytes, member_bytes, members_per_chunk
from inrlens.nets import Stack, cohort_stack, linear

SIREN = NetConfig(width=32, depth=3)
FFMLP = NetConfig(backbone="ffmlp", width=32, depth=3, ff_features=16, ff_sigma=1.0)
PSNR_TOL = 0.01


def _fit(net: NetConfig, steps: int = 60, seeds=(0, 1), **train_kw):
    sig = tiny_signals(2, 16)
    cfg = TrainConfig(steps=steps, log_every=steps, device="cpu", **train_kw)
    stack, fr, res = fit_single(sig, net, cfg, seeds=seeds, progress=False, with_lpips=False)
    return stack, torch.tensor([r.psnr for r in res])


# ------------------------------------------------------------------------------------------------ linear()
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("fan_in", [2, 5])  # narrow input (batched GEMM on the broadcast input) and wide (one GEMM)
@pytest.mark.parametrize("bh,bw", [(3, 3), (1, 3), (3, 1), (1, 1)])
def test_linear_matches_per_member_loop(monkeypatch, fused, bh, bw, fan_in):
    monkeypatch.setattr(nets, "FUSED_BIAS", fused)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(bh, 20, fan_in, generator=g)
    w = torch.randn(bw, fan_in, 4, generator=g)
    b = torch.randn(bw, 1, 4, generator=g)
    y = linear(h, w, b)
    B = max(bh, bw)
    ref = torch.stack([h[min(i, bh - 1)] @ w[min(i, bw - 1)] + b[min(i, bw - 1)] for i in range(B)])
    assert y.shape == (B, 20, 4)
    assert y.is_contiguous() or not fused or (bh == 1 and bw > 1 and fan_in > 4)  # one-GEMM path: a permuted view
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("net", [SIREN, FFMLP], ids=["siren", "ffmlp"])
def test_forward_and_grads_same_with_and_without_fast_paths(monkeypatch, net):
    """Folded ω₀ and fused bias change only rounding: outputs and parameter gradients agree to fp32 tolerance."""
    coords = grid(8, 8)
    results = []
    for on in (True, False):
        monkeypatch.setattr(nets, "FOLD_OMEGA", on)
        monkeypatch.setattr(nets, "FUSED_BIAS", on)
        for stack in (Stack.init(net, 3, [0, 1]), cohort_stack(net, 3, 3, seed=0)):
            out = stack(coords)
            out.square().mean(dim=(1, 2)).sum().backward()
            results.append((out.detach(), [p.grad.clone() for p in stack.parameters()]))
    for (o1, g1), (o2, g2) in zip(results[:2], results[2:]):
        torch.testing.assert_close(o1, o2, rtol=1e-4, atol=1e-5)
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_fold_omega_against_hand_written_siren():
    """The folded forward equals sin(ω₀(xW + b)) written out by hand for one member."""
    stack = Stack.init(SIREN, 1, [3])
    x = grid(4, 4)
    h = x
    for ell in range(SIREN.depth):
        h = torch.sin(30.0 * (h @ stack.weights[ell][0] + stack.biases[ell][0]))
    ref = h @ stack.weights[-1][0] + stack.biases[-1][0]
    torch.testing.assert_close(stack(x)[0], ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("net", [SIREN, FFMLP], ids=["siren", "ffmlp"])
def test_fast_paths_fit_same_psnr(monkeypatch, net):
    _, fast = _fit(net)
    monkeypatch.setattr(nets, "FOLD_OMEGA", False)
    monkeypatch.setattr(nets, "FUSED_BIAS", False)
    _, plain = _fit(net)
    assert torch.all((fast - plain).abs() < PSNR_TOL), (fast, plain)


# ------------------------------------------------------------------------------------------------ fit loop
@pytest.mark.parametrize("net", [SIREN, FFMLP], ids=["siren", "ffmlp"])
def test_prefix_cache_on_off_same_transfer(net):
    sig = tiny_signals(4, 16)
    enc, _, _ = fit_cohort(sig[:2], net, TrainConfig(steps=30, log_every=30, device="cpu"), progress=False)
    cfg = TrainConfig(steps=40, log_every=40, device="cpu")
    out = []
    for cache in (True, False):
        st, fr, res = fit_transfer(enc, sig[2:], 1, cfg, seeds=(0, 1), progress=False, with_lpips=False,
                                   use_prefix_cache=cache)
        out.append((st, torch.tensor([r.psnr for r in res])))
    (s1, p1), (s2, p2) = out
    assert torch.all((p1 - p2).abs() < PSNR_TOL)
    for a, b in zip(s1.parameters(), s2.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # frozen layers stayed the cohort's
    torch.testing.assert_close(s1.weights[0][0], enc.weights[0][0])


@pytest.mark.skipif(not fused_adam_available(torch.device("cpu")), reason="this torch has no fused Adam on CPU")
def test_fused_adam_same_fit_on_cpu():
    s1, p1 = _fit(SIREN, fused_adam=True)
    s2, p2 = _fit(SIREN, fused_adam=False)
    assert torch.all((p1 - p2).abs() < PSNR_TOL)
    for a, b in zip(s1.parameters(), s2.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_chunking_one_vs_eight_members_identical():
    """Fitting 8 members as one stack or as 8 stacks of one gives the same members (fp32 tolerance)."""
    sig = tiny_signals(4, 16)
    coords = grid(16, 16)
    targets = torch.stack([s.targets() for s in sig for _ in range(2)])  # (8, P, 3)
    seeds = list(range(10, 18))
    cfg = TrainConfig(steps=25, log_every=25, device="cpu")
    big = Stack.init(SIREN, 3, seeds)
    train(big, [Group(coords, targets, list(range(8)), (16, 16))], cfg, progress=False)
    for i, s in enumerate(seeds):
        one = Stack.init(SIREN, 3, [s])
        train(one, [Group(coords, targets[i : i + 1], [0], (16, 16))], cfg, progress=False)
        for a, b in zip(one.parameters(), big.member(i).parameters()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("net", [SIREN, FFMLP], ids=["siren", "ffmlp"])
def test_fit_single_and_transfer_chunked_equal_unchunked(net):
    """fit_single / fit_transfer with chunk=1 or 3 (stacks trained one after another, results concatenated) equal
    one stack of all 4 members: parameters, curves and metrics."""
    sig = tiny_signals(2, 16)
    cfg = TrainConfig(steps=8, log_every=4, device="cpu")
    enc, _, _ = fit_cohort(sig, net, TrainConfig(steps=3, log_every=3, device="cpu"), progress=False)
    for run in (lambda c: fit_single(sig, net, cfg, seeds=(0, 1), progress=False, with_lpips=False, chunk=c),
                lambda c: fit_transfer(enc, sig, 1, cfg, seeds=(0, 1), progress=False, with_lpips=False, chunk=c)):
        s_all, fr_all, r_all = run(None)
        assert s_all.members == 4
        for c in (1, 3):
            s, fr, r = run(c)
            assert [p.shape for p in s.parameters()] == [p.shape for p in s_all.parameters()]
            for a, b in zip(s.parameters(), s_all.parameters()):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(fr.curve, fr_all.curve, rtol=1e-4, atol=1e-3)
            assert [(x.image, x.seed) for x in r] == [(x.image, x.seed) for x in r_all]
            assert all(abs(x.psnr - y.psnr) < PSNR_TOL for x, y in zip(r, r_all))
    with pytest.raises(ValueError, match="chunk"):
        fit_single(sig, net, cfg, chunk=0, progress=False)


def test_cohort_encoder_once_equals_per_head_encoder():
    """The shared-input GEMM (encoder computed once for all heads) equals running the encoder per head."""
    stack = cohort_stack(SIREN, 3, 4, seed=1)
    x = grid(8, 8)
    out = stack(x)  # (4, P, 3)
    for i in range(4):
        torch.testing.assert_close(out[i], stack.member(i)(x)[0], rtol=1e-5, atol=1e-5)


def test_runtime_info_records_switches(monkeypatch):
    info = runtime_info(torch.device("cpu"), TrainConfig(fused_adam=False), prefix_cache=False)
    assert info["fused_adam"] is False and info["prefix_cache"] is False
    assert info["fold_omega"] is nets.FOLD_OMEGA and info["fused_bias"] is nets.FUSED_BIAS
    monkeypatch.setattr(nets, "FOLD_OMEGA", False)
    assert runtime_info(torch.device("cpu"), TrainConfig())["fold_omega"] is False


def _compile_usable() -> bool:
    try:
        f = torch.compile(lambda t: torch.sin(t) * 2, dynamic=False)
        return bool(torch.allclose(f(torch.ones(3)), torch.sin(torch.ones(3)) * 2))
    except Exception:  # no C++ compiler, unsupported platform, …
        return False


@pytest.mark.slow
def test_compile_on_off_same_fit():
    if not _compile_usable():
        pytest.skip("torch.compile is not usable on this machine")
    _, p1 = _fit(SIREN, steps=30, compile=True)
    _, p2 = _fit(SIREN, steps=30, compile=False)
    assert torch.all((p1 - p2).abs() < PSNR_TOL), (p1, p2)


# ------------------------------------------------------------------------------------------------ memory
def _saved_bytes(net: NetConfig, B: int, t: int, px: int) -> int:
    """Bytes autograd saves for backward in a training forward of B members, layers ≥ t trainable."""
    stack = Stack.init(net, 3, list(range(B)))
    for ell, (w, b) in enumerate(zip(stack.weights, stack.biases)):
        w.requires_grad_(ell >= t)
        b.requires_grad_(ell >= t)
    coords = grid(px, px)
    with torch.no_grad():
        h = stack.run(stack.embed(coords), 0, t)
    seen, total = set(), [0]

    def pack(x):
        if x.data_ptr() not in seen:
            seen.add(x.data_ptr())
            total[0] += x.numel() * x.element_size()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        stack.run(h, t).square().mean(dim=(1, 2)).sum()
    return total[0]


@pytest.mark.parametrize("net", [SIREN, FFMLP], ids=["siren", "ffmlp"])
@pytest.mark.parametrize("t", [0, 2, 3])
def test_member_bytes_bounds_saved_activations(net, t):
    """Per-member estimate ≥ what autograd really saves per extra member (plus params × 4), and not absurdly more."""
    px = 16
    per_member_saved = (_saved_bytes(net, 4, t, px) - _saved_bytes(net, 2, t, px)) / 2
    est = member_bytes(net, px * px, 3, t)
    assert est >= per_member_saved
    assert est <= 4 * per_member_saved + 4 * 4 * sum(p.numel() for p in Stack.init(net, 3, [0]).parameters())


def test_members_per_chunk_budget_arithmetic():
    net = NetConfig(width=64, depth=5)
    per = member_bytes(net, 1024, 3, 0)
    budget = 10 * per * 2
    n = members_per_chunk(net, 1024, 3, 0, budget_bytes=budget)
    assert n == math.floor(budget / int(per * 1.25))
    assert members_per_chunk(net, 1024, 3, 4, budget_bytes=budget) > n  # freezing more frees memory
    with pytest.raises(ValueError, match="budget"):
        members_per_chunk(net, 1024, 3, 0, budget_bytes=per // 2)
    with pytest.raises(ValueError):
        member_bytes(net, 1024, 3, trainable_from=6)
    assert available_bytes("cpu") > 0
    assert members_per_chunk(net, 1024, 3, device="cpu") >= 1


# ------------------------------------------------------------------------------------------------ CUDA
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.cuda
@cuda
def test_cuda_fit_matches_cpu_and_fused_adam():
    cpu_stack, cpu_p = _fit(SIREN, fused_adam=False)
    sig = tiny_signals(2, 16)
    outs = []
    for fused in (True, False):
        cfg = TrainConfig(steps=60, log_every=60, device="cuda", fused_adam=fused, tf32=False)
        st, _, res = fit_single(sig, SIREN, cfg, seeds=(0, 1), progress=False, with_lpips=False)
        outs.append(torch.tensor([r.psnr for r in res]))
    for p in outs:
        assert torch.all((p - cpu_p).abs() < PSNR_TOL), (p, cpu_p)


@pytest.mark.cuda
@cuda
def test_cuda_compile_same_fit():
    sig = tiny_signals(2, 16)
    ps = []
    for comp in (True, False):
        cfg = TrainConfig(steps=60, log_every=60, device="cuda", compile=comp)
        _, _, res = fit_single(sig, SIREN, cfg, seeds=(0, 1), progress=False, with_lpips=False)
        ps.append(torch.tensor([r.psnr for r in res]))
    assert torch.all((ps[0] - ps[1]).abs() < PSNR_TOL), ps


@pytest.mark.cuda
@cuda
def test_cuda_memory_estimate_bounds_peak():
    """Peak allocated bytes per extra member stay below the estimate × SAFETY (so the chunk never OOMs)."""
    from inrlens.memory import SAFETY

    net = NetConfig(width=128, depth=5)
    px = 64
    coords = grid(px, px, device="cuda")
    peaks = {}
    for B in (2, 6):
        stack = Stack.init(net, 3, list(range(B))).cuda()
        tg = torch.zeros(B, px * px, 3, device="cuda")
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        train(stack, [Group(coords, tg, list(range(B)), (px, px))], TrainConfig(steps=3, device="cuda"), progress=False)
        peaks[B] = torch.cuda.max_memory_allocated() - base
        del stack, tg
    per_member = (peaks[6] - peaks[2]) / 4
    assert per_member <= member_bytes(net, px * px, 3, 0) * SAFETY


# ------------------------------------------------------------------------------------------------ allocator
_ALLOC_PROBE = r"""
import resource
import torch
from inrlens.allocator import keep_freed_memory, kept
on = keep_freed_memory()
def step():  # two 96 MiB tensors made, used and freed again, as a training step's activations are
    x = torch.ones(1 << 20, 24)
    y = x * 2
    del x, y
for _ in range(10):  # the heap grows to its working size over the first few steps
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
from inrlens.config import NetConfig, TrainConfig
from inrlens.data import resolve
from inrlens.config import DataConfig
from inrlens.fit import fit_single
torch.set_num_threads(1)
sig = resolve("noise:uniform:n=1:size=16", DataConfig())
_, _, res = fit_single(sig, NetConfig(width=16, depth=3), TrainConfig(steps=20), (0,), progress=False, with_lpips=False)
print(on, kept(), faults, repr(res[0].psnr))
"""


def _alloc_probe(env_value: str) -> tuple[bool, bool, int, float]:
    import os
    import subprocess
    import sys

    env = dict(os.environ, INRLENS_KEEP_FREED_MEMORY=env_value, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _ALLOC_PROBE], env=env, capture_output=True, text=True, timeout=300, check=True)
    on, kept, faults, psnr = out.stdout.split()
    return on == "True", kept == "True", int(faults), float(psnr)


def test_keep_freed_memory_stops_the_page_faults_and_changes_no_result():
    """Two 96 MiB tensors made and freed at every step: once the heap has grown (10 warm-up steps), 10 more steps
    fault in nothing with freed memory kept (0 page faults on the development machine), and all 2 × 24 576 pages
    every step with glibc's default (491 k); a fit gives the bit-identical PSNR; INRLENS_KEEP_FREED_MEMORY=0
    leaves the default. Fault counts, not time: the kernel counts them."""
    from inrlens.allocator import _glibc

    if _glibc() is None:
        pytest.skip("not glibc: keep_freed_memory does nothing here")
    on, kept, faults_on, psnr_on = _alloc_probe("1")
    off, kept_off, faults_off, psnr_off = _alloc_probe("0")
    assert on and kept and not off and not kept_off
    step_pages = 2 * (96 << 20) // 4096
    assert faults_off > 8 * step_pages and faults_on < step_pages, (faults_on, faults_off)
    assert psnr_on == psnr_off
    assert runtime_info(torch.device("cpu"), TrainConfig())["keep_freed_memory"] in (True, False)
