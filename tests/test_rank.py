"""Stable rank against numpy SVD; profiles of real encoders against naive per-layer loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inrlens.config import NetConfig
from inrlens.data import grid
from inrlens.nets import Stack, cohort_stack
from inrlens.probes.rank import activation_ranks, argmax, profile, stable_rank, weight_ranks


def np_sr(m: np.ndarray) -> float:
    s = np.linalg.svd(m.astype(np.float64), compute_uv=False)
    return float((s**2).sum() / s.max() ** 2)


@pytest.mark.parametrize("shape", [(8, 8), (5, 17), (64, 3), (1, 9), (256, 32)])
def test_random_matches_numpy_and_bounds(shape):
    rng = np.random.default_rng(sum(shape))
    m = rng.standard_normal(shape).astype(np.float32)
    sr = stable_rank(torch.from_numpy(m))
    assert sr == pytest.approx(np_sr(m), rel=1e-9)
    assert 1.0 - 1e-9 <= sr <= np.linalg.matrix_rank(m) + 1e-9


def test_rank_one_is_one():
    rng = np.random.default_rng(1)
    m = np.outer(rng.standard_normal(12), rng.standard_normal(7))
    assert stable_rank(torch.from_numpy(m)) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("n", [1, 4, 16])
def test_orthogonal_is_full(n):
    q, _ = np.linalg.qr(np.random.default_rng(n).standard_normal((n, n)))
    assert stable_rank(torch.from_numpy(q)) == pytest.approx(float(n), rel=1e-9)
    # a rectangular matrix with orthonormal columns (n of them) has sr = n; scaling does not change sr
    q2, _ = np.linalg.qr(np.random.default_rng(n + 1).standard_normal((3 * n, n)))
    assert stable_rank(torch.from_numpy(7.5 * q2)) == pytest.approx(float(n), rel=1e-9)


def test_hand_computed_diagonal():
    # singular values 3, 2, 1 → (9 + 4 + 1) / 9
    m = torch.diag(torch.tensor([1.0, 3.0, 2.0]))
    assert stable_rank(m) == pytest.approx(14.0 / 9.0, rel=1e-12)
    assert stable_rank(m.T) == stable_rank(m)
    assert stable_rank(torch.zeros(3, 4)) == 0.0
    with pytest.raises(ValueError):
        stable_rank(torch.zeros(2, 2, 2))


def test_argmax_first_on_ties():
    assert argmax([1.0, 3.0, 3.0, 2.0]) == 1
    assert argmax([5.0]) == 0


@pytest.mark.parametrize("backbone", ["siren", "ffmlp"])
def test_profile_matches_naive_layer_loop(backbone):
    cfg = NetConfig(backbone=backbone, width=24, depth=4, ff_features=16, ff_sigma=2.0)
    enc = cohort_stack(cfg, 3, n_heads=3, seed=5).requires_grad_(False)
    sw = weight_ranks(enc)
    ref_w = [np_sr(enc.weights[ell][0].numpy()) for ell in range(cfg.depth)]
    np.testing.assert_allclose(sw, ref_w, rtol=1e-9)
    if backbone == "siren":
        assert sw[0] <= 2.0 + 1e-9  # layer 0 is Linear(2 → width)

    # naive forward of the encoder, written out from Eq. 1
    h, w = 9, 13
    x = grid(h, w).double()  # (P, 2)
    if backbone == "ffmlp":
        proj = 2 * np.pi * x @ enc.fourier[0].double()
        a = torch.cat([torch.sin(proj), torch.cos(proj)], 1)
    else:
        a = x
    ref_h = []
    for ell in range(cfg.depth):
        z = a @ enc.weights[ell][0].double() + enc.biases[ell][0].double()
        a = torch.sin(cfg.omega0 * z) if backbone == "siren" else torch.relu(z)
        ref_h.append(np_sr(a.numpy()))
    np.testing.assert_allclose(activation_ranks(enc, (h, w)), ref_h, rtol=1e-4)
    prof = profile(enc, (h, w))
    assert prof.k_w == int(np.argmax(ref_w)) and prof.k_h == int(np.argmax(ref_h))
    assert prof.grid_shape == (h, w)


def test_rejects_per_member_layers():
    st = Stack.init(NetConfig(width=8, depth=2), 1, [0, 1])
    with pytest.raises(ValueError, match="members"):
        weight_ranks(st)
    # a single INR is fine
    assert len(weight_ranks(Stack.init(NetConfig(width=8, depth=2), 1, [0]))) == 2


def test_rank_cli_prints_profile_and_prediction(tmp_path, capsys):
    from inrlens.cli import main
    from inrlens.store import save_stack

    cfg = NetConfig(backbone="siren", width=16, depth=3)
    enc = cohort_stack(cfg, 3, n_heads=2, seed=3).requires_grad_(False)
    save_stack(enc, tmp_path / "enc", {"grid": [12, 10]})
    assert main(["rank", str(tmp_path / "enc")]) == 0
    out = capsys.readouterr().out
    prof = profile(enc, (12, 10))
    assert f"k* = argmax sr(W) = {prof.k_w}; argmax sr(H) = {prof.k_h}" in out and "12x10 grid" in out
    assert f"{prof.sr_w[1]:.4f}" in out
    assert main(["rank", str(tmp_path / "nothing")]) == 2


@pytest.mark.parametrize("backbone", ["siren", "ffmlp"])
def test_centred_activation_ranks_and_rank_at_init(backbone):
    """Centred sr(H) against numpy on the mean-subtracted activations; sr(W⁰) of an untrained cohort equals its
    own sr(W) (Δsr = 0); after changing one layer, Δsr is the numpy difference and argmax Δsr points at it."""
    cfg = NetConfig(backbone=backbone, width=16, depth=3, ff_features=8, ff_sigma=2.0)
    enc = cohort_stack(cfg, 1, n_heads=2, seed=11).requires_grad_(False)
    h, w = 7, 9
    x = grid(h, w).double()
    a = torch.cat([torch.sin(2 * np.pi * x @ enc.fourier[0].double()), torch.cos(2 * np.pi * x @ enc.fourier[0].double())], 1) \
        if backbone == "ffmlp" else x
    ref = []
    for ell in range(cfg.depth):
        z = a @ enc.weights[ell][0].double() + enc.biases[ell][0].double()
        a = torch.sin(cfg.omega0 * z) if backbone == "siren" else torch.relu(z)
        m = a.numpy()
        ref.append(np_sr(m - m.mean(axis=0, keepdims=True)))
    np.testing.assert_allclose(activation_ranks(enc, (h, w), centre=True), ref, rtol=1e-4)
    prof = profile(enc, (h, w), init_seed=11)
    np.testing.assert_allclose(prof.sr_h_centred, ref, rtol=1e-4)
    assert prof.k_h_centred == int(np.argmax(ref))
    np.testing.assert_allclose(prof.sr_w_init, prof.sr_w, rtol=1e-12)
    np.testing.assert_allclose(prof.delta_sr, [0.0] * cfg.depth, atol=1e-9)
    # make layer 1 low-rank: Δsr₁ < 0, the others 0
    w1 = enc.weights[1][0].numpy().copy()
    u, s, vt = np.linalg.svd(w1, full_matrices=False)
    s[1:] *= 0.1
    enc.weights[1].data[0] = torch.from_numpy((u * s) @ vt).float()
    prof = profile(enc, (h, w), init_seed=11)
    want = np_sr(enc.weights[1][0].double().numpy()) - np_sr(w1)
    assert prof.delta_sr[1] == pytest.approx(want, rel=1e-6) and want < 0
    assert abs(prof.delta_sr[0]) < 1e-9 and abs(prof.delta_sr[2]) < 1e-9
    assert prof.k_delta == 0  # first index among the zero changes


# ------------------------------------------------------------------------------------------------ every predictor
def _cli_rows(out: str) -> dict[int, dict[str, str]]:
    """The rows of `inrlens rank`'s table: {layer: {column: printed value}}."""
    lines = out.splitlines()
    i = next(n for n, ln in enumerate(lines) if ln.startswith("layer "))
    cols = lines[i].split()
    rows = {}
    for ln in lines[i + 2:]:
        if not ln[:1].isdigit():
            break
        cells = ln.split()
        rows[int(cells[0])] = dict(zip(cols, cells))
    return rows


