"""The public Python API (``import inrlens``), the run-folder workflows below the CLI, results() and the quickstart."""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import inrlens
from inrlens import DataConfig, NetConfig, SAEConfig, TrainConfig
from inrlens.cli import main
from inrlens.config import config_hash, to_dict
from inrlens.store import append_row, read_rows

ROOT = Path(__file__).resolve().parents[1]
TINY_NET = NetConfig(width=8, depth=2)
QUIET = dict(progress=False)


def faces(size: int = 8, n: int | None = None):
    return inrlens.resolve("sample:faces", DataConfig(size=size))[:n]


# ------------------------------------------------------------------------------------------------ the namespace
def test_api_names_are_the_module_objects():
    for name, spec in inrlens._API.items():
        module, attr = spec.split(":")
        assert getattr(inrlens, name) is getattr(importlib.import_module(module), attr), name
        assert name in dir(inrlens) and name in inrlens.__all__
        assert getattr(inrlens, name).__doc__, f"{name} has no docstring"
    assert inrlens.rank_profile is importlib.import_module("inrlens.probes.rank").profile
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        inrlens.nope  # noqa: B018


def test_import_inrlens_is_lazy():
    code = "import sys, inrlens; print(sorted(m for m in ('torch', 'pandas', 'inrlens.fit') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


# ------------------------------------------------------------------------------------------------ functions vs references
def test_data_functions(tmp_path):
    from inrlens.data.samples import load_sample

    a = inrlens.resolve("sample:faces", DataConfig(size=8))
    b = load_sample("faces", DataConfig(size=8))
    assert [s.name for s in a] == [s.name for s in b] and all(torch.equal(x.pixels, y.pixels) for x, y in zip(a, b))
    img = (np.arange(5 * 7 * 3).reshape(5, 7, 3) % 256).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "x.png")
    (s,) = inrlens.load_images(tmp_path)
    torch.testing.assert_close(s.pixels, torch.from_numpy(img / 255.0 * 2 - 1).float())
    g = inrlens.grid(2, 3)  # row-major, x from the columns, y from the rows, inclusive ends
    assert g.tolist() == [[-1, -1], [0, -1], [1, -1], [-1, 1], [0, 1], [1, 1]]
    c, t = inrlens.split(a, 4, 3, seed=5)
    assert len(c) == 4 and len(t) == 3 and not {x.name for x in c} & {x.name for x in t}


def test_fits_stack_builders_and_checkpoints(tmp_path):
    sigs = faces(8, 3)
    train = TrainConfig(steps=5, lr=1e-3)
    stack, fr, res = inrlens.fit_single(sigs[:2], TINY_NET, train, (0, 1), **QUIET)
    assert stack.members == 4 and [r.image for r in res] == [sigs[0].name] * 2 + [sigs[1].name] * 2
    # PSNR of member 0 recomputed from its output with numpy
    with torch.no_grad():
        out = stack(inrlens.grid(8, 8))[0].clamp(-1, 1).numpy()
    mse = np.mean(((out + 1) / 2 - (sigs[0].targets().numpy() + 1) / 2) ** 2)
    assert res[0].psnr == pytest.approx(10 * math.log10(1 / mse), abs=1e-3)

    cohort, fr_c, res_c = inrlens.fit_cohort(sigs, TINY_NET, train, seed=3, **QUIET)
    fresh = inrlens.cohort_stack(TINY_NET, 1, 3, 3)
    assert cohort.weights[0].shape[0] == 1 and cohort.weights[-1].shape[0] == 3 and fresh.weights[0].shape == cohort.weights[0].shape
    t = inrlens.transfer_stack(cohort, 0, [0, 1], 1)  # layer 0 is the cohort's (shared), the rest fresh
    assert torch.equal(t.weights[0][0], cohort.weights[0][0]) and not torch.equal(t.weights[1][0], cohort.weights[1][0])
    _, _, res_t = inrlens.fit_transfer(cohort, sigs[:1], 0, train, (0, 1), **QUIET)
    assert len(res_t) == 2 and all(math.isfinite(r.psnr) for r in res_t)

    inrlens.save_stack(cohort, tmp_path / "c", {"members": [s.name for s in sigs]})
    back, meta = inrlens.load_stack(tmp_path / "c")
    assert meta["members"] == [s.name for s in sigs]
    assert all(torch.equal(x, y) for x, y in zip(back.weights, cohort.weights))


