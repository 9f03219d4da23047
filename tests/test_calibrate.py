"""`inrlens calibrate`: the candidate table against hand-computed numbers, and a tiny real run checked against
direct calls of the fit functions."""

from __future__ import annotations

import json
import math

import pytest

from inrlens import calibrate as C
from inrlens.cli import main


def _u(b, w, lr, s, t, psnr, src="A", image="i", seed=0, exact=True):
    return {"backbone": b, "width": w, "lr": lr, "steps": s, "source": src, "target": t, "image": image, "seed": seed,
            "psnr": psnr, "exact": exact}


def test_table_marks_candidates_inside_the_band():
    """SIREN CelebA band 43 ± 3 → [40, 46]; FFMLP Kodak 28–29 ± 3 → [25, 32]; faces plays CelebA, photos Kodak."""
    an = {"faces": "celeba", "photos": "kodak"}
    units = [
        # siren w32 lr1e-3 300: faces over two sources × two images: 39, 41, 40, 40 → mean 40.0 (the lower edge) → inside
        _u("siren", 32, 1e-3, 300, "faces", 39.0, "A", "a"), _u("siren", 32, 1e-3, 300, "faces", 41.0, "A", "b"),
        _u("siren", 32, 1e-3, 300, "faces", 40.0, "B", "a"), _u("siren", 32, 1e-3, 300, "faces", 40.0, "B", "b"),
        # siren w32 lr1e-4 300: faces 39.9 → 0.1 dB below the widened band
        _u("siren", 32, 1e-4, 300, "faces", 39.8), _u("siren", 32, 1e-4, 300, "faces", 40.0, image="b"),
        # a target without a paper band
        _u("siren", 32, 1e-4, 300, "noise", 30.0),
        # ffmlp: photos 32.0 inside (upper edge), 32.5 above by 0.5; a NaN (diverged) unit is left out of the mean
        _u("ffmlp", 16, 1e-3, 100, "photos", 32.0), _u("ffmlp", 16, 1e-3, 100, "photos", math.nan, image="b"),
        _u("ffmlp", 16, 1e-3, 200, "photos", 32.5, exact=False),
    ]
    rows = {(r["backbone"], r["lr"], r["steps"], r["target"]): r for r in C.table(units, an)}
    r = rows[("siren", 1e-3, 300, "faces")]
    assert (r["mean"], r["n"], r["paper"], r["paper_dataset"], r["inside"], r["distance"]) == (40.0, 4, [43.0, 43.0], "celeba", True, 0.0)
    assert r["std"] == pytest.approx((2 / 3) ** 0.5)  # sample std of 39, 41, 40, 40
    r = rows[("siren", 1e-4, 300, "faces")]
    assert r["mean"] == pytest.approx(39.9) and r["inside"] is False and r["distance"] == pytest.approx(0.1)
    r = rows[("siren", 1e-4, 300, "noise")]
    assert r["paper"] is None and r["inside"] is None and math.isnan(r["distance"]) and r["flag"] == "paper band unknown"
    r = rows[("ffmlp", 1e-3, 100, "photos")]
    assert (r["mean"], r["n"], r["inside"], r["exact"]) == (32.0, 1, True, True)
    r = rows[("ffmlp", 1e-3, 200, "photos")]
    assert r["inside"] is False and r["distance"] == pytest.approx(0.5) and r["exact"] is False
    # without analogues no target has a band
    assert all(x["inside"] is None for x in C.table(units))
    # closest candidate per backbone: siren lr 1e-3 (1/1 inside) beats lr 1e-4 (0/1 inside); ffmlp 100 steps
    best = C.best(C.table(units, an))
    assert (best["siren"]["lr"], best["siren"]["inside"], best["siren"]["targets"]) == (1e-3, 1, 1)
    assert (best["ffmlp"]["steps"], best["ffmlp"]["distance"]) == (100, 0.0)
    md = C.markdown(C.table(units, an))
    assert "| 32 | 0.001 | 300 | 40.0 ± 0.8 ✓ | n/a | 1/1 |" in md
    assert "| 32 | 0.0001 | 300 | 39.9 ± 0.1 −0.1 | 30.0 ± 0.0 | 0/1 |" in md
    assert "| 16 | 0.001 | 200 | 32.5 ± 0.0* +0.5 | 0/1 |" in md
    assert "faces (as celeba), paper 43" in md and "photos (as kodak), paper 28–29" in md


