"""Data loading conventions and CLI smoke runs of fit / cohort / transfer at 16 px."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import shared_dir
from inrlens.cli import main
from inrlens.config import DataConfig
from inrlens.data import ImageError, grid, load_image, load_images, split
from inrlens.data.samples import load_sample


def test_grid_convention():
    g = grid(3, 5)
    assert g.shape == (15, 2)
    # row-major: pixel (r, c) at index r*W + c; x from columns, y from rows, inclusive ends
    assert torch.equal(g[0], torch.tensor([-1.0, -1.0])) and torch.equal(g[4], torch.tensor([1.0, -1.0]))
    assert torch.equal(g[5], torch.tensor([-1.0, 0.0])) and torch.equal(g[14], torch.tensor([1.0, 1.0]))


def test_load_modes(tmp_path):
    rgb = (np.arange(48).reshape(4, 4, 3) * 5).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    s = load_image(tmp_path / "a.png")
    assert s.pixels.shape == (4, 4, 3)
    torch.testing.assert_close(s.pixels, torch.from_numpy(rgb / 255.0 * 2 - 1).float())
    g16 = (np.arange(16).reshape(4, 4) * 4000).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "b.png")
    s16 = load_image(tmp_path / "b.png")
    torch.testing.assert_close(s16.pixels[..., 0], torch.from_numpy(g16 / 65535.0 * 2 - 1).float())
    rgba = np.concatenate([rgb, np.full((4, 4, 1), 128, np.uint8)], 2)
    Image.fromarray(rgba).save(tmp_path / "c.png")
    with pytest.warns(UserWarning, match="alpha"):
        sa = load_image(tmp_path / "c.png")
    torch.testing.assert_close(sa.pixels, s.pixels)
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(tmp_path / "d.png")
    assert load_image(tmp_path / "d.png").channels == 3


def test_mixed_gray_rgb_promoted(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((4, 4), 255, np.uint8)).save(tmp_path / "b.png")
    sigs = load_images(tmp_path)
    assert [s.channels for s in sigs] == [3, 3] and sigs[1].pixels.min() == 1.0


def test_errors_name_the_file(tmp_path):
    (tmp_path / "z.png").write_bytes(b"")
    with pytest.raises(ImageError, match="z.png.*empty"):
        load_image(tmp_path / "z.png")
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "t.png").write_bytes(b"\x89PNG\r\n\x1a\nxxxx")
    with pytest.raises(ImageError, match="t.png.*not a readable image"):
        load_image(tmp_path / "t.png")


def test_split_is_seeded_and_disjoint():
    sigs = load_sample("faces", DataConfig(size=8))[:30]
    c1, t1 = split(sigs, 10, 5, seed=1)
    c2, t2 = split(sigs, 10, 5, seed=1)
    assert [s.name for s in c1] == [s.name for s in c2] and len(t1) == 5
    assert not {s.name for s in c1} & {s.name for s in t1}
    with pytest.raises(ValueError, match="only 30"):
        split(sigs, 31, 0)


@pytest.mark.parametrize("name", ["photos", "faces", "mri"])
def test_builtin_samples_are_real_images(name):
    sigs = load_sample(name, DataConfig(size=32))
    assert len(sigs) >= 15
    px = torch.stack([s.pixels for s in sigs[:10]])
    assert px.min() >= -1 and px.max() <= 1 and px.std() > 0.1


def test_shared_kodak_mixed_orientation():
    d = shared_dir("kodak")
    sigs = load_images([d / "kodim01.png", d / "kodim04.png"], DataConfig(size=48))
    assert {s.shape for s in sigs} == {(32, 48), (48, 32)}


def test_cli_fit_cohort_transfer(tmp_path, capsys):
    common = ["--data.size", "16", "--net.width", "16"]
    argv = ["fit", "sample:faces", "--limit", "2", "--out", str(tmp_path / "f"), "--train.steps", "5", "--seeds", "0", "1", *common]
    assert main(argv) == 0
    rows = [json.loads(x) for x in (tmp_path / "f" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    assert main(["cohort", "sample:faces", "--n", "3", "--out", str(tmp_path / "c"), "--train.steps", "5", *common]) == 0
    assert (tmp_path / "c" / "model.safetensors").exists()
    argv = ["transfer", str(tmp_path / "c"), "sample:faces", "--limit", "2", "--out", str(tmp_path / "t"),
            "--train.steps", "4", "--data.size", "16", "--freeze", "none", "0", "4", "random", "--no-lpips"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "k=4" in out and "random" in out
    rows = [json.loads(x) for x in (tmp_path / "t" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and len({r["key"] for r in rows}) == 8
    # rerun with --resume: nothing new is written
    assert main(argv + ["--resume"]) == 0
    assert len((tmp_path / "t" / "results.jsonl").read_text().splitlines()) == 8
    # a different config in the same folder is refused, and the results survive
    assert main([*argv[:-1], "--train.steps", "5", "--no-lpips"]) == 2
    assert "different run" in capsys.readouterr().err
    assert len((tmp_path / "t" / "results.jsonl").read_text().splitlines()) == 8


def test_cli_bad_input_exits_2(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "nope.png"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.png" in err[0]
    assert main(["transfer", str(tmp_path), "sample:faces", "--out", str(tmp_path / "o2")]) == 2


def test_cli_parse_errors_are_one_line(capsys):
    assert main(["fit", "sample:faces", "--net.width", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("inrlens: error:") and "width" in err[0]
    assert main(["fit", "sample:faces", "--no-such-flag", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--no-such-flag" in err[0]
