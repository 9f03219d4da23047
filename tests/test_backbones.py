"""The backbone registry: backbones defined here, inside the test, run through every regime and probe with no
edit elsewhere in the package; a trainable encoding counts as part of layer 0. References are naive
per-member loops written here, numpy, and hand-made Adam steps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import tiny_signals
from inrlens import backbones as B
from inrlens.backbones import Backbone
from inrlens.config import NetConfig, TrainConfig, from_dict
from inrlens.data import grid
from inrlens.fit import Group, caches_prefix, fit_cohort, fit_single, fit_transfer, make_optimizer, train
from inrlens.memory import member_bytes
from inrlens.nets import Stack, cohort_stack, draw_init, layer_dims, linear, transfer_stack
from inrlens.probes import rank
from inrlens.probes.sae import SAEConfig, diagnostics, layer_acts, train_sae
from inrlens.store import load_stack, save_stack

QUIET = dict(progress=False, with_lpips=False)
SHARP = 3.0  # width factor of the Gaussian bump


class GaussBump(Backbone):
    """Toy: raw coordinates, Gaussian-bump activation exp(−(a·z)²), weights N(0, 2/fan_in), biases U(−½, ½)."""

    name = "toy_gauss"
    default_lr = 3e-3
    description = "test backbone: Gaussian bumps on raw coordinates"

    def init_layer(self, cfg, ell, fan_in, fan_out, generator):
        w = torch.randn(fan_in, fan_out, generator=generator) * math.sqrt(2.0 / fan_in)
        b = torch.empty(1, fan_out).uniform_(-0.5, 0.5, generator=generator)
        return w, b

    def hidden(self, cfg, ell, h, w, b):
        return torch.exp(-((SHARP * linear(h, w, b)) ** 2))


class LearnedFourier(Backbone):
    """Toy with a TRAINABLE encoding: γ(x) = [sin(x P), cos(x P)] with a learned (2, m) projection ``proj``,
    then a tanh MLP with nn.Linear's init."""

    name = "toy_learned"
    default_lr = 1e-2
    encoding_trainable = True
    description = "test backbone: learned Fourier projection + tanh"

    def encoding_dim(self, cfg):
        return 2 * cfg.ff_features

    def draw_encoding(self, cfg, generator):
        return {"proj": torch.randn(2, cfg.ff_features, generator=generator) * cfg.ff_sigma}

    def embed(self, cfg, enc, coords):
        z = torch.matmul(coords.unsqueeze(0), enc["proj"])  # (B_f, P, m)
        return torch.cat([torch.sin(z), torch.cos(z)], dim=-1)

    def hidden(self, cfg, ell, h, w, b):
        return torch.tanh(linear(h, w, b))


L = 3


@pytest.fixture(scope="module", autouse=True)
def toy_backbones():
    """Register the toy backbones for this module only; other tests see the built-ins alone."""
    before = B.backbone_names()
    B.register_backbone(GaussBump())
    B.register_backbone(LearnedFourier())
    yield
    B.unregister_backbone("toy_gauss")
    B.unregister_backbone("toy_learned")
    assert B.backbone_names() == before


def gauss_cfg(**kw) -> NetConfig:
    return NetConfig(**{"backbone": "toy_gauss", "width": 16, "depth": L, **kw})


def learned_cfg(**kw) -> NetConfig:
    return NetConfig(**{"backbone": "toy_learned", "width": 12, "depth": L, "ff_features": 4, "ff_sigma": 2.0, **kw})


# ------------------------------------------------------------------------------------------ naive references
def naive_gauss(weights, biases, coords):
    """Eq. 1 for one toy_gauss INR: plain 2-D matmuls in a python loop."""
    h = coords
    hidden = []
    for ell in range(len(weights) - 1):
        h = torch.exp(-((SHARP * (h @ weights[ell] + biases[ell])) ** 2))
        hidden.append(h)
    return h @ weights[-1] + biases[-1], hidden


def naive_learned(proj, weights, biases, coords):
    z = coords @ proj
    h = torch.cat([torch.sin(z), torch.cos(z)], -1)
    for ell in range(len(weights) - 1):
        h = torch.tanh(h @ weights[ell] + biases[ell])
    return h @ weights[-1] + biases[-1]


def np_stable_rank(m: np.ndarray) -> float:
    s = np.linalg.svd(np.asarray(m, dtype=np.float64), compute_uv=False)
    return float((s**2).sum() / s.max() ** 2)


