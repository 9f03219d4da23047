"""The built-in backbones gauss, wire, finer and hashgrid against references written here: explicit per-member
formulas (the complex WIRE in torch's complex arithmetic, the hash grid as a per-pixel, per-level loop over
corner indices, hashes and bilinear weights), numpy stable ranks, hand-computed level resolutions and memory
sums; then through every regime, checkpoints, rank profiles and SAEs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import tiny_signals
from inrlens import backbones as B
from inrlens.backbones.hashgrid import PRIME_Y, level_resolutions
from inrlens.config import NetConfig, TrainConfig, from_dict
from inrlens.data import grid
from inrlens.fit import fit_cohort, fit_single, fit_transfer, make_optimizer
from inrlens.memory import SAFETY, member_bytes, members_per_chunk
from inrlens.nets import Stack, cohort_stack, transfer_stack
from inrlens.probes import rank
from inrlens.probes.sae import SAEConfig, diagnostics, layer_acts, train_sae
from inrlens.store import load_stack, save_stack

QUIET = dict(progress=False, with_lpips=False)
L = 3
NEW = ("gauss", "wire", "finer", "hashgrid")
HASH = dict(hash_levels=4, hash_features=2, hash_log2_table=6, hash_min_res=2, hash_max_res=16)  # N = 2, 4, 8, 16


def cfg_for(bb: str, **kw) -> NetConfig:
    base = {"backbone": bb, "width": 12, "depth": L, **HASH}
    if bb == "finer":
        base["finer_first_bias"] = 2.0  # exercise the wide first-layer bias
    return NetConfig(**{**base, **kw})


def np_stable_rank(m) -> float:
    s = np.linalg.svd(np.asarray(m, dtype=np.float64), compute_uv=False)
    return float((s**2).sum() / s.max() ** 2)


# ------------------------------------------------------------------------------------------ naive references
def naive_hash_embed(cfg: NetConfig, table: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """γ(x) of one member, pixel by pixel and level by level: (P, L·F). table (L, T, F)."""
    T = 2**cfg.hash_log2_table
    F = cfg.hash_features
    xy = coords.double().numpy()
    tab = table.detach().double().numpy()
    res = level_resolutions(cfg)
    out = np.zeros((xy.shape[0], len(res) * F))
    for p in range(xy.shape[0]):
        for lev, n in enumerate(res):
            feat = np.zeros(F)
            pos = [(xy[p, a] + 1.0) * 0.5 * n for a in range(2)]
            i0 = [min(int(math.floor(v)), n - 1) for v in pos]
            fr = [pos[a] - i0[a] for a in range(2)]
            for dx in (0, 1):
                for dy in (0, 1):
                    i, j = i0[0] + dx, i0[1] + dy
                    if (n + 1) ** 2 <= T:
                        idx = i + j * (n + 1)
                    else:
                        idx = ((i * 1) ^ (j * 2654435761)) % T  # python ints: no overflow
                    wgt = (fr[0] if dx else 1 - fr[0]) * (fr[1] if dy else 1 - fr[1])
                    feat += wgt * tab[lev, idx]
            out[p, lev * F:(lev + 1) * F] = feat
    return torch.from_numpy(out)


def naive_forward(cfg: NetConfig, st: Stack, i: int, coords: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Output (P, C) and hidden activations of member i (shared layers: row 0) with explicit formulas, in float64."""
    pick = lambda t: t[min(i, t.shape[0] - 1)].detach().double()  # noqa: E731
    coords = coords.double()
    ws = [pick(w) for w in st.weights]
    bs = [pick(b) for b in st.biases]
    bb = cfg.backbone
    hidden = []
    if bb == "wire":
        w0, s0 = cfg.wire_omega0, cfg.wire_scale
        c = cfg.width // 2
        gab = lambda z: torch.exp(1j * w0 * z - (s0 * z).abs() ** 2)  # noqa: E731
        z = coords @ ws[0][:, :c] + bs[0][:, :c]  # real first layer
        h = gab(z.to(torch.complex128))
        hidden.append(h)
        for ell in range(1, L):
            m = torch.complex(ws[ell][:c, :c], ws[ell][:c, c:])  # M = A + jB from the top blocks
            bias = torch.complex(bs[ell][:, :c], bs[ell][:, c:])
            h = gab(h @ m + bias)
            hidden.append(h)
        mh = torch.complex(ws[L][:c], -ws[L][c:])  # head weight [A; −B]
        out = (h @ mh + bs[L]).real
        return out, [torch.cat([x.real, x.imag], -1) for x in hidden]
    h = naive_hash_embed(cfg, pick(st.table), coords) if bb == "hashgrid" else coords
    for ell in range(L):
        z = h @ ws[ell] + bs[ell]
        if bb == "gauss":
            h = torch.exp(-((cfg.gauss_scale * z) ** 2))
        elif bb == "finer":
            h = torch.sin(cfg.finer_omega0 * (z.abs() + 1) * z)
        else:
            h = torch.relu(z)
        hidden.append(h)
    return h @ ws[L] + bs[L], hidden