def _close(printed: str, value: float) -> bool:
    """A value printed by print_table (4 decimals below 10, else 2) equals ``value``."""
    return abs(float(printed) - value) <= (5e-5 if abs(value) < 10 else 5e-3) + 1e-12


def _trained_cohort(seed: int, width: int = 8, depth: int = 3):
    from conftest import tiny_signals
    from inrlens.config import TrainConfig
    from inrlens.fit import fit_cohort

    stack, _, _ = fit_cohort(tiny_signals(2, 16, 3, seed=1), NetConfig(width=width, depth=depth), TrainConfig(steps=15, lr=1e-3),
                             seed, progress=False)
    return stack.requires_grad_(False)


def test_rank_cli_prints_every_predictor_equal_to_profile(tmp_path, capsys):
    """`inrlens rank` on a trained cohort whose checkpoint records its seed: every column and the four predicted
    depths equal profile(…, init_seed=seed); sr(W) at init against numpy on the re-drawn encoder; --init-seed
    overrides the recorded seed; without any seed the init columns are n/a."""
    from inrlens.cli import main
    from inrlens.store import save_stack

    enc = _trained_cohort(seed=4)
    save_stack(enc, tmp_path / "enc", {"grid": [12, 10], "seed": 4})
    assert main(["rank", str(tmp_path / "enc")]) == 0
    out = capsys.readouterr().out
    prof = profile(enc, (12, 10), init_seed=4)
    init = cohort_stack(enc.cfg, 3, 2, 4)
    ref_w0 = [np_sr(init.weights[ell][0].detach().numpy()) for ell in range(3)]
    np.testing.assert_allclose(prof.sr_w_init, ref_w0, rtol=1e-9)
    assert max(abs(d) for d in prof.delta_sr) > 1e-4  # training moved the ranks
    rows = _cli_rows(out)
    assert sorted(rows) == [0, 1, 2]
    for ell, r in rows.items():
        for col, vals in (("sr_w", prof.sr_w), ("sr_w_init", prof.sr_w_init), ("delta_sr", prof.delta_sr), ("sr_h", prof.sr_h),
                          ("sr_h_centred", prof.sr_h_centred)):
            assert _close(r[col], vals[ell]), (ell, col, r[col], vals[ell])
    assert (f"k* = argmax sr(W) = {prof.k_w}; argmax sr(H) = {prof.k_h}; argmax sr(H) centred = {prof.k_h_centred}; "
            f"argmax Δsr = {prof.k_delta}") in out
    assert "init seed 4 (the checkpoint's meta)" in out

    assert main(["rank", str(tmp_path / "enc"), "--init-seed", "9"]) == 0
    out9 = capsys.readouterr().out
    p9 = profile(enc, (12, 10), init_seed=9)
    assert all(_close(r["delta_sr"], p9.delta_sr[ell]) for ell, r in _cli_rows(out9).items())
    assert f"argmax Δsr = {p9.k_delta}" in out9 and "init seed 9 (--init-seed)" in out9

    save_stack(enc, tmp_path / "noseed", {"grid": [12, 10]})
    assert main(["rank", str(tmp_path / "noseed")]) == 0
    out0 = capsys.readouterr().out
    assert all(r["sr_w_init"] == "n/a" and r["delta_sr"] == "n/a" for r in _cli_rows(out0).values())
    assert "argmax Δsr = n/a" in out0 and f"argmax sr(H) centred = {prof.k_h_centred}" in out0