# ------------------------------------------------------------------------------------------ (1) plain toy backbone
def test_toy_init_and_forward_match_naive_loop():
    cfg = gauss_cfg()
    seeds = [4, 9, 13]
    st = Stack.init(cfg, 3, seeds)
    assert layer_dims(cfg, 3)[0] == (2, 16) and st.encoding == {}
    coords = grid(8, 10)
    out, hidden = st.activations(coords)
    for i, s in enumerate(seeds):
        g = torch.Generator().manual_seed(s)  # the init drawn by hand, in the documented order
        ws, bs = [], []
        for fan_in, fan_out in [(2, 16), (16, 16), (16, 16), (16, 3)]:
            ws.append(torch.randn(fan_in, fan_out, generator=g) * math.sqrt(2.0 / fan_in))
            bs.append(torch.empty(1, fan_out).uniform_(-0.5, 0.5, generator=g))
        for ell in range(L + 1):
            assert torch.equal(st.weights[ell][i], ws[ell]) and torch.equal(st.biases[ell][i], bs[ell])
        ref, ref_hidden = naive_gauss(ws, bs, coords)
        torch.testing.assert_close(out[i], ref, rtol=1e-5, atol=1e-6)
        for ell in range(L):
            torch.testing.assert_close(hidden[ell][i], ref_hidden[ell], rtol=1e-5, atol=1e-6)


def test_toy_single_cohort_transfer_rank_sae():
    cfg = gauss_cfg()
    sigs = tiny_signals(4, 16)
    tc = TrainConfig(steps=25, log_every=5, device="cpu")

    # single fits: stacked members equal fits made one at a time; lr default is the backbone's own
    st, fr, res = fit_single(sigs[:2], cfg, tc, seeds=(0, 1), **QUIET)
    assert st.members == 4 and all(math.isfinite(r.psnr) for r in res)
    alone, fr1, _ = fit_single(sigs[1:2], cfg, tc, seeds=(1,), **QUIET)
    for ell in range(L + 1):
        torch.testing.assert_close(st.weights[ell][3], alone.weights[ell][0], rtol=0, atol=1e-5)
    manual = Stack.init(cfg, 3, [1])
    coords = grid(16, 16)
    train(manual, [Group(coords, sigs[1].targets()[None], [0], (16, 16))], tc, lr=3e-3, progress=False)
    for a, b in zip(manual.parameters(), alone.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert all(r.psnr > fr.curve[0, i].item() for i, r in enumerate(res))

    # cohort and every freeze depth
    enc, _, cres = fit_cohort(sigs[2:], cfg, tc, seed=0, **QUIET)
    assert all(math.isfinite(r.psnr) for r in cres)
    snap = [w.clone() for w in enc.weights]
    for k in [None, *range(L)]:
        t, _, tres = fit_transfer(enc, sigs[:2], k, TrainConfig(steps=6, device="cpu"), seeds=(0,), **QUIET)
        assert [r.image for r in tres] == ["astro0", "astro1"] and all(math.isfinite(r.psnr) for r in tres)
        for ell in range(L):
            if k is not None and ell <= k:
                assert t.weights[ell].shape[0] == 1 and torch.equal(t.weights[ell][0], snap[ell][0])
            else:
                assert t.weights[ell].shape[0] == 2 and not torch.equal(t.weights[ell][0], snap[ell][0])

    # stable ranks of the cohort encoder against numpy on the naive activations
    prof = rank.profile(enc, (16, 16))
    ws = [enc.weights[e][0].detach() for e in range(L + 1)]
    bs = [enc.biases[e][0].detach() for e in range(L + 1)]
    _, ref_hidden = naive_gauss(ws, bs, coords)
    np.testing.assert_allclose(prof.sr_w, [np_stable_rank(w.numpy()) for w in ws[:L]], rtol=1e-6)
    np.testing.assert_allclose(prof.sr_h, [np_stable_rank(h.numpy()) for h in ref_hidden], rtol=1e-4)
    assert prof.k_w == int(np.argmax(prof.sr_w)) and prof.k_h == int(np.argmax(prof.sr_h))

    # an SAE on layer 1 of head 0 and its diagnostics
    h1 = layer_acts(enc, coords, 0)[1]
    torch.testing.assert_close(h1, ref_hidden[1], rtol=1e-5, atol=1e-6)
    sae, log = train_sae(h1, SAEConfig(n=32, k=4, steps=40, batch=128, lr=1e-3), progress=False)
    row, stats, codes = diagnostics(enc, sae, 1, 0, coords, target=sigs[2].targets())
    recon = sae.decode_sparse(sae.codes(h1))
    fvu_ref = ((h1 - recon) ** 2).sum() / ((h1 - h1.mean(0)) ** 2).sum()
    assert abs(row["r2"] - (1 - float(fvu_ref))) < 1e-5
    out_ref = ref_hidden[1] @ ws[2] + bs[2]  # naive tail: layer 2 then the head of member 0
    out_ref = torch.exp(-((SHARP * out_ref) ** 2)) @ ws[3] + bs[3]
    x01, y01 = ((out_ref.clamp(-1, 1) + 1) / 2).double(), ((sigs[2].targets() + 1) / 2).double()
    assert abs(row["psnr_inr"] - float(-10 * torch.log10(((x01 - y01) ** 2).mean()))) < 1e-3
    assert 0 < row["alive_pct"] <= 100 and codes.indices.shape == (256, 4)


def test_toy_checkpoint_round_trip_and_memory(tmp_path):
    for cfg in (gauss_cfg(), learned_cfg()):
        st = Stack.init(cfg, 3, [0, 1])
        save_stack(st, tmp_path / cfg.backbone)
        back, _ = load_stack(tmp_path / cfg.backbone)
        assert back.cfg == cfg and back.encoding_names == st.encoding_names
        coords = grid(8, 8)
        assert torch.equal(back(coords), st(coords))
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "toy_learned" / "model.safetensors"))
    assert torch.equal(saved["proj"], Stack.init(learned_cfg(), 3, [0, 1]).proj.detach())