# ------------------------------------------------------------------------------------------ registry, config
def test_registered_in_order_with_descriptions():
    names = B.backbone_names()
    assert names[:6] == ("siren", "ffmlp", "gauss", "wire", "finer", "hashgrid")
    lrs = {n: B.get_backbone(n).default_lr for n in NEW}
    assert lrs == {"gauss": 1e-3, "wire": 5e-3, "finer": 5e-4, "hashgrid": 1e-2}
    assert "complex" in B.get_backbone("wire").description and "[Re, Im]" in B.get_backbone("wire").description
    assert B.get_backbone("hashgrid").encoding_trainable and not B.get_backbone("gauss").encoding_trainable


def test_netconfig_defaults_and_validation():
    d = NetConfig()
    assert (d.gauss_scale, d.wire_omega0, d.wire_scale, d.finer_omega0, d.finer_first_bias) == (10.0, 20.0, 10.0, 30.0, None)
    assert (d.hash_levels, d.hash_features, d.hash_log2_table, d.hash_min_res, d.hash_max_res) == (16, 2, 16, 16, 512)
    bad = [dict(gauss_scale=0.0), dict(wire_omega0=float("nan")), dict(wire_scale=float("inf")), dict(finer_omega0=-1.0),
           dict(finer_first_bias=0.0), dict(finer_first_bias=float("nan")), dict(hash_levels=0), dict(hash_features=0),
           dict(hash_log2_table=31), dict(hash_min_res=0), dict(hash_max_res=8, hash_min_res=16),
           dict(backbone="wire", width=11)]
    for kw in bad:
        with pytest.raises(ValueError) as e:
            from_dict(NetConfig, kw)
        assert "\n" not in str(e.value) and str(e.value).startswith("NetConfig: ")
    with pytest.raises(ValueError, match="expected an integer"):
        from_dict(NetConfig, {"hash_levels": 2.5})
    with pytest.raises(ValueError):
        NetConfig(hash_levels=True)


def test_new_fields_stay_out_of_keys_at_their_default():
    from inrlens.config import config_hash, key_dict, to_dict

    d = key_dict(NetConfig())
    assert set(d) == {"backbone", "width", "depth", "omega0", "omega0_first", "ff_features", "ff_sigma"}
    assert key_dict(NetConfig(backbone="hashgrid", hash_max_res=256))["hash_max_res"] == 256
    assert config_hash(NetConfig()) == config_hash({k: v for k, v in to_dict(NetConfig()).items() if k in d})


def test_level_resolutions_by_hand():
    assert level_resolutions(cfg_for("hashgrid")) == [2, 4, 8, 16]
    assert level_resolutions(NetConfig(hash_levels=3, hash_min_res=16, hash_max_res=512)) == [16, 90, 512]  # b = √32
    assert level_resolutions(NetConfig(hash_levels=1, hash_min_res=16, hash_max_res=512)) == [16]
    assert level_resolutions(NetConfig())[-1] == 512 and level_resolutions(NetConfig())[0] == 16
    assert PRIME_Y == 2654435761


# ------------------------------------------------------------------------------------------ forward vs naive
@pytest.mark.parametrize("bb", NEW)
def test_forward_matches_naive_reference(bb):
    cfg = cfg_for(bb)
    seeds = [4, 9, 13]
    st = Stack.init(cfg, 3, seeds).double()  # float64 on both sides: ω₀ = 20–30 amplifies float32 rounding
    if bb == "hashgrid":  # the initial ±1e-4 table is too flat to test indices: use O(1) entries
        with torch.no_grad():
            st.table.copy_(torch.randn(st.table.shape, generator=torch.Generator().manual_seed(1)))
    coords = grid(16, 16).double()
    out, hidden = st.activations(coords)
    for i in range(3):
        ref, ref_hidden = naive_forward(cfg, st, i, coords)
        torch.testing.assert_close(out[i], ref, rtol=1e-9, atol=1e-10)
        for ell in range(L):
            torch.testing.assert_close(hidden[ell][i], ref_hidden[ell], rtol=1e-9, atol=1e-10)
    # and the float32 stack agrees to float32 accuracy
    out32 = Stack.init(cfg, 3, seeds)
    if bb == "hashgrid":
        with torch.no_grad():
            out32.table.copy_(st.table.float())
    torch.testing.assert_close(out32(grid(16, 16)).double(), out, rtol=1e-3, atol=1e-4)