def test_rank_profile_against_numpy():
    cohort, _, _ = inrlens.fit_cohort(faces(8, 3), NetConfig(width=8, depth=3), TrainConfig(steps=5), **QUIET)
    prof = inrlens.rank_profile(cohort, (8, 8))
    for ell in range(3):
        s = np.linalg.svd(cohort.weights[ell][0].double().numpy(), compute_uv=False)
        assert prof.sr_w[ell] == pytest.approx(float((s**2).sum() / s.max() ** 2), rel=1e-9)
    h = inrlens.layer_acts(cohort, inrlens.grid(8, 8), 0)
    for ell in range(3):
        s = np.linalg.svd(h[ell].double().numpy(), compute_uv=False)
        assert prof.sr_h[ell] == pytest.approx(float((s**2).sum() / s.max() ** 2), rel=1e-9)
    assert prof.k_w == int(np.argmax(prof.sr_w)) and prof.grid_shape == (8, 8)


def test_sae_encode_codes_atom_maps_and_checkpoint(tmp_path):
    torch.manual_seed(0)
    h = torch.randn(36, 8)
    sae, log = inrlens.train_sae(h, SAEConfig(n=16, k=3, steps=20, batch=36), progress=False)
    z = sae.encode(h)
    # naive reference: z = ReLU of the k largest entries of (h − b_dec) W_encᵀ + b_enc, zeros elsewhere
    pre = (h - sae.b_dec) @ sae.W_enc.T + sae.b_enc
    ref = torch.zeros_like(pre)
    for i in range(pre.shape[0]):
        top = torch.argsort(pre[i], descending=True)[:3]
        ref[i, top] = torch.relu(pre[i, top])
    torch.testing.assert_close(z, ref)
    codes = sae.codes(h)
    torch.testing.assert_close(codes.dense(16), z)
    maps = inrlens.atom_maps(codes, [2, 5], (6, 6))
    torch.testing.assert_close(maps, z[:, [2, 5]].T.reshape(2, 6, 6))
    inrlens.save_sae(sae, tmp_path / "s", {"layer": 1})
    back, meta = inrlens.load_sae(tmp_path / "s")
    assert meta == {"layer": 1}
    torch.testing.assert_close(back.encode(h), z)


# ------------------------------------------------------------------------------------------------ run-folder workflows
def _key(conf, image, seed, regime, freeze, encoder=None):
    """A row key as the run-folder docs define it. ``image`` is the image's pixel digest (images entered keys by
    name until then, docs/run-folder.md "Identities"); ``encoder`` the encoder checkpoint's digest (transfer)."""
    ident = {"config": config_hash(conf), "image": image, "seed": seed, "regime": regime, "freeze": freeze}
    return config_hash(ident if encoder is None else dict(ident, encoder=encoder))


def _digest(sig):
    """Signal.digest recomputed by hand: sha256 of dtype|shape|bytes of the (H, W, C) float32 pixels, 16 hex digits."""
    a = np.ascontiguousarray(sig.pixels.numpy())
    return hashlib.sha256(f"<f4|{'x'.join(map(str, a.shape))}|".encode() + a.tobytes()).hexdigest()[:16]