# ------------------------------------------------------------------------------------------ (2) trainable encoding
def test_trainable_encoding_is_a_parameter_of_layer_0():
    cfg = learned_cfg()
    st = Stack.init(cfg, 3, [0, 1])
    assert isinstance(st.proj, torch.nn.Parameter) and st.proj.shape == (2, 2, 4)
    assert [name for name, _ in st.named_parameters()][0] == "proj"
    for i, s in enumerate([0, 1]):  # drawn first from the member's generator
        assert torch.equal(st.proj[i].detach(), torch.randn(2, 4, generator=torch.Generator().manual_seed(s)) * 2.0)
    held = lambda opt: {id(p) for g in opt.param_groups for p in g["params"]}  # noqa: E731
    assert id(st.proj) in held(make_optimizer(st, 0, 1e-3)) and st.proj.requires_grad
    assert id(st.proj) not in held(make_optimizer(st, 1, 1e-3)) and not st.proj.requires_grad
    assert not caches_prefix(st, 0) and caches_prefix(st, 1)
    assert caches_prefix(Stack.init(gauss_cfg(), 3, [0]), 0)  # nothing to train before layer 0


def test_trainable_encoding_trains_in_single_fits_and_no_freeze_only():
    cfg = learned_cfg()
    sigs = tiny_signals(4, 16)
    tc = TrainConfig(steps=10, device="cpu")
    st, _, res = fit_single(sigs[:2], cfg, tc, seeds=(0,), **QUIET)
    drawn = torch.stack([draw_init(cfg, 3, 0).encoding["proj"]] * 2)
    assert st.proj.shape == (2, 2, 4)
    assert not torch.allclose(st.proj.detach(), drawn) and (st.proj.detach() - drawn).abs().amax(dim=(1, 2)).min() > 0

    enc, _, _ = fit_cohort(sigs[2:], cfg, tc, seed=0, **QUIET)
    assert enc.proj.shape == (1, 2, 4) and not torch.equal(enc.proj.detach()[0], draw_init(cfg, 3, 0).encoding["proj"])
    cohort_proj = enc.proj.detach().clone()

    nf, _, _ = fit_transfer(enc, sigs[:2], None, tc, seeds=(0, 1), **QUIET)
    assert nf.proj.shape == (4, 2, 4)  # one trainable copy per member
    assert all(not torch.equal(nf.proj[i].detach(), cohort_proj[0]) for i in range(4))
    fresh = transfer_stack(enc, None, [0], 3)
    assert torch.equal(fresh.proj.detach(), cohort_proj)

    for k in range(L):
        fk, _, _ = fit_transfer(enc, sigs[:2], k, tc, seeds=(0, 1), chunk=2, **QUIET)
        assert fk.proj.shape == (1, 2, 4) and torch.equal(fk.proj.detach(), cohort_proj), f"encoding moved at k={k}"
        assert torch.equal(fk.weights[0].detach(), enc.weights[0].detach())
    assert torch.equal(enc.proj.detach(), cohort_proj)  # the caller's encoder is untouched