def test_hash_embed_covers_direct_and_hashed_levels():
    cfg = cfg_for("hashgrid")
    T = 2**cfg.hash_log2_table
    assert [(n + 1) ** 2 <= T for n in level_resolutions(cfg)] == [True, True, False, False]
    table = torch.randn(1, cfg.hash_levels, T, cfg.hash_features, generator=torch.Generator().manual_seed(2))
    coords = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.3, -0.7], [-0.05, 0.9]])
    got = B.get_backbone("hashgrid").embed(cfg, {"table": table}, coords)[0]
    torch.testing.assert_close(got.double(), naive_hash_embed(cfg, table[0], coords), rtol=1e-5, atol=1e-6)
    # corners of the unit square hit table entries exactly (weights 1, 0, 0, 0): the direct level-1 index of
    # (N, N) = (4, 4) is 4 + 4·5 = 24; the hashed level-3 index of (16, 16) is (16 ⊕ 16·2654435761) mod 64
    assert torch.equal(got[1, 2:4], table[0, 1, 24])
    assert torch.equal(got[1, 6:8], table[0, 3, (16 ^ (16 * 2654435761)) % 64])
    assert torch.equal(got[0, 0:2], table[0, 0, 0])


def test_wire_weights_keep_their_complex_form_and_first_layer_stays_real():
    cfg = cfg_for("wire")
    c = cfg.width // 2
    sigs = tiny_signals(2, 16)
    st, _, _ = fit_single(sigs[:1], cfg, TrainConfig(steps=15, device="cpu"), seeds=(3,), **QUIET)
    drawn = Stack.init(cfg, 3, [3])
    assert not torch.equal(st.weights[1], drawn.weights[1])  # it trained
    assert torch.all(st.weights[0][..., c:] == 0) and torch.all(st.biases[0][..., c:] == 0)
    for ell in range(1, L):
        w = st.weights[ell][0]
        assert torch.equal(w[c:, c:], w[:c, :c]) and torch.equal(w[c:, :c], -w[:c, c:])
    # its stable rank is twice that of the complex matrix M = A + jB
    w = st.weights[1][0].double()
    m = torch.complex(w[:c, :c], w[:c, c:])
    s = torch.linalg.svdvals(m)
    assert rank.stable_rank(st.weights[1][0]) == pytest.approx(2 * float((s**2).sum() / s.max() ** 2), rel=1e-5)


# ------------------------------------------------------------------------------------------ stacking, init order
@pytest.mark.parametrize("bb", NEW)
def test_stack_members_equal_separately_built_ones(bb):
    cfg = cfg_for(bb)
    seeds = [5, 0, 11]
    st = Stack.init(cfg, 3, seeds)
    coords = grid(16, 16)
    out = st(coords)
    for i, s in enumerate(seeds):
        alone = Stack.init(cfg, 3, [s])
        for a, b in zip(st.member(i).parameters(), alone.parameters()):
            assert torch.equal(a, b)
        for name in st.encoding_names:
            assert torch.equal(getattr(st, name)[i], getattr(alone, name)[0])
        torch.testing.assert_close(out[i], alone(coords)[0], rtol=0, atol=1e-6)
    # a cohort of one is the single INR of its seed
    one = cohort_stack(cfg, 3, 1, seed=5)
    for a, b in zip(one.parameters(), Stack.init(cfg, 3, [5]).parameters()):
        assert torch.equal(a, b)