def test_rank_cli_reads_the_seed_of_an_inrlens_cohort_run(tmp_path, capsys):
    """An `inrlens cohort` folder: its checkpoint meta has no seed, its run.json does; rank uses that seed and its
    sr(W) at init equals numpy on cohort_stack(cfg, C, n, seed)."""
    from conftest import tiny_signals
    from inrlens.cli import main
    from inrlens.config import TrainConfig
    from inrlens.store import load_stack
    from inrlens.workflows import train_cohort

    train_cohort(tiny_signals(3, 16, 3, seed=2), tmp_path / "co", NetConfig(width=8, depth=2), TrainConfig(steps=8, lr=1e-3),
                 n=2, seed=6, progress=False)
    enc, meta = load_stack(tmp_path / "co")
    assert main(["rank", str(tmp_path / "co"), "--grid", "8", "8"]) == 0
    out = capsys.readouterr().out
    assert f"init seed 6 ({tmp_path / 'co' / 'run.json'} (inrlens cohort --seed))" in out
    init = cohort_stack(enc.cfg, 3, 2, 6)
    prof = profile(enc, (8, 8), init_seed=6)
    for ell, r in _cli_rows(out).items():
        assert _close(r["sr_w_init"], np_sr(init.weights[ell][0].detach().numpy()))
        assert _close(r["delta_sr"], prof.delta_sr[ell])