def test_trainable_encoding_prefix_cache_flag_is_harmless():
    """start = 0 never caches (same fit with the flag on or off); freeze k caches γ(x) and frozen layers exactly."""
    cfg = learned_cfg()
    sigs = tiny_signals(3, 16)
    enc, _, _ = fit_cohort(sigs[:2], cfg, TrainConfig(steps=5, device="cpu"), seed=0, **QUIET)
    for k in (None, 1):
        a, _, _ = fit_transfer(enc, sigs[2:], k, TrainConfig(steps=6, device="cpu"), seeds=(0,), use_prefix_cache=True, **QUIET)
        b, _, _ = fit_transfer(enc, sigs[2:], k, TrainConfig(steps=6, device="cpu"), seeds=(0,), use_prefix_cache=False, **QUIET)
        for x, y in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(x, y, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["single", "cohort", "no-freeze"])
def test_trainable_encoding_adam_step_equals_naive(kind):
    """One Adam step of the stack == one Adam step on Σ_i MSE_i over plain leaf tensors, encoding included."""
    cfg = learned_cfg()
    sigs = tiny_signals(2, 16)
    coords = grid(16, 16)
    targets = torch.stack([s.targets() for s in sigs])
    if kind == "single":
        st = Stack.init(cfg, 3, [5, 6])
    elif kind == "cohort":
        st = cohort_stack(cfg, 3, 2, seed=5)
    else:
        st = transfer_stack(cohort_stack(cfg, 3, 3, seed=5), None, [7, 8], 3)
    # naive copies: member i sees row min(i, B_ℓ − 1) of every tensor; shared rows are ONE leaf
    leaf = lambda t: [t[j].detach().clone().requires_grad_() for j in range(t.shape[0])]  # noqa: E731
    proj = leaf(st.proj)
    ws = [leaf(w) for w in st.weights]
    bs = [leaf(b) for b in st.biases]
    pick = lambda rows, i: rows[min(i, len(rows) - 1)]  # noqa: E731
    loss = 0.0
    for i in range(2):
        pred = naive_learned(pick(proj, i), [pick(w, i) for w in ws], [pick(b, i) for b in bs], coords)
        loss = loss + ((pred - targets[i]) ** 2).mean()
    opt = torch.optim.Adam(proj + [p for rows in ws + bs for p in rows], lr=1e-2)
    loss.backward()
    opt.step()
    train(st, [Group(coords, targets, [0, 1], (16, 16))], TrainConfig(steps=1, fused_adam=False), lr=1e-2, progress=False)
    for j in range(st.proj.shape[0]):
        torch.testing.assert_close(st.proj[j], proj[j].detach(), rtol=0, atol=1e-6)
    for ell in range(L + 1):
        for j in range(st.weights[ell].shape[0]):
            torch.testing.assert_close(st.weights[ell][j], ws[ell][j].detach(), rtol=0, atol=1e-6)
            torch.testing.assert_close(st.biases[ell][j], bs[ell][j].detach(), rtol=0, atol=1e-6)


def _saved_bytes(cfg: NetConfig, members: int, t: int, px: int) -> int:
    """Bytes autograd saves in a training forward of ``members`` members with layers ≥ t (and the encoding
    when t = 0) trainable."""
    st = Stack.init(cfg, 3, list(range(members)))
    make_optimizer(st, t, 1e-3)
    coords = grid(px, px)
    seen, total = set(), [0]

    def pack(x):
        if x.data_ptr() not in seen:
            seen.add(x.data_ptr())
            total[0] += x.numel() * x.element_size()
        return x

    with torch.no_grad():
        frozen = st.run(st.embed(coords), 0, t) if t > 0 else None  # the prefix cache
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        h = st.embed(coords) if t == 0 else frozen  # a trainable encoding runs inside the step
        st.run(h, t).square().mean(dim=(1, 2)).sum()
    return total[0]


