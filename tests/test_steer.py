"""Steering through SAE atoms (inrlens.probes.steer, `inrlens steer`, the atlas renders) against naive references."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import tiny_signals
from inrlens.cli import main
from inrlens.probes.atoms import ablate, load_stats, load_tensors
from inrlens.probes.sae import load_sae, psnr_pm1, run_from

H = W = 16


def _unit(f: torch.Tensor) -> torch.Tensor:
    return ((f + 1) / 2).clamp(0, 1)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny SIREN fit on two 16 px images, and an SAE run on member img1 with two SAEs (n = 8, 16; k = 2) at
    layers 1 and 2."""
    from PIL import Image

    tmp = tmp_path_factory.mktemp("steer")
    imgs = []
    for i, s in enumerate(tiny_signals(2, H)):
        p = tmp / f"img{i}.png"
        Image.fromarray(((s.pixels.numpy() + 1) * 127.5).round().astype(np.uint8)).save(p)
        imgs.append(str(p))
    assert main(["fit", *imgs, "--out", str(tmp / "fit"), "--net.width", "16", "--net.depth", "3", "--train.steps", "30", "--no-lpips",
                 "--train.device", "cpu"]) == 0
    out = tmp / "sae"
    assert main(["sae", str(tmp / "fit" / "models" / f"{H}x{W}"), *imgs, "--member", "img1", "--layers", "1", "2", "--sweep-n", "8", "16",
                 "--sweep-k", "2", "--sae.steps", "40", "--sae.batch", "128", "--device", "cpu", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def member(run):
    """(ctx, sae at layer 2 with n = 16, its codes, its two strongest atoms)."""
    from inrlens.probes.decompose import MemberContext

    ctx = MemberContext.from_run(run, "cpu")
    folder = run / "saes" / "L2_n16_k2"
    sae, _ = load_sae(folder)
    _, order = load_stats(folder)
    codes = sae.codes(ctx.acts[2])
    return ctx, sae, codes, [int(order[0]), int(order[1])]


def test_alpha_one_returns_the_original_exactly(member):
    from inrlens.probes.steer import steer, steered_acts

    ctx, sae, codes, (j1, j2) = member
    image, diff = steer(ctx, sae, 2, [(j1, 1.0)])
    assert image.shape == (H, W, ctx.f.shape[1]) and diff.shape == (H, W)
    assert torch.equal(image, _unit(ctx.f).reshape(H, W, -1))
    assert float(diff.abs().max()) == 0.0
    image2, diff2 = steer(ctx, sae, 2, [(j1, 1.0), (j2, 1.0)], codes)
    assert torch.equal(image2, image) and float(diff2.abs().max()) == 0.0
    assert steered_acts(sae, ctx.acts[2], codes, [(j1, 1.0)]) is ctx.acts[2]
    # ctx.f is also what running the rest of the network from the unmodified h_2 gives
    torch.testing.assert_close(run_from(ctx.stack, ctx.acts[2], 2, ctx.member), ctx.f, atol=1e-6, rtol=1e-6)


def test_alpha_zero_equals_single_atom_ablation(member):
    from inrlens.probes.steer import steer

    ctx, sae, codes, (j1, _) = member
    h = ctx.acts[2]
    ref = ablate(ctx.stack, sae, 2, ctx.member, h, codes, [j1], ctx.target, ctx.f)
    image, diff = steer(ctx, sae, 2, [(j1, 0.0)], codes)
    torch.testing.assert_close(image, _unit(ref.out).reshape(H, W, -1), atol=1e-6, rtol=0)
    torch.testing.assert_close(diff, ref.err_map.reshape(H, W), atol=1e-6, rtol=0)
    assert float(diff.max()) > 1e-4  # the strongest atom matters somewhere


def test_two_atoms_against_naive_dense_computation(member):
    from inrlens.probes.steer import steer

    ctx, sae, codes, (j1, j2) = member
    a1, a2 = 3.0, -0.5
    h = ctx.acts[2]
    z = codes.dense(sae.n)  # (P, n)
    dec = sae.W_dec.detach()
    h2 = h.clone()
    for p in range(h.shape[0]):  # h'(x) = h(x) + (α1 − 1) z_j1(x) d_j1 + (α2 − 1) z_j2(x) d_j2, one coordinate at a time
        h2[p] = h[p] + (a1 - 1) * z[p, j1] * dec[j1] + (a2 - 1) * z[p, j2] * dec[j2]
    f2 = run_from(ctx.stack, h2, 2, ctx.member)
    image, diff = steer(ctx, sae, 2, [(j1, a1), (j2, a2)])
    ref_img = _unit(f2).reshape(H, W, -1)
    ref_diff = (_unit(f2) - _unit(ctx.f)).abs().mean(1).reshape(H, W)
    torch.testing.assert_close(image, ref_img, atol=1e-5, rtol=0)
    torch.testing.assert_close(diff, ref_diff, atol=1e-5, rtol=0)
    assert float(diff.max()) > 1e-4
    # nothing changes where neither atom fires (an INR is pointwise)
    quiet = ((z[:, j1] == 0) & (z[:, j2] == 0)).reshape(H, W)
    if quiet.any():
        assert float(diff[quiet].max()) < 1e-6
    # the two-atom edit is not the sum of nothing: it differs from steering either atom alone
    alone, _ = steer(ctx, sae, 2, [(j1, a1)])
    assert float((alone - image).abs().max()) > 0


def test_linear_at_the_layer(member):
    """h' − h = (α − 1)·z_j·d_j for every α, and several atoms add."""
    from inrlens.probes.steer import steered_acts

    ctx, sae, codes, (j1, j2) = member
    h = ctx.acts[2]
    z1, z2 = codes.atom(j1), codes.atom(j2)
    d1, d2 = sae.W_dec[j1], sae.W_dec[j2]
    for a in (0.0, 0.5, 2.0, 4.0, -1.0):
        delta = steered_acts(sae, h, codes, [(j1, a)]) - h
        torch.testing.assert_close(delta, (a - 1) * z1[:, None] * d1[None, :], atol=1e-6, rtol=1e-6)
    both = steered_acts(sae, h, codes, [(j1, 2.0), (j2, 0.0)]) - h
    torch.testing.assert_close(both, z1[:, None] * d1 - z2[:, None] * d2, atol=1e-6, rtol=1e-6)


def test_bad_edits_are_one_line_errors(member):
    from inrlens.probes.steer import steer

    ctx, sae, codes, (j1, _) = member
    for edits, msg in (([], "no atom"), ([(16, 2.0)], "out of range"), ([(-1, 2.0)], "out of range"), ([(j1, 2.0), (j1, 0.0)], "twice"),
                       ([(j1, float("nan"))], "finite")):
        with pytest.raises(ValueError, match=msg):
            steer(ctx, sae, 2, edits)
    with pytest.raises(ValueError, match="outside 0..2"):
        steer(ctx, sae, 3, [(j1, 2.0)])
    from inrlens.probes.sae import SAEConfig, TopKSAE

    with pytest.raises(ValueError, match="expects width 8 but layer 2 has width 16"):
        steer(ctx, TopKSAE(8, SAEConfig(n=4, k=2)), 2, [(0, 2.0)])


def test_cli_writes_files_and_psnr(run, member, capsys):
    from PIL import Image

    from inrlens.probes.steer import steer_output

    ctx, sae, codes, (j1, j2) = member
    out = run / "steer_out"
    assert main(["steer", str(run), "--layer", "2", "--n", "16", "--atom", str(j1), "--scale", "2", "--atom", str(j2), "--scale", "0",
                 "--device", "cpu", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    stem = f"L2_n16_k2_a{j1}x2_a{j2}x0"
    rec = json.loads((out / f"{stem}.json").read_text())
    f2 = steer_output(ctx, sae, 2, [(j1, 2.0), (j2, 0.0)])
    assert rec["psnr_vs_inr"] == pytest.approx(psnr_pm1(f2, ctx.f), abs=1e-9)
    assert rec["psnr_vs_image"] == pytest.approx(psnr_pm1(f2, ctx.target), abs=1e-9)
    assert rec["edits"] == [{"atom": j1, "scale": 2.0}, {"atom": j2, "scale": 0.0}] and (rec["layer"], rec["n"], rec["k"]) == (2, 16, 2)
    assert f"{rec['psnr_vs_inr']:.2f}" in text and f"{rec['psnr_vs_image']:.2f}" in text
    img = np.asarray(Image.open(out / f"{stem}.png"))
    ref = (_unit(f2).reshape(H, W, -1).numpy() * 255 + 0.5).astype(np.uint8)
    assert img.shape == ((H, W, 3) if ref.shape[2] == 3 else (H, W)) and np.array_equal(img.reshape(ref.shape), ref)
    diff = np.asarray(Image.open(out / f"{stem}_diff.png"))
    assert diff.shape == (H, W, 3)
    fig = np.asarray(Image.open(out / f"{stem}_figure.png"))
    assert fig.shape[1] > 3 * H and fig.std() > 10
    # one scale for every atom; default folder RUN/steer
    assert main(["steer", str(run), "--layer", "1", "--n", "8", "--k", "2", "--atom", "0", "--atom", "1", "--scale", "1",
                 "--device", "cpu"]) == 0
    rec1 = json.loads((run / "steer" / "L1_n8_k2_a0x1_a1x1.json").read_text())
    assert rec1["psnr_vs_inr"] is None  # +inf (f′ = f) is written as null in strict JSON
    assert "inf" in capsys.readouterr().out


def test_cli_refuses_bad_input_with_one_line(run, tmp_path, capsys):
    out = tmp_path / "never"
    base = ["steer", str(run), "--device", "cpu", "--out", str(out)]
    cases = ((["--layer", "7", "--n", "16", "--atom", "0", "--scale", "2"], "no SAE at layer 7"),
             (["--layer", "2", "--n", "16", "--atom", "16", "--scale", "2"], "out of range"),
             (["--layer", "2", "--n", "16", "--atom", "1", "--atom", "2", "--scale", "2", "--scale", "1", "--scale", "0"],
              "2 --atom but 3 --scale"),
             (["--layer", "2", "--atom", "1", "--scale", "2"], "pick one with --n and --k"),
             (["--layer", "2", "--n", "32", "--atom", "1", "--scale", "2"], "no SAE with n=32"),
             (["--layer", "2", "--n", "16", "--atom", "1", "--scale", "2", "--atom", "1", "--scale", "0"], "twice"),
             (["--layer", "2", "--n", "16", "--scale", "2"], "no --atom"),
             (["--layer", "2", "--n", "16", "--atom", "1"], "no --scale"))
    for args, msg in cases:
        assert main([*base, *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("inrlens: error:") and msg in err[0], (args, err)
        assert not out.exists()
    # a run folder without SAEs, and a folder that is no SAE run
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "context.json").write_text((run / "context.json").read_text())
    for folder, msg in ((bare, "no SAEs"), (tmp_path, "not an SAE run folder")):
        assert main(["steer", str(folder), "--layer", "2", "--atom", "1", "--scale", "2", "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err
    assert not (bare / "steer").exists()


def test_atom_maps_for_writes_steering_renders(run, tmp_path):
    import shutil

    from inrlens.probes.decompose import MemberContext, SaeRun, atom_maps_for
    from inrlens.probes.steer import STEER_SCALES, steer
    from inrlens.report.atlas import atlas_data, collect

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    maps = atom_maps_for(copy, top=5, layers=(2,), device="cpu", steer_top=3)
    ctx = MemberContext.from_run(copy, "cpu")
    C = ctx.f.shape[1]
    assert STEER_SCALES == (0.0, 0.5, 2.0, 4.0)
    for m in maps:
        files = m.files
        t = load_tensors(files.steer)
        assert files.steer == copy / "saes" / files.name / "steer.safetensors"
        assert t["atom"].tolist() == m.atoms[:3].tolist() and t["scales"].tolist() == [0.0, 0.5, 2.0, 4.0]
        assert t["images"].shape == (3, 4, H, W, C) and t["images"].dtype == torch.float16
        assert t["diffs"].shape == (3, 4, H, W) and t["diffs"].dtype == torch.float16
        assert t["psnr_vs_inr"].shape == t["psnr_vs_image"].shape == (3, 4)
        assert torch.equal(t["original"], _unit(ctx.f).reshape(H, W, C).half())
        assert m.steer is not None and torch.equal(m.steer["images"], t["images"])
        sae, _ = load_sae(files.path)
        for i, j in enumerate(t["atom"].tolist()):
            for s, a in enumerate(STEER_SCALES):
                image, diff = steer(ctx, sae, 2, [(j, a)])
                torch.testing.assert_close(t["images"][i, s].float(), image, atol=1e-3, rtol=0)  # float16 storage
                torch.testing.assert_close(t["diffs"][i, s].float(), diff, atol=1e-3, rtol=0)
                f2 = run_from(ctx.stack, ctx.acts[2] + (a - 1) * sae.codes(ctx.acts[2]).atom(j)[:, None] * sae.W_dec[j], 2, ctx.member)
                assert float(t["psnr_vs_image"][i, s]) == pytest.approx(psnr_pm1(f2, ctx.target), abs=1e-3)
    # the atlas reads them: the first 3 atoms of each layer-2 SAE carry 4 renders, the other 2 none
    conds = collect([copy])
    data = atlas_data(conds)
    lay = next(x for x in data["conditions"][0]["layers"] if x["layer"] == 2)
    assert lay["recon"].startswith("data:image/png;base64,")
    st = [a["steer"] for a in lay["atoms"]]
    assert all(s is not None and s["alphas"] == [0.0, 0.5, 2.0, 4.0] and len(s["img"]) == len(s["diff"]) == 4 for s in st[:3])
    assert st[3:] == [None, None]
    # no scales: no file, and an older one is removed
    atom_maps_for(copy, top=5, layers=(2,), device="cpu", steer_scales=())
    assert not any(f.steer.exists() for f in SaeRun(copy).saes((2,)))
    with pytest.raises(ValueError, match="finite"):
        atom_maps_for(copy, top=5, layers=(2,), device="cpu", steer_scales=(float("inf"),))