def test_fit_images_keys_rows_checkpoints_and_resume(tmp_path, capsys):
    data = DataConfig(size=8)
    sigs = faces(8, 2)
    train = TrainConfig(steps=4)
    rows = inrlens.fit_images(sigs, tmp_path / "f", TINY_NET, train, (0, 1), data=data, lpips=False, **QUIET)
    conf = {"cmd": "fit", "net": TINY_NET, "train": train, "data": data, "seeds": (0, 1)}  # keys as every earlier version wrote them
    assert [r["key"] for r in rows] == [_key(conf, _digest(s), sd, "single", None) for s in sigs for sd in (0, 1)]
    assert read_rows(tmp_path / "f" / "results.jsonl") == json.loads(json.dumps(rows))
    assert all(r["lr"] == 1e-4 and r["regime"] == "single" for r in rows)  # SIREN's single-signal lr
    stack, meta = inrlens.load_stack(tmp_path / "f" / "models" / "8x8")
    assert meta["members"] == [f"{s.name}@{sd}" for s in sigs for sd in (0, 1)] and meta["data"] == to_dict(data)
    # the CLI writes the same keys
    assert main(["fit", "sample:faces", "--limit", "2", "--seeds", "0", "1", "--out", str(tmp_path / "cli"), "--data.size", "8",
                 "--net.width", "8", "--net.depth", "2", "--train.steps", "4", "--no-lpips"]) == 0
    assert [r["key"] for r in read_rows(tmp_path / "cli" / "results.jsonl")] == [r["key"] for r in rows]
    # resume: nothing refitted, the stored rows come back, one note through log
    notes = []
    again = inrlens.fit_images(sigs, tmp_path / "f", TINY_NET, train, (0, 1), data=data, lpips=False, resume=True, log=notes.append,
                               **QUIET)
    assert again == read_rows(tmp_path / "f" / "results.jsonl") and len(notes) == 1 and "already done" in notes[0]
    assert capsys.readouterr().out.count("skip") == 0  # the library prints nothing
    with pytest.raises(ValueError, match="seeds repeat"):
        inrlens.fit_images(sigs, tmp_path / "g", TINY_NET, train, (0, 0), data=data, **QUIET)
    assert not (tmp_path / "g").exists()


def test_a_second_fit_of_other_images_of_one_shape_keeps_the_first_checkpoint(tmp_path):
    """Fitting image a, then image b of the same shape into one run folder (--resume) saves b beside a
    (models/8x8-2), never over it; each row names its checkpoint; refitting a's own images reuses models/8x8."""
    data = DataConfig(size=8)
    a, b = faces(8, 2)
    train = TrainConfig(steps=2)
    first = inrlens.fit_images([a], tmp_path / "f", TINY_NET, train, data=data, lpips=False, **QUIET)
    before = (tmp_path / "f" / "models" / "8x8" / "model.safetensors").read_bytes()
    notes: list[str] = []
    second = inrlens.fit_images([b], tmp_path / "f", TINY_NET, train, data=data, lpips=False, resume=True, log=notes.append, **QUIET)
    assert (tmp_path / "f" / "models" / "8x8" / "model.safetensors").read_bytes() == before
    assert [r["checkpoint"] for r in first + second] == ["models/8x8", "models/8x8-2"]
    assert inrlens.load_stack(tmp_path / "f" / "models" / "8x8")[1]["members"] == [f"{a.name}@0"]
    assert inrlens.load_stack(tmp_path / "f" / "models" / "8x8-2")[1]["members"] == [f"{b.name}@0"]
    assert any("8x8-2" in n for n in notes)
    both = inrlens.fit_images([a, b], tmp_path / "f", TINY_NET, train, (0, 1), data=data, lpips=False, overwrite=True, **QUIET)
    assert {r["checkpoint"] for r in both} == {"models/8x8"}  # a superset of what models/8x8 held: nothing lost
    again = inrlens.fit_images([a], tmp_path / "f2", TINY_NET, train, data=data, lpips=False, **QUIET)
    again += inrlens.fit_images([a], tmp_path / "f2", TINY_NET, replace(train, steps=3), data=data, lpips=False, overwrite=True,
                                **QUIET)
    assert [r["checkpoint"] for r in again] == ["models/8x8", "models/8x8"]  # the same image: refitted in place


