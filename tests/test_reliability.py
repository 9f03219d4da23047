"""Reliability: bad inputs, run-folder conflicts, divergence, determinism, crash-safe storage.

Every bad input is checked three ways: the library raises the documented error type with a message that names
the file, the CLI prints exactly one line ``inrlens: error: …`` and exits 2, and the bytes of a results file
written before the failing call are unchanged afterwards.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_signals
from inrlens.cli import main
from inrlens.config import DataConfig, NetConfig, TrainConfig
from inrlens.data import ImageError, load_image, load_images, split
from inrlens.fit import _groups_for, fit_cohort, fit_single, fit_transfer, train
from inrlens.nets import Stack, cohort_stack
from inrlens.store import RunConflict, append_row, checkpoint_ready, done_keys, iter_rows, load_stack, prepare_run, save_stack

SIREN = NetConfig(backbone="siren", width=16, depth=3)
FFMLP = NetConfig(backbone="ffmlp", width=16, depth=3, ff_features=8, ff_sigma=2.0)
QUIET = dict(progress=False, with_lpips=False)
TINY = ["--data.size", "16", "--net.width", "16", "--net.depth", "3", "--no-lpips"]


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under folder (the 'nothing already written is changed' check)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def save(arr: np.ndarray, path: Path, **kw) -> Path:
    Image.fromarray(arr, **kw).save(path)
    return path


def rgb(h: int = 6, w: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.fixture
def prior_run(tmp_path) -> Path:
    """A finished single-fit run (2 images × 1 seed) whose bytes must survive every later failing call."""
    folder = tmp_path / "prior"
    assert main(["fit", "sample:faces", "--limit", "2", "--out", str(folder), "--train.steps", "3", *TINY]) == 0
    return folder


def cli_fails(capsys, argv: list[str], *needles: str) -> str:
    """Run the CLI, expect exit 2 and exactly one stderr line containing every needle; return that line."""
    capsys.readouterr()
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("inrlens: error:")]
    assert len(err) == 1, err
    for n in needles:
        assert n in err[0], (n, err[0])
    return err[0]


# --------------------------------------------------------------------------------------------- bad inputs
def test_bad_files_raise_image_error_naming_the_file(tmp_path):
    cases = {}
    cases["zero.png"] = b""
    good = io.BytesIO()
    Image.fromarray(rgb(30, 30)).save(good, "PNG")
    cases["truncated.png"] = good.getvalue()[: len(good.getvalue()) // 2]
    cases["notes.png"] = b"these are my notes, not an image\n"
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    save(rgb(1, 1), tmp_path / "one.png")
    save(rgb(1, 40), tmp_path / "line.png")
    save(rgb(40, 30), tmp_path / "big.png")
    expect = {"zero.png": "empty file", "truncated.png": "not a readable image", "notes.png": "not a readable image",
              "one.png": "1x1 px", "line.png": "40x1 px", "missing.png": "no such file", "big.png": "limit of 1000 pixels"}
    for name, msg in expect.items():
        with pytest.raises(ImageError) as ei:
            load_image(tmp_path / name, DataConfig(max_pixels=1000))
        text = str(ei.value)
        assert str(tmp_path / name) in text and msg in text and "\n" not in text, text
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


def test_sixteen_bit_and_palette_images_convert_exactly(tmp_path):
    # 16-bit gray PNG, including a *dark* one (all values < 256) that must not be mistaken for 8-bit
    for name, g16 in {"g16": np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000,
                      "dark16": np.arange(20, dtype=np.uint16).reshape(4, 5) * 7}.items():
        save(g16, tmp_path / f"{name}.png")
        s = load_image(tmp_path / f"{name}.png")
        assert s.channels == 1
        np.testing.assert_allclose(s.pixels[..., 0].numpy(), g16 / 65535.0 * 2 - 1, atol=1e-6)
    # 16-bit PGM (maxval 65535 and a 12-bit maxval, which Pillow rescales to 16 bits)
    g = (np.arange(20).reshape(4, 5) * 10).astype(">u2")
    (tmp_path / "p16.pgm").write_bytes(b"P5 5 4 65535\n" + g.tobytes())
    np.testing.assert_allclose(load_image(tmp_path / "p16.pgm").pixels[..., 0].numpy(), g / 65535.0 * 2 - 1, atol=1e-6)
    (tmp_path / "p12.pgm").write_bytes(b"P5 5 4 4095\n" + g.tobytes())
    np.testing.assert_allclose(load_image(tmp_path / "p12.pgm").pixels[..., 0].numpy(), g / 4095.0 * 2 - 1, atol=2e-5)
    # 16-bit RGB PNG written by hand (Pillow decodes it at 8-bit precision: error below one 8-bit step)
    rgb16 = (np.random.default_rng(1).integers(0, 65536, size=(4, 5, 3))).astype(np.uint16)
    raw = b"".join(b"\x00" + rgb16[r].astype(">u2").tobytes() for r in range(4))

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 5, 4, 16, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw))
           + chunk(b"IEND", b""))
    (tmp_path / "rgb16.png").write_bytes(png)
    s = load_image(tmp_path / "rgb16.png")
    assert s.channels == 3
    assert np.abs((s.pixels.numpy() + 1) / 2 - rgb16 / 65535.0).max() <= 1.0 / 255.0
    # palette image: exactly its palette colours; palette with transparency: RGB, alpha dropped with a warning
    pal_rgb = np.array([[0, 0, 0], [255, 0, 0], [0, 128, 255]], np.uint8)
    idx = np.array([[0, 1, 2, 1], [2, 2, 0, 1], [1, 0, 0, 2]], np.uint8)
    p = Image.fromarray(idx, mode="P")
    p.putpalette(pal_rgb.reshape(-1).tolist())
    p.save(tmp_path / "pal.png")
    np.testing.assert_allclose(load_image(tmp_path / "pal.png").pixels.numpy(), pal_rgb[idx] / 255.0 * 2 - 1, atol=1e-6)
    p.save(tmp_path / "palt.png", transparency=0)
    with pytest.warns(UserWarning, match="palt.png: alpha channel dropped"):
        st = load_image(tmp_path / "palt.png")
    np.testing.assert_allclose(st.pixels.numpy(), pal_rgb[idx] / 255.0 * 2 - 1, atol=1e-6)
    # RGBA and LA: alpha dropped, warned, colours kept
    a = rgb(4, 4)
    save(np.concatenate([a, np.full((4, 4, 1), 7, np.uint8)], 2), tmp_path / "rgba.png")
    with pytest.warns(UserWarning, match="alpha"):
        np.testing.assert_allclose(load_image(tmp_path / "rgba.png").pixels.numpy(), a / 255.0 * 2 - 1, atol=1e-6)
    Image.new("LA", (3, 3), (200, 10)).save(tmp_path / "la.png")  # (images need sides of at least 3 px)
    with pytest.warns(UserWarning, match="alpha"):
        sl = load_image(tmp_path / "la.png")
    assert sl.channels == 1 and torch.allclose(sl.pixels, torch.full((3, 3, 1), 200 / 255.0 * 2 - 1))
    # 1-bit
    bw = np.array([[True, False, True], [False, True, False], [False, False, True]])
    Image.fromarray(bw).save(tmp_path / "bw.png")
    np.testing.assert_array_equal(load_image(tmp_path / "bw.png").pixels[..., 0].numpy(), np.where(bw, 1.0, -1.0))


def test_folder_with_a_non_image_error_or_skip(tmp_path, capsys, prior_run):
    d = tmp_path / "imgs"
    d.mkdir()
    save(rgb(8, 8, 1), d / "a.png")
    save(rgb(8, 8, 2), d / "b.png")
    (d / "readme.txt").write_text("not an image")
    (d / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # a damaged PNG among good ones
    with pytest.raises(ImageError, match="c.png: not a readable image"):
        load_images(d)
    with pytest.warns(UserWarning) as rec:
        sigs = load_images(d, DataConfig(on_bad_file="skip"))
    assert [s.name for s in sigs] == ["a", "b"]
    msgs = [str(w.message) for w in rec]
    assert any("readme.txt" in m for m in msgs) and any("c.png" in m for m in msgs)
    before = digest(prior_run)
    # CLI: error (default) → one line naming the file, exit 2, prior results untouched; skip → warns and runs
    cli_fails(capsys, ["fit", str(d), "--out", str(prior_run), "--resume", *TINY], "c.png")
    assert digest(prior_run) == before
    out = tmp_path / "skip"
    with pytest.warns(UserWarning) as rec:  # (the CLI prints each as one line 'inrlens: warning: …')
        assert main(["fit", str(d), "--out", str(out), "--data.on-bad-file", "skip", "--train.steps", "2", *TINY]) == 0
    msgs = [str(w.message) for w in rec]
    assert any("c.png" in m for m in msgs) and any("readme.txt" in m for m in msgs)
    assert {r["image"] for r in iter_rows(out / "results.jsonl")} == {"a", "b"}


def test_cli_bad_inputs_one_line_exit_2_nothing_lost(tmp_path, capsys, prior_run):
    """Missing path, empty folder, zero-byte, truncated, 1×1, too large: each one line, exit 2, prior bytes kept."""
    before = digest(prior_run)
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "zero.png").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(rgb(32, 32)).save(buf, "PNG")
    (tmp_path / "trunc.png").write_bytes(buf.getvalue()[:100])
    save(rgb(1, 1), tmp_path / "dot.png")
    save(rgb(64, 64), tmp_path / "big.png")
    cases = [
        ([str(tmp_path / "missing_dir")], ["missing_dir", "no such file"]),
        ([str(empty)], ["empty", "holds no files"]),
        ([str(tmp_path / "zero.png")], ["zero.png", "empty file"]),
        ([str(tmp_path / "trunc.png")], ["trunc.png", "not a readable image"]),
        ([str(tmp_path / "dot.png")], ["dot.png", "1x1 px"]),
        ([str(tmp_path / "big.png"), "--data.max-pixels", "1024"], ["big.png", "64x64", "limit of 1024 pixels"]),
        (["sample:nope"], ["sample:nope", "unknown sample set"]),
    ]
    for args, needles in cases:
        cli_fails(capsys, ["fit", *args, "--out", str(prior_run), "--resume", "--train.steps", "3", *TINY], *needles)
        assert digest(prior_run) == before, args


def test_mixed_gray_rgb_cohort_and_too_large_cohort(tmp_path, capsys):
    d = tmp_path / "mix"
    d.mkdir()
    save(rgb(16, 16, 3), d / "c1.png")
    g = np.random.default_rng(4).integers(0, 256, size=(16, 16), dtype=np.uint8)
    save(g, d / "g1.png")
    sigs = load_images(d)
    assert [s.channels for s in sigs] == [3, 3]
    # a gray image promoted to RGB has three identical channels equal to its gray values
    gray = sigs[1].pixels
    assert torch.equal(gray[..., 0], gray[..., 1]) and torch.equal(gray[..., 0], gray[..., 2])
    np.testing.assert_allclose(gray[..., 0].numpy(), g / 255.0 * 2 - 1, atol=1e-6)
    assert main(["cohort", str(d), "--n", "2", "--out", str(tmp_path / "c"), "--train.steps", "3", *TINY[:-1]]) == 0
    assert load_stack(tmp_path / "c")[0].out_features == 3
    # cohort larger than the folder: one line naming the folder, exit 2, no run folder created
    cli_fails(capsys, ["cohort", str(d), "--n", "5", "--out", str(tmp_path / "c5"), *TINY[:-1]], "cohort of 5", "only 2", str(d))
    assert not (tmp_path / "c5").exists()
    with pytest.raises(ValueError, match="only 2 images are available in"):
        split(sigs, 3, None)


def test_freeze_depth_out_of_range(tmp_path, capsys):
    assert main(["cohort", "sample:faces", "--n", "2", "--out", str(tmp_path / "c"), "--train.steps", "2", *TINY[:-1]]) == 0
    enc, _ = load_stack(tmp_path / "c")
    with pytest.raises(ValueError, match=r"outside 0\.\.2|in 0\.\.2"):
        fit_transfer(enc, tiny_signals(1, 16, 1), 3, TrainConfig(steps=1), **QUIET)
    with pytest.raises(ValueError, match=r"0\.\.2"):
        fit_transfer(enc, tiny_signals(1, 16, 1), -1, TrainConfig(steps=1), **QUIET)
    out = tmp_path / "t"
    cli_fails(capsys, ["transfer", str(tmp_path / "c"), "sample:faces", "--limit", "1", "--out", str(out), "--freeze", "3",
                       "--data.size", "16", "--no-lpips"], "freeze depth 3", "0..2", str(tmp_path / "c"))
    assert not out.exists()


def test_sae_k_greater_than_n_is_refused(tmp_path, capsys, prior_run):
    sae = pytest.importorskip("inrlens.probes.sae")
    from inrlens.cli import COMMANDS

    cfg = sae.SAEConfig(n=32, k=64)
    with pytest.raises(ValueError, match="k=64 exceeds the dictionary size n=32"):
        cfg.validate()
    with pytest.raises(ValueError, match="k=64 exceeds"):
        sae.TopKSAE(16, cfg)
    if "sae" not in COMMANDS:
        pytest.skip("inrlens sae is not registered yet")
    out = tmp_path / "sae"
    cli_fails(capsys, ["sae", str(prior_run / "models" / "16x16"), "sample:faces", "--sae.n", "32", "--sae.k", "64",
                       "--out", str(out), "--device", "cpu"], "k=64", "n=32")
    assert not (out / "results.jsonl").exists()


def test_output_folder_of_a_different_run_is_refused(tmp_path, capsys, prior_run):
    before = digest(prior_run)
    argv = ["fit", "sample:faces", "--limit", "2", "--out", str(prior_run), *TINY]
    # a different config (5 steps instead of 3): refused with and without --resume, nothing changed
    cli_fails(capsys, [*argv, "--train.steps", "5"], "different run", "--resume", "--overwrite")
    cli_fails(capsys, [*argv, "--train.steps", "5", "--resume"], "different run", "--overwrite")
    assert digest(prior_run) == before
    # same config without --resume or with it: nothing to redo, results untouched
    assert main([*argv, "--train.steps", "3", "--resume"]) == 0
    assert digest(prior_run) == before
    # --overwrite: the new config is recorded; the old config's rows are moved aside, byte for byte (never deleted),
    # so that they do not mix with the new ones (docs/run-folder.md, "Identities")
    old = (prior_run / "results.jsonl").read_bytes()
    assert main([*argv, "--train.steps", "5", "--overwrite"]) == 0
    new = (prior_run / "results.jsonl").read_bytes()
    moved = sorted(prior_run.glob("results.jsonl.replaced-*"))
    assert len(moved) == 1 and moved[0].read_bytes() == old and len(old.splitlines()) == 2
    assert len(new.splitlines()) == 2 and all(json.loads(ln)["train"]["steps"] == 5 for ln in new.splitlines())
    assert json.loads((prior_run / "run.json").read_text())["train"]["steps"] == 5
    # a file where the folder should be
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunConflict, match="not a folder"):
        prepare_run(tmp_path / "afile", {"a": 1})
    # an unreadable run.json counts as a different run
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "run.json").write_text("{torn")
    with pytest.raises(RunConflict, match="different run"):
        prepare_run(bad, {"a": 1}, resume=True)
    assert (bad / "run.json").read_text() == "{torn"


# --------------------------------------------------------------------------------------------- storage
def test_torn_jsonl_tail_is_ignored_and_next_append_starts_fresh(tmp_path):
    f = tmp_path / "r.jsonl"
    append_row(f, {"key": "a", "v": 1.5})
    append_row(f, {"key": "b", "v": float("nan")})  # NaN is stored as null: every line is strict JSON
    whole = f.read_bytes()
    line_c = json.dumps({"key": "c", "v": 3}, sort_keys=True).encode()
    for cut in range(1, len(line_c) + 1):  # every prefix of a line, including the whole line without its newline
        f.write_bytes(whole + line_c[:cut])
        assert [r["key"] for r in iter_rows(f)] == ["a", "b"]
        assert done_keys(f) == {"a", "b"}
    for cut in (7, len(line_c)):  # a torn prefix, and a whole row that lost only its newline: both stay ignored
        f.write_bytes(whole + line_c[:cut])
        append_row(f, {"key": "d"})
        rows = list(iter_rows(f))
        assert [r["key"] for r in rows] == ["a", "b", "d"] and rows[1]["v"] is None
        assert f.read_bytes().startswith(whole + line_c[:cut]) and f.read_bytes().endswith(b'{"key": "d"}\n')


def test_checkpoint_pair_is_checked(tmp_path):
    a = Stack.init(SIREN, 3, [0, 1])
    b = Stack.init(SIREN, 3, [5, 6])
    save_stack(a, tmp_path / "a")
    save_stack(b, tmp_path / "b")
    assert checkpoint_ready(tmp_path / "a")
    loaded, _ = load_stack(tmp_path / "a")
    assert all(torch.equal(x, y) for x, y in zip(loaded.parameters(), a.parameters()))
    assert not [p.name for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]  # no temp files left
    # a writer killed between the two renames: new model, old cfg → detected, never mixed
    (tmp_path / "a" / "model.safetensors").write_bytes((tmp_path / "b" / "model.safetensors").read_bytes())
    assert not checkpoint_ready(tmp_path / "a")
    with pytest.raises(ValueError, match="incomplete checkpoint"):
        load_stack(tmp_path / "a")
    # damaged files: one clear error naming the file
    (tmp_path / "b" / "model.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(ValueError, match="model.safetensors"):
        load_stack(tmp_path / "b")
    (tmp_path / "b" / "cfg.json").write_text("{")
    with pytest.raises(ValueError, match=r"cfg.json: not valid JSON"):
        load_stack(tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="not a saved INR"):
        load_stack(tmp_path)


# --------------------------------------------------------------------------------------------- divergence
def test_huge_lr_siren_diverges_and_is_recorded(tmp_path, capsys):
    """SIREN at lr 1e12: every member's loss turns non-finite within a few steps; rows say 'diverged'."""
    out = tmp_path / "div"
    assert main(["fit", "sample:faces", "--limit", "2", "--seeds", "0", "1", "--out", str(out), "--train.steps", "20",
                 "--train.lr", "1e12", *TINY]) == 0
    rows = list(iter_rows(out / "results.jsonl"))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"diverged"}
    assert all(r["psnr"] is None and r["ssim"] is None for r in rows)  # NaN → null, never a number
    assert "diverged" in capsys.readouterr().out