def test_init_draws_by_hand():
    """The documented init ranges and draw order, drawn again here from the member's generator."""
    g = torch.Generator().manual_seed(7)
    cfg = cfg_for("finer")
    w0 = torch.empty(2, 12).uniform_(-1 / 2, 1 / 2, generator=g)
    b0 = torch.empty(1, 12).uniform_(-2.0, 2.0, generator=g)  # finer_first_bias = 2
    w1 = torch.empty(12, 12).uniform_(-math.sqrt(6 / 12) / 30, math.sqrt(6 / 12) / 30, generator=g)
    st = Stack.init(cfg, 3, [7])
    assert torch.equal(st.weights[0][0], w0) and torch.equal(st.biases[0][0], b0) and torch.equal(st.weights[1][0], w1)
    default = Stack.init(cfg_for("finer", finer_first_bias=None), 3, [7])
    assert default.biases[0].abs().max() <= 1 / math.sqrt(2) and st.biases[0].abs().max() > 1 / math.sqrt(2)

    g = torch.Generator().manual_seed(7)
    cfg = cfg_for("hashgrid")
    table = torch.empty(4, 64, 2).uniform_(-1e-4, 1e-4, generator=g)
    w0 = torch.empty(8, 12).uniform_(-1 / math.sqrt(8), 1 / math.sqrt(8), generator=g)
    st = Stack.init(cfg, 3, [7])
    assert isinstance(st.table, torch.nn.Parameter) and st.table.shape == (1, 4, 64, 2)
    assert torch.equal(st.table[0].detach(), table) and torch.equal(st.weights[0][0], w0)

    g = torch.Generator().manual_seed(7)
    cfg = cfg_for("wire")
    a0 = torch.empty(2, 6).uniform_(-1 / math.sqrt(2), 1 / math.sqrt(2), generator=g)
    ab0 = torch.empty(1, 6).uniform_(-1 / math.sqrt(2), 1 / math.sqrt(2), generator=g)
    a1 = torch.empty(6, 6).uniform_(-1 / math.sqrt(6), 1 / math.sqrt(6), generator=g)
    st = Stack.init(cfg, 3, [7])
    assert torch.equal(st.weights[0][0][:, :6], a0) and torch.equal(st.biases[0][0][:, :6], ab0)
    assert torch.equal(st.weights[1][0][:6, :6], a1)

    g = torch.Generator().manual_seed(7)
    cfg = cfg_for("gauss")
    w0 = torch.empty(2, 12).uniform_(-1 / math.sqrt(2), 1 / math.sqrt(2), generator=g)
    assert torch.equal(Stack.init(cfg, 3, [7]).weights[0][0], w0)


# ------------------------------------------------------------------------------------------ regimes
@pytest.mark.parametrize("bb", NEW)
def test_single_cohort_and_every_transfer(bb):
    cfg = cfg_for(bb)
    sigs = tiny_signals(4, 16)
    tc = TrainConfig(steps=30, log_every=5, device="cpu")
    st, fr, res = fit_single(sigs[:2], cfg, tc, seeds=(0,), **QUIET)
    first = fr.curve[0].tolist()  # PSNR before the first update
    assert all(r.psnr > first[i] + 0.5 for i, r in enumerate(res)), ([r.psnr for r in res], first)
    if bb == "hashgrid":
        assert not torch.equal(st.table.detach(), Stack.init(cfg, 3, [0, 0]).table.detach())

    enc, _, cres = fit_cohort(sigs[2:], cfg, TrainConfig(steps=10, device="cpu"), seed=0, **QUIET)
    assert all(math.isfinite(r.psnr) for r in cres)
    snap_w = [w.detach().clone() for w in enc.weights]
    snap_b = [b.detach().clone() for b in enc.biases]
    snap_enc = {k: t.detach().clone() for k, t in enc.encoding.items()}
    for k in [None, *range(L)]:
        t, _, tres = fit_transfer(enc, sigs[:2], k, TrainConfig(steps=4, device="cpu"), seeds=(0,), **QUIET)
        assert all(math.isfinite(r.psnr) for r in tres)
        for ell in range(L):
            if k is not None and ell <= k:
                assert torch.equal(t.weights[ell][0], snap_w[ell][0]) and torch.equal(t.biases[ell][0], snap_b[ell][0])
            else:
                assert t.weights[ell].shape[0] == 2 and not torch.equal(t.weights[ell][0], snap_w[ell][0])
        if bb == "hashgrid":
            if k is None:
                assert t.table.shape[0] == 2 and all(not torch.equal(t.table[i].detach(), snap_enc["table"][0]) for i in range(2))
            else:
                assert t.table.shape[0] == 1 and torch.equal(t.table.detach(), snap_enc["table"]), f"table moved at k={k}"
    for ell in range(L):  # the caller's encoder is untouched
        assert torch.equal(enc.weights[ell], snap_w[ell])
    for name, v in snap_enc.items():
        assert torch.equal(getattr(enc, name).detach(), v)
    # random-init baseline: a transfer's re-initialised layer equals that layer of a random init of the same seed
    tr = transfer_stack(enc, 0, [3], 3)
    assert torch.equal(tr.weights[1][0], Stack.init(cfg, 3, [3]).weights[1][0])


