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


def _table(out: str, title: str) -> tuple[str, dict[str, dict[str, str]]]:
    """The printed table whose title line contains ``title`` → (title line, {first cell: {column: cell}})."""
    lines = out.splitlines()
    i = next(j for j, line in enumerate(lines) if title in line)
    cols = lines[i + 1].split()
    body = {}
    for line in lines[i + 3:]:
        cells = line.split()
        if len(cells) != len(cols):
            break
        body[cells[0]] = dict(zip(cols, cells))
    return lines[i], body


def test_transfer_table_pm_is_the_sample_std(tmp_path, capsys):
    """The transfer table's psnr_std is the sample std (ddof 1) of the rows' PSNRs, recomputed here by hand."""
    tiny = ["--data.size", "16", "--net.width", "8", "--net.depth", "2"]
    assert main(["cohort", "sample:faces", "--n", "2", "--out", str(tmp_path / "c"), "--train.steps", "3", *tiny]) == 0
    assert main(["transfer", str(tmp_path / "c"), "sample:faces", "--limit", "3", "--seeds", "0", "1", "--out", str(tmp_path / "t"),
                 "--train.steps", "6", "--data.size", "16", "--freeze", "none", "1", "random", "--no-lpips"]) == 0
    title, table = _table(capsys.readouterr().out, "transfer from")
    assert "sample std" in title
    rows = [json.loads(x) for x in (tmp_path / "t" / "results.jsonl").read_text().splitlines()]
    tags = {"none": lambda r: r["regime"] == "transfer" and r["freeze"] is None, "k=1": lambda r: r["freeze"] == 1,
            "random": lambda r: r["regime"] == "random"}
    assert set(table) == set(tags)
    for tag, pick in tags.items():
        v = [r["psnr"] for r in rows if pick(r)]
        assert len(v) == 6 and int(table[tag]["n"]) == 6
        mean = sum(v) / len(v)
        sample = (sum((x - mean) ** 2 for x in v) / (len(v) - 1)) ** 0.5
        population = (sum((x - mean) ** 2 for x in v) / len(v)) ** 0.5
        printed = float(table[tag]["psnr_std"])
        decimals = len(table[tag]["psnr_std"].split(".")[1])
        assert abs(printed - sample) <= 0.51 * 10.0 ** -decimals, (tag, printed, sample)
        if abs(sample - population) > 10.0 ** -decimals:  # distinguishable at the printed precision
            assert abs(printed - population) > 0.51 * 10.0 ** -decimals
        assert abs(float(table[tag]["psnr"]) - mean) <= 0.51 * 10.0 ** -len(table[tag]["psnr"].split(".")[1])


@pytest.mark.parametrize("train_lr,random_lr", [(None, None), (3e-4, 2e-3)])
def test_transfer_sweep_and_reproduce_resolve_the_same_lr(tmp_path, train_lr, random_lr):
    """For every (regime, backbone): the lr `inrlens transfer` records = the sweep plan's = the reproduce preset's
    sweep plan's = rules.lr_for, with default and with overridden learning rates."""
    from inrlens import rules
    from inrlens.commands.reproduce import resolve_preset
    from inrlens.config import NetConfig, TrainConfig
    from inrlens.sweep import SweepSpec, make_plan

    tiny = ["--data.size", "8", "--net.width", "8", "--net.depth", "2"]
    cli = {}
    for bb in ("siren", "ffmlp"):
        c = tmp_path / f"c-{bb}"
        assert main(["cohort", "sample:faces", "--n", "2", "--out", str(c), "--train.steps", "2", "--net.backbone", bb, *tiny]) == 0
        argv = ["transfer", str(c), "sample:faces", "--limit", "1", "--out", str(tmp_path / f"t-{bb}"), "--train.steps", "2",
                "--data.size", "8", "--freeze", "none", "0", "random", "--no-lpips"]
        argv += ["--train.lr", str(train_lr)] if train_lr is not None else []
        argv += ["--random-lr", str(random_lr)] if random_lr is not None else []
        assert main(argv) == 0
        for r in (json.loads(x) for x in (tmp_path / f"t-{bb}" / "results.jsonl").read_text().splitlines()):
            assert cli.setdefault((bb, r["regime"]), r["lr"]) == r["lr"]
    spec = SweepSpec(data=("faces=sample:faces",), backbones=("siren", "ffmlp"), depths=("none", "0", "random"), seeds=(0,),
                     n_cohort=2, n_test=1, net=NetConfig(width=8, depth=2), train=TrainConfig(steps=2, lr=train_lr),
                     random_lr=random_lr, images=DataConfig(size=8), lpips=False)
    sweep = {(f.backbone, f.regime): f.lr for f in make_plan(spec, tmp_path / "sweep").fits}
    preset = tmp_path / "p.toml"
    preset.write_text('[datasets]\nfaces = "sample:faces"\n[sweep]\nbackbones = ["siren", "ffmlp"]\ndepths = ["none", "0", "random"]\n'
                      'seeds = [0]\nn_cohort = 2\nn_test = 1\nlpips = false\nnet = { width = 8, depth = 2 }\nimages = { size = 8 }\n'
                      + (f"train = {{ steps = 2, lr = {train_lr} }}\n" if train_lr is not None else "train = { steps = 2 }\n")
                      + (f"random_lr = {random_lr}\n" if random_lr is not None else "") + "[study]\nablate_layers = [1]\n")
    repro = {(f.backbone, f.regime): f.lr for f in make_plan(resolve_preset(str(preset)).spec, tmp_path / "rsweep").fits}
    want = {(bb, reg): rules.lr_for(reg, bb, train_lr if reg == "transfer" else random_lr)
            for bb in ("siren", "ffmlp") for reg in ("transfer", "random")}
    assert cli == sweep == repro == want
    assert want[("ffmlp", "random")] == (random_lr or 1e-3) and want[("siren", "transfer")] == (train_lr or 1e-4)
