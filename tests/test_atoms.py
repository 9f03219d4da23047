"""Atom maps and single-atom ablations against naive references; `inrlens sae | atoms | ablate` smoke runs."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import tiny_signals
from inrlens.probes.atoms import ablate, ablated_acts, atom_maps, load_stats, load_tensors, rank_atoms
from inrlens.cli import main
from inrlens.config import NetConfig, TrainConfig
from inrlens.data import grid
from inrlens.fit import fit_single
from inrlens.probes.sae import Codes, SAEConfig, Stats, TopKSAE, layer_acts, psnr_pm1, run_from, train_sae
from inrlens.store import read_rows, save_stack


@pytest.fixture(scope="module")
def inr():
    """A small real SIREN fit (16 px), its layer-1 activations and a trained SAE on them."""
    sigs = tiny_signals(1, 16)
    stack, _, _ = fit_single(sigs, NetConfig(width=16, depth=3), TrainConfig(steps=40, device="cpu"), progress=False, with_lpips=False)
    coords = grid(16, 16)
    h = layer_acts(stack, coords, 0)[1]
    sae, _ = train_sae(h, SAEConfig(n=32, k=4, steps=100, batch=256, lr=1e-2), progress=False)
    return stack, coords, h, sae, sigs[0].targets()


def test_atom_maps_against_naive_loop():
    g = torch.Generator().manual_seed(0)
    H, W, n, k = 3, 4, 6, 2
    idx = torch.stack([torch.randperm(n, generator=g)[:k] for _ in range(H * W)])
    vals = torch.rand(H * W, k, generator=g)
    maps = atom_maps(Codes(vals, idx), [5, 0, 2], (H, W))
    ref = np.zeros((3, H, W), dtype=np.float32)
    for a, j in enumerate([5, 0, 2]):
        for r in range(H):
            for c in range(W):
                p = r * W + c  # row-major grid
                for t in range(k):
                    if idx[p, t] == j:
                        ref[a, r, c] += float(vals[p, t])
    np.testing.assert_allclose(maps.numpy(), ref, rtol=1e-6)


def test_rank_atoms_by_mean_magnitude():
    st = Stats(torch.zeros(4), torch.tensor([0.1, 0.5, 0.0, 0.5]), torch.zeros(4))
    assert rank_atoms(st).tolist() == [1, 3, 0, 2]


def test_ablated_acts_hand_checked():
    """d = 2, n = 3, two coordinates; h' computed by hand."""
    sae = TopKSAE(2, SAEConfig(n=3, k=2), b_dec=torch.tensor([0.5, -0.5]))
    with torch.no_grad():
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]))
    h = torch.tensor([[2.0, 3.0], [1.0, 1.0]])
    codes = Codes(torch.tensor([[2.0, 0.5], [1.0, 0.0]]), torch.tensor([[0, 2], [2, 1]]))
    # atom 2: z_2 = (0.5, 1.0) → h' = h − z_2·(0.6, 0.8)
    torch.testing.assert_close(ablated_acts(sae, h, codes, [2]), torch.tensor([[1.7, 2.6], [0.4, 0.2]]))
    # atom 1 never fires (its kept value is 0): nothing changes
    torch.testing.assert_close(ablated_acts(sae, h, codes, [1]), h)
    # all atoms from ĥ: ĥ − Σ z_j d_j = b_dec at every coordinate
    h_hat = sae.decode_sparse(codes)
    torch.testing.assert_close(h_hat, torch.tensor([[2.8, -0.1], [1.1, 0.3]]))
    torch.testing.assert_close(ablated_acts(sae, h_hat, codes, [0, 1, 2]), sae.b_dec.expand(2, 2))


def test_ablating_a_silent_atom_changes_nothing(inr):
    stack, coords, h, sae, target = inr
    sae = TopKSAE(sae.d, sae.cfg, b_dec=sae.b_dec)
    with torch.no_grad():
        sae.load_state_dict(inr[3].state_dict())
        sae.b_enc[7] = -1e4  # atom 7 can never be among the kept positive values
    codes = sae.codes(h)
    assert float(atom_maps(codes, [7], (256, 1)).abs().max()) == 0.0
    res = ablate(stack, sae, 1, 0, h, codes, [7], target)
    f = run_from(stack, h, 1, 0)
    assert torch.equal(res.out, f)
    assert res.psnr_drop == 0.0 and float(res.err_map.max()) == 0.0 and res.region_frac == 0.0