def test_grid_defaults_and_errors():
    from inrlens.sweep import spec_from_dict

    spec, _ = spec_from_dict({"data": {"f": "sample:faces"}, "net": {"width": 16, "ff_features": 16},
                              "train": {"steps": 50, "lr": 2e-4},
                              "per_backbone": {"ffmlp": {"width": 24, "ff_features": 24, "lr": 1e-3, "steps": 70}}})
    got = {(c.backbone, c.width, c.lr, c.steps) for c in C.grid(spec)}
    assert got == {("siren", 16, 2e-4, 50), ("ffmlp", 24, 1e-3, 70)}
    assert len(C.grid(spec, ("siren",), (8, 8, 16), (1e-3, 1e-4), (10,))) == 4
    cs = C.candidate_spec(spec, "ffmlp", 32, 3e-3, 90)
    assert (cs.backbones, cs.depths, cs.net.width, cs.net.ff_features, cs.train.lr, cs.train.steps, cs.train.log_every) == \
        (("ffmlp",), ("none",), 32, 32, 3e-3, 90, 1)  # m = width where the spec ties them
    untied, _ = spec_from_dict({"net": {"width": 16, "ff_features": 40}})
    assert C.candidate_spec(untied, "ffmlp", 32, 1e-3, 10).net.ff_features == 40
    for args, msg in ((((), (0,), (), ()), "--width: 0"), (((), (), (-1.0,), ()), "--lr: -1.0"),
                      ((("wire",), (), (), ()), "not swept")):
        with pytest.raises(ValueError, match=msg):
            C.grid(spec, *args)


TINY = """
[datasets]
faces = "sample:faces"
[sweep]
backbones = ["siren", "ffmlp"]
seeds = [0]
n_cohort = 2
n_test = 2
lpips = false
net = { width = 8, depth = 2, ff_features = 8 }
cohort_train = { steps = 20, lr = 1e-3 }
train = { steps = 12, lr = 1e-3 }
images = { size = 12, square = true, channels = "gray" }
[study]
analogues = { faces = "celeba" }
ablate_layers = [1]
"""


def test_tiny_run_matches_direct_fits(tmp_path, capsys):
    """A real calibration: the longest step count's PSNR is a direct no-freeze fit_transfer of that many steps from
    the saved cohort, and a shorter count's is that fit's unclamped PSNR after that many updates."""
    import torch

    from inrlens.config import DataConfig, TrainConfig
    from inrlens.data import resolve
    from inrlens.fit import fit_transfer
    from inrlens.store import load_stack

    preset = tmp_path / "tiny.toml"
    preset.write_text(TINY)
    out = tmp_path / "cal"
    assert main(["calibrate", "--preset", str(preset), "--out", str(out), "--lr", "1e-3", "3e-3", "--steps", "6", "12",
                 "--backbones", "siren"]) == 0
    printed = capsys.readouterr().out
    res = json.loads((out / "calibration.json").read_text())
    assert len(res["units"]) == 2 * 2 * 2  # lrs × steps × test images (one source, one seed)
    assert "faces (as celeba), paper 43" in printed and (out / "calibration.md").is_file()
    enc, _ = load_stack(out / "runs" / "siren-w8" / "cohorts" / "faces_siren")
    sigs = {s.name: s for s in resolve("sample:faces", DataConfig(size=12, square=True, channels="gray"))}
    torch.set_num_threads(1)
    for lr in (1e-3, 3e-3):
        us = [u for u in res["units"] if u["lr"] == lr]
        for image in {u["image"] for u in us}:
            _, fr, mr = fit_transfer(enc, [sigs[image]], None, TrainConfig(steps=12, lr=lr, log_every=1, device="cpu"),
                                     (0,), progress=False, with_lpips=False)
            long = next(u for u in us if u["image"] == image and u["steps"] == 12)
            short = next(u for u in us if u["image"] == image and u["steps"] == 6)
            assert long["exact"] and long["psnr"] == pytest.approx(mr[0].psnr, abs=1e-4)
            assert not short["exact"] and short["psnr"] == pytest.approx(mr[0].curve[mr[0].curve_steps.index(6)], abs=1e-4)
    # the table: one row per (lr, steps) with the mean of the two images
    for r in res["table"]:
        vals = [u["psnr"] for u in res["units"] if (u["lr"], u["steps"]) == (r["lr"], r["steps"])]
        assert r["mean"] == pytest.approx(sum(vals) / len(vals)) and r["n"] == 2 and r["paper"] == [43.0, 43.0]
    # a rerun with one more lr reuses the cohort and the finished fits: only the new lr's fits are added
    from inrlens.store import read_rows

    n_before = len(read_rows(out / "runs" / "siren-w8" / "results"))
    assert main(["calibrate", "--preset", str(preset), "--out", str(out), "--lr", "1e-3", "3e-3", "1e-2", "--steps", "6", "12",
                 "--backbones", "siren"]) == 0
    rows = read_rows(out / "runs" / "siren-w8" / "results")
    assert len(rows) == n_before + 2 and sum(r.get("kind") == "cohort" for r in rows) == 1


@pytest.mark.parametrize("args,msg", [(["--lr", "0"], "--lr: 0.0"), (["--sources", "nope"], "--sources: 'nope'"),
                                      (["--n-test", "0"], "--n-test must be >= 1"), (["--seeds", "1", "1"], "seeds repeat")])
def test_bad_calibrate_input_writes_nothing(tmp_path, capsys, args, msg):
    preset = tmp_path / "tiny.toml"
    preset.write_text(TINY)
    rc = main(["calibrate", "--preset", str(preset), "--out", str(tmp_path / "cal"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and msg in err[0], err
    assert not (tmp_path / "cal").exists()