def test_train_cohort_and_transfer_images(tmp_path):
    data = DataConfig(size=8)
    sigs = faces(8, 12)
    train = TrainConfig(steps=3)
    rows = inrlens.train_cohort(sigs, tmp_path / "c", TINY_NET, train, n=3, split_seed=1, seed=2, data=data, **QUIET)
    cohort, _ = inrlens.split(sigs, 3, 0, 1)
    conf = {"cmd": "cohort", "n": 3, "split_seed": 1, "seed": 2, "net": TINY_NET, "train": train, "data": data,
            "images": [s.name for s in cohort]}
    assert [r["key"] for r in rows] == [_key(conf, _digest(s), 2, "cohort", None) for s in cohort]
    assert all(r["lr"] == 1e-4 for r in rows)  # rules.COHORT_LR
    assert inrlens.train_cohort(sigs, tmp_path / "c", TINY_NET, train, n=3, split_seed=1, seed=2, data=data, resume=True,
                                **QUIET) == read_rows(tmp_path / "c" / "results.jsonl")

    t = inrlens.transfer_images(tmp_path / "c", sigs, tmp_path / "t", ("random", "1", "none"), seeds=(0, 1), train=train,
                                data=data, limit=2, lpips=False, **QUIET)
    conf = {"cmd": "transfer", "encoder": str(tmp_path / "c"), "train": train, "data": data, "seeds": (0, 1)}  # SIREN: no random_lr
    test = [s for s in sigs if s.name not in {c.name for c in cohort}][:2]
    enc = json.loads((tmp_path / "c" / "cfg.json").read_text())["model_sha256"]
    want = [_key(conf, _digest(s), sd, reg, fr, enc) for reg, fr in (("random", None), ("transfer", 1), ("transfer", None))
            for s in test for sd in (0, 1)]
    assert [r["key"] for r in t] == want
    assert {r["lr"] for r in t} == {1e-4}
    with pytest.raises(ValueError, match=r"freeze depth 2 is outside 0\.\.1.*" + re.escape(str(tmp_path / "c"))):
        inrlens.transfer_images(tmp_path / "c", sigs, tmp_path / "t2", ("2",), data=data, **QUIET)
    assert not (tmp_path / "t2").exists()


def test_transfer_random_lr_enters_the_config_only_where_it_changed(tmp_path):
    """FFMLP's random-init baseline now runs at its single-signal lr (1e-3): that run's config records it, so its
    keys differ from rows written at the earlier 1e-4; a SIREN run keeps the earlier config and keys."""
    data = DataConfig(size=8)
    sigs = faces(8, 5)
    ff = NetConfig(backbone="ffmlp", width=8, depth=2, ff_features=8)
    inrlens.train_cohort(sigs, tmp_path / "c", ff, TrainConfig(steps=2), n=2, data=data, **QUIET)
    train = TrainConfig(steps=2)
    rows = inrlens.transfer_images(tmp_path / "c", sigs, tmp_path / "t", ("random", "0"), train=train, data=data, limit=1,
                                   lpips=False, **QUIET)
    assert [r["lr"] for r in rows] == [1e-3, 1e-4]
    run = json.loads((tmp_path / "t" / "run.json").read_text())
    assert run["random_lr"] == 1e-3
    old = {"cmd": "transfer", "encoder": str(tmp_path / "c"), "train": train, "data": data, "seeds": (0,)}
    enc = json.loads((tmp_path / "c" / "cfg.json").read_text())["model_sha256"]
    assert rows[0]["key"] != _key(old, rows[0]["image_digest"], 0, "random", None, enc)
    same = inrlens.transfer_images(tmp_path / "c", sigs, tmp_path / "t1", ("random",), train=train, data=data, limit=1, random_lr=1e-4,
                                   lpips=False, **QUIET)
    assert same[0]["key"] == _key(old, same[0]["image_digest"], 0, "random", None, enc) and same[0]["lr"] == 1e-4