def test_divergence_in_the_last_update_is_flagged():
    """A loss that is finite at every step, then an update that overflows the weights: still 'diverged'."""
    sigs = tiny_signals(2, 16)
    _, fr, res = fit_single(sigs, SIREN, TrainConfig(steps=1, lr=1e39), **QUIET)
    assert bool(torch.isfinite(fr.curve).all())  # the only recorded loss was finite
    assert fr.diverged.tolist() == [True, True] and all(r.diverged and math.isnan(r.psnr) for r in res)


@pytest.mark.parametrize("cfg", [SIREN, FFMLP], ids=["siren", "ffmlp"])
def test_diverged_member_does_not_touch_the_rest_of_the_stack(cfg):
    """Member 2 blows up at step 0 (weights ×1e30 → loss inf); members 0, 1, 3 train exactly as without it."""
    sigs = tiny_signals(4, 16)
    tc = TrainConfig(steps=15, log_every=5, lr=1e-3)
    full = Stack.init(cfg, 3, [0, 1, 2, 3])
    with torch.no_grad():
        full.weights[-1][2] *= 1e30
    rest = full.select([0, 1, 3])
    fr = train(full, _groups_for(sigs, torch.device("cpu")), tc, progress=False)
    fr_rest = train(rest, _groups_for([sigs[i] for i in (0, 1, 3)], torch.device("cpu")), tc, progress=False)
    assert fr.diverged.tolist() == [False, False, True, False] and not fr_rest.diverged.any()
    assert fr.steps_run == 15
    for ell in range(cfg.depth + 1):
        torch.testing.assert_close(full.weights[ell][[0, 1, 3]], rest.weights[ell], rtol=0, atol=1e-6)
    torch.testing.assert_close(fr.curve[:, [0, 1, 3]], fr_rest.curve, rtol=0, atol=1e-4)


