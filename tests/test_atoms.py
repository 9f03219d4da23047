"""Atom maps and single-atom ablations against naive references; `inrlens sae | atoms | ablate` smoke runs."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from conftest import tiny_signals
from inrlens.cli import main
from inrlens.config import NetConfig, TrainConfig
from inrlens.data import grid
from inrlens.fit import fit_single
from inrlens.probes.atoms import ablate, ablated_acts, atom_maps, load_stats, load_tensors, rank_atoms
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
    sweep = ["--sweep-n", "16", "32", "--sweep-k", "2", "40", "--layers", "1", "2"]
    assert main(["sae", str(inr), *imgs, "--member", "img1", *sweep, *common]) == 0
    rows = read_rows(run / "results.jsonl")  # k = 40 > n is skipped with a note
    assert len(rows) == 4 and {(r["layer"], r["n"], r["k"]) for r in rows} == {(l, n, 2) for l in (1, 2) for n in (16, 32)}
    assert all(r["image"] == "img1" and r["member"] == 1 and r["condition"] == "single-siren" for r in rows)
    assert all(0 <= r["alive_pct"] <= 100 and r["r2"] <= 1 for r in rows)
    assert (run / "figures" / "sweep.png").exists()
    # resume skips finished (layer, n, k)
    assert main(["sae", str(inr), *imgs, "--member", "img1", *sweep, *common, "--resume"]) == 0
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


# ------------------------------------------------------------------------------------ the decomposition library
def _strip(row):
    return {k: v for k, v in row.items() if k not in ("seconds", "runtime")}  # wall time and host details differ per call


def test_library_matches_cli_and_naive_reference(tmp_path):
    """decompose / atom_maps_for / ablate_atoms give the CLI's rows and tensors, and those equal a direct
    computation (train_sae on layer_acts, dense codes, h − z_j d_j by hand)."""
    from inrlens.config import DataConfig
    from inrlens.data import resolve
    from inrlens.probes.decompose import MemberContext, ablate_atoms, atom_maps_for, decompose, load_member
    from inrlens.probes.sae import diagnostics, load_sae
    from inrlens.store import load_stack

    imgs = _write_pngs(tmp_path)
    assert main(["fit", *imgs, "--out", str(tmp_path / "fit"), "--net.width", "16", "--net.depth", "3",
                 "--train.steps", "20", "--no-lpips", "--train.device", "cpu"]) == 0
    inr = tmp_path / "fit" / "models" / "16x16"
    cli, lib = tmp_path / "cli", tmp_path / "lib"
    assert main(["sae", str(inr), *imgs, "--member", "img1", "--layers", "1", "2", "--sae.n", "16", "--sae.k", "2",
                 "--sae.steps", "30", "--sae.batch", "128", "--device", "cpu", "--out", str(cli)]) == 0
    assert main(["atoms", str(cli), "--top", "4", "--device", "cpu"]) == 0
    assert main(["ablate", str(cli), "--layers", "2", "--top", "3", "--device", "cpu"]) == 0

    cfg = SAEConfig(n=16, k=2, steps=30, batch=128)
    ctx = load_member(inr, imgs, "img1", DataConfig(), "cpu")
    rows = decompose(ctx, (1, 2), cfg, [(16, 2)], lib, progress=False)
    maps = atom_maps_for(lib, 4, (), "cpu")
    abl = ablate_atoms(lib, (2,), 3, "cpu")

    # same rows (same config hash and keys: out is not part of the config) and the same tensors as the CLI
    assert [_strip(r) for r in rows] == [_strip(r) for r in read_rows(cli / "results.jsonl")]
    cli_abl = read_rows(cli / "ablations.jsonl")
    assert [r["figure"] for r in cli_abl] == [str(cli / "saes" / "L2_n16_k2" / "ablation.png")] * 3
    assert [dict(r, figure=None) for r in abl.rows] == [dict(r, figure=None) for r in cli_abl]
    assert json.loads((lib / "context.json").read_text()) == json.loads((cli / "context.json").read_text()) == ctx.record
    for rel in ("L1_n16_k2/sae.safetensors", "L2_n16_k2/sae.safetensors", "L1_n16_k2/stats.safetensors", "L1_n16_k2/atoms.safetensors",
                "L2_n16_k2/atoms.safetensors", "L2_n16_k2/ablation.safetensors"):
        a, b = load_tensors(cli / "saes" / rel), load_tensors(lib / "saes" / rel)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), rel

    # the member: independent reference from the checkpoint and the image file
    stack, _ = load_stack(inr)
    coords = grid(16, 16)
    target = resolve(imgs[1])[0].targets()
    assert (ctx.member, ctx.image, ctx.shape, ctx.condition) == (1, "img1", (16, 16), "single-siren")
    # the recorded image loading keeps the fields SAE run keys were fixed with (a knob added later, at its
    # default, leaves the run's config hash and so resuming an older run folder unchanged)
    assert ctx.record["data"] == {"size": None, "square": False, "channels": "auto", "max_pixels": 4096 * 4096, "on_bad_file": "error"}
    assert torch.equal(ctx.coords, coords) and torch.equal(ctx.target, target)
    ref_acts = layer_acts(stack, coords, 1)
    assert len(ctx.acts) == 3 and all(torch.equal(a, b) for a, b in zip(ctx.acts, ref_acts))
    with torch.no_grad():
        torch.testing.assert_close(ctx.f, stack(coords)[1], atol=1e-6, rtol=1e-5)
    back = MemberContext.from_run(cli, "cpu")
    assert back.record == ctx.record and all(torch.equal(a, b) for a, b in zip(back.acts, ctx.acts))

    # SAE at layer 2: trained directly on h_2 gives the saved weights and the row's diagnostics
    h = ref_acts[2]
    ref, _ = train_sae(h, cfg, progress=False)
    saved, meta = load_sae(lib / "saes" / "L2_n16_k2")
    assert torch.equal(saved.W_dec, ref.W_dec) and torch.equal(saved.W_enc, ref.W_enc)
    # identities: the INR checkpoint's recorded digest; the image's = sha256 of dtype|shape|bytes of its (H, W, C) pixels
    pix = np.ascontiguousarray(target.reshape(16, 16, -1).numpy())
    img_digest = hashlib.sha256(f"<f4|{'x'.join(map(str, pix.shape))}|".encode() + pix.tobytes()).hexdigest()[:16]
    assert meta == {"layer": 2, "member": 1, "image": "img1", "inr": str(inr.resolve()), "condition": "single-siren", "shape": [16, 16],
                    "inr_sha256": json.loads((inr / "cfg.json").read_text())["model_sha256"], "image_digest": img_digest}
    diag, _, _ = diagnostics(stack, ref, 2, 1, coords, target, h=h)
    row = next(r for r in rows if r["layer"] == 2)
    assert {k: row[k] for k in diag} == diag and row["folder"] == "saes/L2_n16_k2"

    # atom maps: top 4 by the grid mean of dense z (stable on ties), maps = columns of z on the grid
    z = ref.codes(h).dense(16)
    top = sorted(range(16), key=lambda j: (-float(z[:, j].double().mean()), j))[:4]
    m2 = next(m for m in maps if m.layer == 2)
    assert m2.atoms.tolist() == top and m2.condition == "single-siren"
    torch.testing.assert_close(m2.maps, z[:, top].T.reshape(4, 16, 16))

    # ablations: h' = h − z_j d_j by hand, PSNR drop against the image
    a2 = abl.per_sae[0]
    assert len(abl.per_sae) == 1 and a2.files.layer == 2 and a2.atoms == top[:3]
    f = run_from(stack, h, 2, 1)
    for i, j in enumerate(top[:3]):
        f2 = run_from(stack, h - z[:, j : j + 1] * ref.W_dec[j], 2, 1)
        assert float(a2.psnr_drop[i]) == pytest.approx(psnr_pm1(f, target) - psnr_pm1(f2, target), abs=1e-4)
        torch.testing.assert_close(a2.err_maps[i], (((f2 + 1) / 2).clamp(0, 1) - ((f + 1) / 2).clamp(0, 1)).abs().mean(1).reshape(16, 16))

    # rerunning the library is resumable exactly like the CLI: nothing retrained, no duplicate rows
    assert decompose(ctx, (1, 2), cfg, [(16, 2)], lib, resume=True, progress=False) == []
    ablate_atoms(lib, (2,), 3, "cpu")
    assert len(read_rows(lib / "results.jsonl")) == 2 and len(read_rows(lib / "ablations.jsonl")) == 3


def test_sae_run_paths_are_the_files_the_cli_writes(tmp_path):
    """Every file of a CLI run is named by SaeRun / SaeFiles (and nothing SaeRun names for it is missing)."""
    from inrlens.probes.decompose import SaeRun, health_figure, sae_stats_figure

    imgs = _write_pngs(tmp_path, 1)
    assert main(["fit", *imgs, "--out", str(tmp_path / "fit"), "--net.width", "8", "--net.depth", "2",
                 "--train.steps", "5", "--no-lpips", "--train.device", "cpu"]) == 0
    out = tmp_path / "run"
    assert main(["sae", str(tmp_path / "fit" / "models" / "16x16"), *imgs, "--sweep-n", "8", "16", "--sweep-k", "2", "--sae.steps", "5",
                 "--sae.batch", "64", "--device", "cpu", "--out", str(out)]) == 0
    assert main(["atoms", str(out), "--top", "2", "--device", "cpu"]) == 0
    assert main(["ablate", str(out), "--layers", "1", "--top", "2", "--device", "cpu"]) == 0
    run = SaeRun(out)
    assert run.root == out and SaeRun(str(out)) == run
    saes = run.saes()
    assert [(s.layer, s.n, s.k) for s in saes] == [(0, 8, 2), (0, 16, 2), (1, 8, 2), (1, 16, 2)]
    assert run.saes((1,)) == saes[2:] and run.sae(1, 8, 2) == saes[2] and saes[2].path == out / "saes" / "L1_n8_k2"
    named = {run.context, run.results, run.ablations, run.sweep_figure, out / "run.json",
             health_figure(run.figures, 0), health_figure(run.figures, 1), sae_stats_figure(run.figures)}
    for s in saes:
        named |= {s.cfg, s.weights, s.stats, s.atoms, s.semantics, s.steer, s.gallery}
        if s.layer == 1:
            named |= {s.ablation, s.ablation_figure}
    assert {p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")} == named  # dot files: the store's run lock
    assert [r["folder"] for r in run.read_results()] == [str(s.path.relative_to(out)) for s in saes]
    assert run.read_results((0,)) == run.read_results()[:2] and len(run.read_ablations()) == 4
    assert SaeRun(tmp_path / "nothing").saes() == [] and SaeRun(tmp_path / "nothing").read_results() == []


def test_wrong_image_for_member_is_refused(tmp_path, capsys):
    from inrlens.probes.decompose import MemberContext, load_member

    imgs = _write_pngs(tmp_path, 2)  # img0, img1
    stack, _, _ = fit_single(tiny_signals(1, 16), NetConfig(width=8, depth=2), TrainConfig(steps=2, device="cpu"), progress=False,
                             with_lpips=False)
    save_stack(stack, tmp_path / "inr", {"regime": "single", "members": ["img0@0"]})
    with pytest.raises(ValueError, match="image 'img0' of member 0 is not among the given images"):
        load_member(tmp_path / "inr", [imgs[1]], 0)  # the only image given, but not the member's
    out = tmp_path / "y"
    assert main(["sae", str(tmp_path / "inr"), imgs[1], "--sae.n", "8", "--sae.k", "2", "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("inrlens: error:") and "'img0'" in err[0] and "1 found: img1" in err[0], err
    assert not out.exists()
    assert load_member(tmp_path / "inr", imgs, 0).image == "img0"  # picked by name among several
    # a checkpoint that records no member names: the one image given is used, several are refused
    save_stack(stack, tmp_path / "anon", {"regime": "single"})
    assert load_member(tmp_path / "anon", [imgs[1]], 0).image == "img1"
    with pytest.raises(ValueError, match="records no image name and 2 images were given"):
        load_member(tmp_path / "anon", imgs, 0)
    # a run folder whose context names another image than the checkpoint's member is refused too
    assert main(["sae", str(tmp_path / "inr"), *imgs, "--sae.n", "8", "--sae.k", "2", "--sae.steps", "2", "--layers", "0",
                 "--out", str(out), "--device", "cpu"]) == 0
    ctx = json.loads((out / "context.json").read_text())
    (out / "context.json").write_text(json.dumps(dict(ctx, image="img1")))
    with pytest.raises(ValueError, match="is not the image 'img0' of member 0"):
        MemberContext.from_run(out, "cpu")