@pytest.mark.parametrize("t", [0, 2])
def test_member_bytes_covers_a_trainable_encoding(t):
    cfg = learned_cfg()
    px = 16
    per_member = (_saved_bytes(cfg, 4, t, px) - _saved_bytes(cfg, 2, t, px)) / 2
    est = member_bytes(cfg, px * px, 3, t)
    assert est >= per_member
    trained = sum(p.numel() for p in Stack.init(cfg, 3, [0]).parameters() if p.ndim)  # every tensor, one member
    assert est <= 4 * per_member + 4 * 4 * trained
    # by hand (d0 = 8, width 12, L = 3, C = 3, P pixels): parameters incl. the 8 encoding numbers at t = 0 held 4×,
    # γ(x) P·8, its backward 2·8 per pixel, 3 saved (P × 12) per hidden layer, 2 gradients (P × 12), 4 × (P × C)
    P = px * px
    params0 = (8 * 12 + 12) + 2 * (12 * 12 + 12) + (12 * 3 + 3) + 8
    params2 = (12 * 12 + 12) + (12 * 3 + 3)
    want = {0: 4 * params0 + P * (8 + 16 + 3 * 3 * 12 + 2 * 12 + 4 * 3),
            2: 4 * params2 + P * (12 + 1 * 3 * 12 + 2 * 12 + 4 * 3)}
    assert est == 4 * want[t]


# ------------------------------------------------------------------------------------------ (3) names, (4) order
def test_unknown_backbone_names_the_registered_ones():
    names = B.backbone_names()
    assert names[:2] == ("siren", "ffmlp") and {"toy_gauss", "toy_learned"} <= set(names)
    for make in (lambda: NetConfig(backbone="nope"), lambda: B.get_backbone("nope"),
                 lambda: from_dict(NetConfig, {"backbone": "nope"})):
        with pytest.raises(ValueError) as e:
            make()
        msg = str(e.value)
        assert "\n" not in msg and "'nope'" in msg and all(n in msg for n in names)
    with pytest.raises(ValueError, match="already registered"):
        B.register_backbone(GaussBump())
    with pytest.raises(ValueError, match="unknown backbone"):
        B.unregister_backbone("nope")


def test_cli_choices_follow_the_registry(capsys):
    from inrlens.cli import main

    assert main(["fit", "--net.backbone", "nope", "x.png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("inrlens: error:") and len(err.strip().splitlines()) == 1
    assert all(n in err for n in B.backbone_names())


def test_registry_order_is_the_grouping_order():
    order = sorted(["toy_learned", "ffmlp", "zzz_unknown", "toy_gauss", "siren"], key=B.backbone_order)
    assert order == ["siren", "ffmlp", "toy_gauss", "toy_learned", "zzz_unknown"]
    assert [B.backbone_order(n) for n in B.backbone_names()] == list(range(len(B.backbone_names())))
    assert B.get_backbone("siren").default_lr == 1e-4 and B.get_backbone("ffmlp").default_lr == 1e-3


PLUGIN = '''
import torch

from inrlens.backbones import Backbone, register_backbone
from inrlens.nets import linear


class TripleSine(Backbone):
    name = "toy_plugin"

    def hidden(self, cfg, ell, h, w, b):
        return torch.sin(3.0 * linear(h, w, b))


register_backbone(TripleSine())
'''


def test_plugin_modules_from_the_environment(tmp_path, monkeypatch):
    """INRLENS_BACKBONES names modules imported on first use of the registry (how the CLI and sweep workers see
    a backbone defined outside the package); a module that cannot be imported is a one-line error."""
    import sys

    (tmp_path / "toy_plugin_mod.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(B.PLUGIN_ENV, " toy_plugin_mod ,")
    try:
        cfg = NetConfig(backbone="toy_plugin", width=8, depth=2)
        assert B.backbone_names()[-1] == "toy_plugin"
        st = Stack.init(cfg, 1, [3])
        ws = [w[0].detach() for w in st.weights]
        bs = [b[0].detach() for b in st.biases]
        x = grid(4, 4)
        h = x
        for ell in range(2):
            h = torch.sin(3.0 * (h @ ws[ell] + bs[ell]))
        torch.testing.assert_close(st(x)[0], h @ ws[2] + bs[2], rtol=1e-5, atol=1e-6)
    finally:
        B.unregister_backbone("toy_plugin")
        B._PLUGINS_LOADED.discard("toy_plugin_mod")
        sys.modules.pop("toy_plugin_mod", None)
    monkeypatch.setenv(B.PLUGIN_ENV, "no_such_module_xyz")
    with pytest.raises(ValueError, match=f"^{B.PLUGIN_ENV}: cannot import 'no_such_module_xyz'"):
        B.backbone_names()
    B._PLUGINS_LOADED.discard("no_such_module_xyz")