def test_transfer_reinit_matches_fit_transfer_and_enters_the_config(tmp_path, capsys):
    """``reinit`` reaches the freeze-k fits exactly as ``fit_transfer(reinit=…)`` draws them, enters run.json and the
    keys only when it is not 'fresh', and ``inrlens transfer --reinit`` is the same call; a bad value is refused
    before the folder exists. A single fit's std is n/a in the printed table, not 0."""
    data = DataConfig(size=8)
    sigs = faces(8, 6)
    net = NetConfig(width=8, depth=3)
    train = TrainConfig(steps=3)
    inrlens.train_cohort(sigs, tmp_path / "c", net, train, n=3, data=data, **QUIET)
    alt = inrlens.transfer_images(tmp_path / "c", sigs, tmp_path / "alt", ("0", "2", "none"), train=train, data=data, limit=1,
                                  reinit="first_layer_rule", lpips=False, **QUIET)
    fresh = inrlens.transfer_images(tmp_path / "c", sigs, tmp_path / "fresh", ("0", "2", "none"), train=train, data=data,
                                    limit=1, lpips=False, **QUIET)
    enc, _ = inrlens.load_stack(tmp_path / "c")
    target = [s for s in sigs if s.name == alt[0]["image"]]
    for k, row in zip((0, 2, None), alt):
        _, _, ref = inrlens.fit_transfer(enc, target, k, TrainConfig(steps=3, lr=1e-4), progress=False, with_lpips=False,
                                         reinit="first_layer_rule")
        assert row["psnr"] == ref[0].psnr
    assert alt[0]["psnr"] != fresh[0]["psnr"]  # k = 0: layer 1 drawn by the first-layer rule
    assert [a["psnr"] for a in alt[1:]] == [f["psnr"] for f in fresh[1:]]  # k = L−1 and no-freeze re-draw only the head
    assert json.loads((tmp_path / "alt" / "run.json").read_text())["reinit"] == "first_layer_rule"
    assert "reinit" not in json.loads((tmp_path / "fresh" / "run.json").read_text())
    assert alt[0]["reinit"] == "first_layer_rule" and "reinit" not in fresh[0]
    assert not {r["key"] for r in alt} & {r["key"] for r in fresh}
    with pytest.raises(ValueError, match="reinit must be one of"):
        inrlens.transfer_images(tmp_path / "c", sigs, tmp_path / "bad", ("0",), data=data, reinit="zeros", **QUIET)
    assert not (tmp_path / "bad").exists()

    assert main(["transfer", str(tmp_path / "c"), "sample:faces", "--data.size", "8", "--out", str(tmp_path / "cli"),
                 "--freeze", "0", "--limit", "1", "--train.steps", "3", "--reinit", "first_layer_rule", "--no-lpips"]) in (0, None)
    cli = read_rows(tmp_path / "cli" / "results.jsonl")
    assert [r["psnr"] for r in cli] == [alt[0]["psnr"]]
    table = capsys.readouterr().out
    assert re.search(r"^k=0\s+1\s+\S+\s+n/a\s", table, re.M), table