def test_ablating_all_atoms_equals_b_dec_at_firing_pixels(inr):
    stack, coords, h, sae, target = inr
    codes = sae.codes(h)
    h_hat = sae.decode_sparse(codes)
    res = ablate(stack, sae, 1, 0, h_hat, codes, list(range(sae.n)), target)
    fires = (codes.values > 0).any(1)
    assert fires.any()
    expect_h = torch.where(fires[:, None], sae.b_dec.expand_as(h_hat), h_hat)  # where nothing fires ĥ = b_dec already
    torch.testing.assert_close(res.out, run_from(stack, expect_h, 1, 0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.out, run_from(stack, sae.b_dec.expand_as(h_hat).contiguous(), 1, 0), atol=1e-5, rtol=1e-5)


def test_single_atom_ablation_metrics_against_naive(inr):
    stack, coords, h, sae, target = inr
    codes = sae.codes(h)
    j = int(rank_atoms(Stats(torch.zeros(sae.n), codes.dense(sae.n).mean(0), torch.zeros(sae.n)))[0])
    res = ablate(stack, sae, 1, 0, h, codes, [j], target)
    z = codes.dense(sae.n)[:, j]
    h2 = h.clone()
    for p in range(h.shape[0]):
        h2[p] = h[p] - z[p] * sae.W_dec[j]
    f, f2 = run_from(stack, h, 1, 0), run_from(stack, h2, 1, 0)
    torch.testing.assert_close(res.out, f2, atol=1e-6, rtol=1e-5)
    u, u2 = ((f + 1) / 2).clamp(0, 1), ((f2 + 1) / 2).clamp(0, 1)
    sq = ((u2 - u) ** 2).sum(1)
    inside = sum(float(sq[p]) for p in range(h.shape[0]) if z[p] > sae.cfg.tau)
    assert res.locality == pytest.approx(inside / float(sq.sum()), rel=1e-6)
    assert res.region_frac == pytest.approx(float((z > sae.cfg.tau).float().mean()))
    assert res.psnr_drop == pytest.approx(psnr_pm1(f, target) - psnr_pm1(f2, target), abs=1e-9)
    torch.testing.assert_close(res.err_map, (u2 - u).abs().mean(1))
    assert float(res.err_map.max()) > 1e-4 and res.region_frac > 0  # the strongest atom matters somewhere


def _write_pngs(folder, n=2, size=16):
    from PIL import Image

    paths = []
    for i, s in enumerate(tiny_signals(n, size)):
        p = folder / f"img{i}.png"
        Image.fromarray(((s.pixels.numpy() + 1) * 127.5).round().astype(np.uint8)).save(p)
        paths.append(str(p))
    return paths


def test_cli_sae_atoms_ablate(tmp_path, capsys):
    imgs = _write_pngs(tmp_path)
    assert main(["fit", *imgs, "--out", str(tmp_path / "fit"), "--net.width", "16", "--net.depth", "3",
                 "--train.steps", "20", "--no-lpips", "--train.device", "cpu"]) == 0
    inr = tmp_path / "fit" / "models" / "16x16"
    run = tmp_path / "sae"
    common = ["--sae.steps", "30", "--sae.batch", "128", "--device", "cpu", "--out", str(run)]
    assert main(["sae", str(inr), *imgs, "--member", "img1", "--sweep-n", "16", "32", "--sweep-k", "2", "40", "--layers", "1", "2", *common]) == 0
    rows = read_rows(run / "results.jsonl")  # k = 40 > n is skipped with a note
    assert len(rows) == 4 and {(r["layer"], r["n"], r["k"]) for r in rows} == {(l, n, 2) for l in (1, 2) for n in (16, 32)}
    assert all(r["image"] == "img1" and r["member"] == 1 and r["condition"] == "single-siren" for r in rows)
    assert all(0 <= r["alive_pct"] <= 100 and r["r2"] <= 1 for r in rows)
    assert (run / "figures" / "sweep.png").exists()
    # resume skips finished (layer, n, k)
    assert main(["sae", str(inr), *imgs, "--member", "img1", "--sweep-n", "16", "32", "--sweep-k", "2", "40", "--layers", "1", "2", *common, "--resume"]) == 0
    assert len(read_rows(run / "results.jsonl")) == 4
    assert main(["atoms", str(run), "--top", "5", "--device", "cpu"]) == 0
    t = load_tensors(run / "saes" / "L2_n32_k2" / "atoms.safetensors")
    assert t["maps"].shape == (5, 16, 16) and t["atom"].shape == (5,)
    st, order = load_stats(run / "saes" / "L2_n32_k2")
    assert t["atom"].tolist() == order[:5].tolist()
    assert (run / "saes" / "L2_n32_k2" / "gallery.png").exists() and (run / "figures" / "health_L2.png").exists()
    assert main(["ablate", str(run), "--top", "3", "--device", "cpu"]) == 0
    ab = read_rows(run / "ablations.jsonl")
    assert len(ab) == 2 * 3 and all(r["layer"] == 2 for r in ab)
    a = load_tensors(run / "saes" / "L2_n16_k2" / "ablation.safetensors")
    assert a["err_maps"].shape == (3, 16, 16) and a["psnr_drop"].shape == (3,)
    assert main(["ablate", str(run), "--top", "3", "--device", "cpu"]) == 0  # rerun: no duplicate rows
    assert len(read_rows(run / "ablations.jsonl")) == 6
    ctx = json.loads((run / "context.json").read_text())
    assert ctx["shape"] == [16, 16] and ctx["member"] == 1


def test_cli_bad_input(tmp_path, capsys):
    imgs = _write_pngs(tmp_path, 1)
    assert main(["sae", str(tmp_path), *imgs, "--out", str(tmp_path / "x")]) == 2
    assert "not a saved INR" in capsys.readouterr().err
    sigs = tiny_signals(1, 16)
    stack, _, _ = fit_single(sigs, NetConfig(width=8, depth=2), TrainConfig(steps=2, device="cpu"), progress=False, with_lpips=False)
    save_stack(stack, tmp_path / "inr", {"regime": "single", "members": ["img0@0"]})
    for args, msg in ((["--member", "3"], "outside"), (["--member", "nope"], "not one of"), (["--layers", "5"], "outside 0..1"),
                      (["--sae.k", "40", "--sae.n", "8"], "exceeds")):
        assert main(["sae", str(tmp_path / "inr"), *imgs, "--out", str(tmp_path / "y"), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("inrlens: error:") and msg in err[0], err
        assert not (tmp_path / "y").exists()
    assert main(["ablate", str(tmp_path / "inr")]) == 2
    assert "not an SAE run folder" in capsys.readouterr().err