def test_hash_table_trains_with_layer_0_only():
    cfg = cfg_for("hashgrid")
    st = Stack.init(cfg, 3, [0, 1])
    held = lambda opt: {id(p) for g in opt.param_groups for p in g["params"]}  # noqa: E731
    assert id(st.table) in held(make_optimizer(st, 0, 1e-3))
    assert id(st.table) not in held(make_optimizer(st, 1, 1e-3)) and not st.table.requires_grad


# ------------------------------------------------------------------------------------------ checkpoints, probes
@pytest.mark.parametrize("bb", NEW)
def test_checkpoint_round_trip(bb, tmp_path):
    cfg = cfg_for(bb, gauss_scale=3.0, wire_omega0=7.0, hash_max_res=12)
    st = Stack.init(cfg, 3, [0, 1])
    save_stack(st, tmp_path / bb)
    back, _ = load_stack(tmp_path / bb)
    assert back.cfg == cfg and back.encoding_names == st.encoding_names
    for a, b in zip(back.state_dict().values(), st.state_dict().values()):
        assert torch.equal(a, b)
    coords = grid(8, 8)
    assert torch.equal(back(coords), st(coords))


@pytest.mark.parametrize("bb", NEW)
def test_rank_profile_and_sae(bb):
    cfg = cfg_for(bb)
    sigs = tiny_signals(2, 16)
    enc, _, _ = fit_cohort(sigs, cfg, TrainConfig(steps=5, device="cpu"), seed=0, **QUIET)
    coords = grid(16, 16)
    prof = rank.profile(enc, (16, 16))
    ws = [enc.weights[e][0].detach() for e in range(L + 1)]
    np.testing.assert_allclose(prof.sr_w, [np_stable_rank(w.numpy()) for w in ws[:L]], rtol=1e-6)
    _, ref_hidden = naive_forward(cfg, enc, 0, coords)  # float64
    np.testing.assert_allclose(prof.sr_h, [np_stable_rank(h.numpy()) for h in ref_hidden], rtol=1e-3)

    h1 = layer_acts(enc, coords, 0)[1]
    assert h1.shape == (256, cfg.width)
    sae, _ = train_sae(h1, SAEConfig(n=24, k=4, steps=30, batch=128, lr=1e-3), progress=False)
    row, _, codes = diagnostics(enc, sae, 1, 0, coords, target=sigs[0].targets())
    recon = sae.decode_sparse(sae.codes(h1))
    fvu = ((h1 - recon) ** 2).sum() / ((h1 - h1.mean(0)) ** 2).sum()
    assert abs(row["r2"] - (1 - float(fvu))) < 1e-5 and codes.indices.shape == (256, 4)


# ------------------------------------------------------------------------------------------ memory
def test_hashgrid_memory_estimate_counts_the_table():
    cfg = cfg_for("hashgrid")
    P, C, w = 256, 3, cfg.width
    st = Stack.init(cfg, C, [0])
    param_elems = sum(p.numel() for p in st.parameters())  # one member: table + layers
    table = cfg.hash_levels * 2**cfg.hash_log2_table * cfg.hash_features
    assert st.table.numel() == table == 512
    est0, est1 = member_bytes(cfg, P, C, 0), member_bytes(cfg, P, C, 1)
    assert est0 >= 4 * 4 * param_elems  # value, gradient and two Adam moments of every parameter, table included
    # by hand: d0 = L·F = 8; the table trains only with layer 0
    d0 = 8
    layers = (d0 * w + w) + (L - 1) * (w * w + w) + (w * C + C)
    want0 = 4 * (layers + table) + P * (d0 + 8 * d0 + 3 * L * w + 2 * w + 4 * C)
    layers1 = (L - 1) * (w * w + w) + (w * C + C)
    want1 = 4 * layers1 + P * (w + 3 * (L - 1) * w + 2 * w + 4 * C)
    assert (est0, est1) == (4 * want0, 4 * want1)
    assert param_elems == layers + table
    # the chunk size follows: a budget for exactly 5 members gives 5
    assert members_per_chunk(cfg, P, C, 0, budget_bytes=int(5 * est0 * SAFETY) + 1) == 5

    # the table of a realistic config dominates a member's parameters, and the estimate carries it
    big = NetConfig(backbone="hashgrid", width=64, depth=2)
    tbl = 16 * 2**16 * 2
    assert member_bytes(big, 4096, 3, 0) - member_bytes(big, 4096, 3, 1) >= 4 * 4 * tbl


def test_cli_offers_the_new_backbones(capsys):
    from inrlens.cli import main

    assert main(["fit", "--net.backbone", "nope", "x.png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("inrlens: error:") and all(n in err for n in NEW)