def test_diverged_cohort_head_leaves_the_shared_encoder_training():
    """A cohort head whose loss is inf is masked: the shared encoder trains on the other heads only."""
    sigs = tiny_signals(3, 16)
    tc = TrainConfig(steps=10, log_every=5, lr=1e-4)
    st = cohort_stack(SIREN, 3, 3, seed=0)
    with torch.no_grad():
        st.weights[-1][1] *= 1e30
    ref = st.select([0, 2])
    fr = train(st, _groups_for(sigs, torch.device("cpu")), tc, progress=False)
    fr_ref = train(ref, _groups_for([sigs[0], sigs[2]], torch.device("cpu")), tc, progress=False)
    assert fr.diverged.tolist() == [False, True, False]
    for ell in range(SIREN.depth):
        assert torch.isfinite(st.weights[ell]).all()
        torch.testing.assert_close(st.weights[ell], ref.weights[ell], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fr.curve[:, [0, 2]], fr_ref.curve, rtol=0, atol=1e-3)


# --------------------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("cfg", [SIREN, FFMLP], ids=["siren", "ffmlp"])
def test_bit_identical_across_runs_and_chunkings(cfg):
    """Same config + seed: identical bits on CPU across two runs, for a stack of 1 vs a stack of 8, and for
    8 members trained in chunks of 3."""
    sigs = tiny_signals(8, 16)
    tc = TrainConfig(steps=12, log_every=4)
    st8, fr8, res8 = fit_single(sigs, cfg, tc, seeds=[0], **QUIET)
    st8b, fr8b, res8b = fit_single(sigs, cfg, tc, seeds=[0], **QUIET)
    assert all(torch.equal(a, b) for a, b in zip(st8.parameters(), st8b.parameters()))
    assert torch.equal(fr8.curve, fr8b.curve) and [r.psnr for r in res8] == [r.psnr for r in res8b]
    st3, fr3, res3 = fit_single(sigs, cfg, tc, seeds=[0], chunk=3, **QUIET)  # stacks of 3, 3, 2 inside one call
    assert torch.equal(fr8.curve, fr3.curve) and [r.psnr for r in res8] == [r.psnr for r in res3]
    assert all(torch.equal(a, b) for a, b in zip(st8.parameters(), st3.parameters()))
    for i in (0, 5):
        st1, fr1, res1 = fit_single([sigs[i]], cfg, tc, seeds=[0], **QUIET)
        for ell in range(cfg.depth + 1):
            assert torch.equal(st8.weights[ell][i], st1.weights[ell][0]), (i, ell)
        assert torch.equal(fr8.curve[:, i], fr1.curve[:, 0]) and res8[i].psnr == res1[0].psnr