def test_sweep_cohort_row_records_every_predictor(tmp_path):
    """A tiny real sweep (debug cluster, 16 px, width 8, cohort seed 3): the cohort row holds the new fields,
    equal to profile() recomputed from the saved checkpoint with the seed its meta records; the old fields are
    unchanged; and the re-drawn init is the encoder the cohort started from (numpy on cohort_stack)."""
    from inrlens.store import load_stack, read_rows
    from inrlens.sweep import ExecSpec, run_sweep
    from test_sweep import tiny_spec, write_set

    sets = {"rgb": write_set(tmp_path / "rgb", 5, 16, 3, 0), "gray": write_set(tmp_path / "gray", 5, 16, 1, 7)}
    spec = tiny_spec(sets, sources=("rgb",), targets=("gray",), depths=("none",), seeds=(0,), n_test=1, cohort_seed=3)
    run_sweep(spec, ExecSpec(cluster="debug", jobs=1, max_members=4), tmp_path / "run", log=lambda *a: None)
    (row,) = [r for r in read_rows(tmp_path / "run" / "results") if r.get("kind") == "cohort"]
    enc, meta = load_stack(tmp_path / "run" / "cohorts" / "rgb_siren")
    assert meta["seed"] == 3 and row["seed"] == 3
    prof = profile(enc, tuple(row["grid"]), init_seed=meta["seed"])
    assert row["grid"] == [16, 16]
    for f in ("sr_w", "sr_h", "sr_h_centred", "sr_w_init", "delta_sr"):
        np.testing.assert_allclose(row[f], getattr(prof, f), rtol=1e-12, err_msg=f)
    for f in ("k_w", "k_h", "k_h_centred", "k_delta"):
        assert row[f] == getattr(prof, f), f
    ref_w0 = [np_sr(w[0].detach().numpy()) for w in cohort_stack(enc.cfg, enc.out_features, 2, 3).weights[:-1]]
    np.testing.assert_allclose(row["sr_w_init"], ref_w0, rtol=1e-9)
    np.testing.assert_allclose(row["delta_sr"], np.array(row["sr_w"]) - np.array(ref_w0), rtol=1e-9, atol=1e-12)
    assert row["k_delta"] == int(np.argmax(row["delta_sr"]))