# ------------------------------------------------------------------------------------------------ results()
def test_results_on_fit_transfer_sweep_and_reproduce_folders(tmp_path):
    data = DataConfig(size=8)
    sigs = faces(8, 6)
    fit_rows = inrlens.fit_images(sigs[:2], tmp_path / "fit", TINY_NET, TrainConfig(steps=3), data=data, lpips=False, **QUIET)
    df = inrlens.results(tmp_path / "fit")
    assert len(df) == 2 and list(df["key"]) == [r["key"] for r in fit_rows]
    assert list(df["net.width"]) == [8, 8] and list(df["train.steps"]) == [3, 3] and "net" not in df.columns
    assert df["psnr"].tolist() == pytest.approx([r["psnr"] for r in fit_rows])
    assert df["curve"].iloc[0] == fit_rows[0]["curve"] and set(df["file"]) == {"results.jsonl"}

    inrlens.train_cohort(sigs, tmp_path / "c", TINY_NET, TrainConfig(steps=2), n=2, data=data, **QUIET)
    t_rows = inrlens.transfer_images(tmp_path / "c", sigs, tmp_path / "t", ("none", "0", "random"), data=data, limit=2, lpips=False,
                                     train=TrainConfig(steps=2), **QUIET)
    df = inrlens.results(tmp_path / "t")
    assert df["depth"].tolist() == ["none", "none", 0, 0, "random", "random"]
    assert df.groupby("depth", sort=False)["psnr"].mean().tolist() == pytest.approx(
        [np.mean([r["psnr"] for r in t_rows if inrlens.workflows.depth_tag(r) == tag]) for tag in ("none", "k=0", "random")])

    # a sweep folder and a reproduce run root, laid out as those commands write them (rows abbreviated)
    run = tmp_path / "repro"
    fit = {"kind": "fit", "regime": "transfer", "depth": 1, "freeze": 1, "psnr": 30.0, "status": "ok", "net": {"width": 8}}
    for i in range(3):
        append_row(run / "sweep" / "results" / "fits-a-000.jsonl", dict(fit, key=f"f{i}", psnr=30.0 + i))
    append_row(run / "sweep" / "results" / "fits-a-000.jsonl", dict(fit, key="r", regime="random", depth="random", freeze=None, psnr=None,
                                                                      status="diverged"))
    append_row(run / "sweep" / "results" / "cohort-faces_siren.jsonl", {"kind": "cohort", "key": "c", "sr_w": [1.0, 2.0], "psnr_mean": 31})
    inrlens.fit_images(sigs[:1], run / "single" / "siren", TINY_NET, TrainConfig(steps=2), data=data, lpips=False, checkpoint="root",
                       **QUIET)
    append_row(run / "sae" / "cohort-siren" / "results.jsonl", {"key": "s", "condition": "cohort-siren", "regime": "cohort", "layer": 1,
                                                               "r2": 0.9, "sae": {"n": 16, "k": 3}})
    append_row(run / "sae" / "cohort-siren" / "ablations.jsonl", {"key": "a", "condition": "cohort-siren", "layer": 1, "atom": 4,
                                                                  "psnr_drop": 0.5})
    sweep = inrlens.results(run / "sweep")
    assert len(sweep) == 4 and sweep["psnr"].iloc[:3].tolist() == [30.0, 31.0, 32.0] and math.isnan(sweep["psnr"].iloc[3])
    assert inrlens.results(run / "sweep", "cohort")["sr_w"].iloc[0] == [1.0, 2.0]
    root = inrlens.results(run)
    assert len(root) == 5 and sorted(root["regime"]) == ["random", "single", "transfer", "transfer", "transfer"]
    assert set(root["file"]) == {"sweep/results/fits-a-000.jsonl", "single/siren/results.jsonl"}
    assert inrlens.results(run, "sae")["sae.n"].tolist() == [16]
    assert inrlens.results(run, "ablation")["atom"].tolist() == [4]
    assert len(inrlens.results(run, "all")) == 5 + 1 + 1 + 1
    assert inrlens.load_stack(run / "single" / "siren")[0].members == 1  # checkpoint="root"
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        inrlens.results(tmp_path / "missing")
    with pytest.raises(ValueError, match="kind must be one of"):
        inrlens.results(run, "fits")


# ------------------------------------------------------------------------------------------------ quickstart
def test_quickstart_runs_and_prints_sane_numbers():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    p = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    out = p.stdout
    sweep = dict(re.findall(r"^\s+depth\s+(\S+): psnr (\S+) ±", out, re.M))
    assert list(sweep) == ["none", "k=0", "k=1", "k=2", "random"]
    assert all(math.isfinite(float(v)) and 5.0 < float(v) < 150.0 for v in sweep.values()), sweep
    cohort = float(re.search(r"^cohort: 5 heads, \d+ steps, mean psnr (\S+) dB", out, re.M).group(1))
    assert math.isfinite(cohort) and cohort > 15.0
    # the DataFrame's per-depth means equal the sweep table's
    table = dict(re.findall(r"^\s+results depth (\S+): psnr (\S+) dB", out, re.M))
    assert {("none" if k == "none" else "random" if k == "random" else f"k={k}"): v for k, v in table.items()} == sweep
    ranks = re.search(r"sr\(W\) \[(.*?)\].*k\* = (\d)", out)
    sr = [float(x) for x in ranks.group(1).split(",")]
    assert len(sr) == 3 and all(1.0 <= v <= 32.0 for v in sr) and int(ranks.group(2)) == int(np.argmax(sr))
    r2 = float(re.search(r"r2 (\S+),", out).group(1))
    assert 0.0 < r2 <= 1.0
    assert "all psnr finite: True" in out