def test_transfer_bit_identical_across_chunkings():
    sigs = tiny_signals(4, 16)
    enc, _, _ = fit_cohort(sigs[:2], SIREN, TrainConfig(steps=5), **QUIET)
    tc = TrainConfig(steps=8, log_every=4)
    for freeze in (None, 1):
        st4, fr4, res4 = fit_transfer(enc, sigs, freeze, tc, seeds=[0, 1], **QUIET)
        st1, fr1, res1 = fit_transfer(enc, [sigs[3]], freeze, tc, seeds=[1], **QUIET)
        assert torch.equal(fr4.curve[:, 7], fr1.curve[:, 0]) and res4[7].psnr == res1[0].psnr
        for ell in range(SIREN.depth + 1):
            w4 = st4.weights[ell]
            assert torch.equal(w4[min(7, w4.shape[0] - 1)], st1.weights[ell][0])


# --------------------------------------------------------------------------------------- hostile names, real run
def test_atlas_of_a_run_whose_image_and_condition_are_markup(tmp_path, capsys):
    """fit → sae → atoms → atlas on an image named '<!--<script>x.png': the page keeps its structure, the data
    block holds no '<' and parses back to the names; in headless Chromium (when installed) the page loads with
    no console error and shows the name literally."""
    import re

    from inrlens.report.atlas import build_atlas

    name = "<!--<script>x"
    img = tmp_path / f"{name}.png"
    save(rgb(16, 16, 3), img)
    fit_dir, sae_dir = tmp_path / "fit", tmp_path / "sae"
    assert main(["fit", str(img), "--out", str(fit_dir), "--net.width", "8", "--net.depth", "2", "--train.steps", "10", "--no-lpips",
                 "--train.device", "cpu"]) == 0
    assert main(["sae", str(fit_dir / "models" / "16x16"), str(img), "--out", str(sae_dir), "--condition", name, "--layers", "0",
                 "--sae.n", "16", "--sae.k", "2", "--sae.steps", "10", "--sae.batch", "256", "--device", "cpu"]) == 0
    assert main(["atoms", str(sae_dir), "--top", "4", "--device", "cpu"]) == 0
    page = build_atlas([sae_dir], tmp_path / "atlas", f"{name} atlas")
    html = page.read_text()
    assert html.count("<script") == 2 and html.count("</script>") == 2
    block = re.search(r'<script type="application/json" id="atlas-data">(.*?)</script>', html, re.S).group(1)
    assert "<" not in block and ">" not in block and "&" not in block
    data = json.loads(block)
    assert (data["title"], data["conditions"][0]["name"], data["conditions"][0]["image"]) == (f"{name} atlas", name, name)
    assert len(data["conditions"][0]["layers"][0]["atoms"]) == 4

    import shutil

    exe = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if exe is None or sync_playwright is None:
        return  # the structural checks above hold; the browser part needs chromium and playwright
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            pg = browser.new_page()
            pg.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            pg.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            pg.goto(page.as_uri())
            pg.wait_for_selector("#atom-list li")
            assert pg.inner_text("#atom-title").startswith(f"{name} · layer 0 · atom ")
            assert pg.eval_on_selector_all("#condition option", "els => els.map(e => e.textContent)") == [f"{name} ({name})"]
            assert pg.title() == f"{name} atlas"
        finally:
            browser.close()
    assert errors == []
