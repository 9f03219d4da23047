"""Images and checkpoints have identities: keys hold an image's pixel digest, derived rows and files hold the digest
of the model they came from, stale rows are redone or refused, --overwrite moves the replaced config's rows aside.

Each defect users reported is reproduced through the CLI where it was seen (16 px images, width 8, ~20 steps).
Digests are checked against an independent recomputation (PNG → float32 in [-1, 1] → sha256) and against the
checkpoint's own cfg.json, never against the code under test.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import inrlens
from inrlens.cli import main
from inrlens.config import config_hash
from inrlens.data import resolve
from inrlens.identity import read_current_rows
from inrlens.probes.decompose import SaeRun
from inrlens.store import load_stack, read_rows, save_stack

NET = ["--net.width", "8", "--net.depth", "2"]
FIT = [*NET, "--train.steps", "20", "--no-lpips"]


def png(path: Path, seed: int) -> Path:
    """A 16×16 gray image drawn from ``seed`` (different seeds: different pixels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:16, 0:16]
    a = ((x * (seed + 3) * 5 + y * (2 * seed + 7) + seed * 29) % 256).astype(np.uint8)
    Image.fromarray(a).save(path)
    return path


def ref_digest(path: Path) -> str:
    """The image digest recomputed by hand: 8-bit gray → float32 (H, W, 1) in [-1, 1]; sha256 of dtype|shape|bytes."""
    a = np.asarray(Image.open(path).convert("L"), dtype=np.float64) / 255.0
    a = np.ascontiguousarray(a[:, :, None].astype(np.float32) * np.float32(2.0) - np.float32(1.0))
    h = hashlib.sha256(f"<f4|{'x'.join(map(str, a.shape))}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:16]


def model_digest(folder: Path) -> str:
    """A checkpoint's digest: its cfg.json's model_sha256, checked against the file's sha256."""
    d = json.loads((folder / "cfg.json").read_text())["model_sha256"]
    assert hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest() == d
    return d


def err_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("inrlens: error:")]


# ------------------------------------------------------------------------------------------------ images
def test_same_stem_in_two_folders_is_two_images_named_by_their_folders(tmp_path, capsys):
    a, b = png(tmp_path / "dirA" / "x.png", 1), png(tmp_path / "dirB" / "x.png", 2)
    assert main(["fit", str(a), str(b), "--out", str(tmp_path / "f"), *FIT]) == 0
    rows = read_rows(tmp_path / "f" / "results.jsonl")
    assert [(r["image"], r["image_digest"]) for r in rows] == [("dirA/x", ref_digest(a)), ("dirB/x", ref_digest(b))]
    assert [r["key"] for r in rows] == [config_hash({"config": r["config"], "image": ref_digest(p), "seed": 0, "regime": "single",
                                                     "freeze": None}) for r, p in zip(rows, (a, b))]
    assert len({r["psnr"] for r in rows}) == 2  # two fits, not one counted twice
    _, meta = load_stack(tmp_path / "f" / "models" / "16x16")
    assert meta["members"] == ["dirA/x@0", "dirB/x@0"] and meta["member_digests"] == [ref_digest(a), ref_digest(b)]


def test_same_stem_other_suffix_named_by_file_name(tmp_path):
    d = tmp_path / "imgs"
    p = png(d / "y.png", 1)
    Image.open(png(tmp_path / "other.png", 2)).save(d / "y.jpg", quality=95)  # other pixels
    assert main(["fit", str(d), "--out", str(tmp_path / "f"), *FIT]) == 0
    rows = read_rows(tmp_path / "f" / "results.jsonl")
    assert sorted((r["image"], r["image_digest"]) for r in rows) == [("y.jpg", ref_digest(d / "y.jpg")), ("y.png", ref_digest(p))]


def test_second_fit_of_another_image_with_the_same_stem_fits_it(tmp_path, capsys):
    a, b = png(tmp_path / "dirA" / "x.png", 1), png(tmp_path / "dirB" / "x.png", 2)
    out = tmp_path / "f"
    assert main(["fit", str(a), "--out", str(out), *FIT]) == 0
    capsys.readouterr()
    assert main(["fit", str(b), "--out", str(out), *FIT]) == 0
    assert "already done" not in capsys.readouterr().out  # it was skipped as "x" before
    rows = read_rows(out / "results.jsonl")
    assert [r["image_digest"] for r in rows] == [ref_digest(a), ref_digest(b)] and len({r["key"] for r in rows}) == 2
    assert main(["fit", str(a), "--out", str(out), *FIT]) == 0  # the same pixels again: done
    assert "already done" in capsys.readouterr().out and len(read_rows(out / "results.jsonl")) == 2


def test_identical_pixels_under_two_names_are_fitted_once_with_a_warning(tmp_path, capsys):
    d = tmp_path / "imgs"
    a = png(d / "a.png", 1)
    shutil.copy(a, d / "b.png")
    png(d / "c.png", 2)
    with pytest.warns(UserWarning) as rec:
        assert main(["fit", str(d), "--out", str(tmp_path / "f"), *FIT]) == 0
    assert [str(w.message) for w in rec] == [f"{d / 'b.png'}: same pixels as {a} (image digest {ref_digest(a)}); fitted once, as 'a'"]
    rows = read_rows(tmp_path / "f" / "results.jsonl")
    assert [r["image"] for r in rows] == ["a", "c"]
    assert {s.name for s in resolve([str(d / "b.png"), str(d / "c.png")])} == {"b", "c"}  # alone, b keeps its name


# ------------------------------------------------------------------------------------------------ transfer exclusion
def _cohort(tmp_path: Path, steps: str = "20") -> tuple[Path, Path]:
    coh = tmp_path / "coh"
    for i in range(3):
        png(coh / f"c{i}.png", 10 + i)
    out = tmp_path / "c"
    assert main(["cohort", str(coh), "--n", "3", "--out", str(out), *NET, "--train.steps", steps]) == 0
    return coh, out


def _targets(tmp_path: Path, coh: Path) -> Path:
    t = tmp_path / "targets"
    png(t / "c0.png", 40)  # named like a cohort member, other pixels: a test image
    t.mkdir(exist_ok=True)
    shutil.copy(coh / "c1.png", t / "renamed.png")  # a cohort member under another name: excluded
    png(t / "t.png", 41)
    return t


def test_transfer_excludes_members_by_pixels_not_by_name(tmp_path, capsys):
    coh, c = _cohort(tmp_path)
    _, meta = load_stack(c)
    assert meta["member_digests"] == [ref_digest(coh / f"{n}.png") for n in meta["members"]]
    t = _targets(tmp_path, coh)
    with pytest.warns(UserWarning) as rec:
        assert main(["transfer", str(c), str(t), "--out", str(tmp_path / "t"), "--freeze", "none", "--train.steps", "5", "--no-lpips"]) == 0
    assert [str(w.message) for w in rec] == [f"c0: named like a member of the cohort {c} but with other pixels; fitted as test image(s)"]
    rows = read_rows(tmp_path / "t" / "results.jsonl")
    want = [("c0", ref_digest(t / "c0.png")), ("t", ref_digest(t / "t.png"))]
    assert sorted((r["image"], r["image_digest"]) for r in rows) == want
    assert {r["encoder_sha256"] for r in rows} == {model_digest(c)}


def test_checkpoint_without_member_digests_falls_back_to_names_with_a_warning(tmp_path, capsys):
    coh, c = _cohort(tmp_path)
    cfg = json.loads((c / "cfg.json").read_text())
    del cfg["meta"]["member_digests"]  # as written by an earlier inrlens
    (c / "cfg.json").write_text(json.dumps(cfg))
    t = _targets(tmp_path, coh)
    with pytest.warns(UserWarning) as rec:
        assert main(["transfer", str(c), str(t), "--out", str(tmp_path / "t"), "--freeze", "none", "--train.steps", "5", "--no-lpips"]) == 0
    assert [str(w.message) for w in rec] == [f"{c}: this checkpoint records no image digests of its members (written by an "
                                             "earlier inrlens); cohort members are excluded by name"]
    assert sorted(r["image"] for r in read_rows(tmp_path / "t" / "results.jsonl")) == ["renamed", "t"]  # by name, as before


# ------------------------------------------------------------------------------------------------ retrained in place
def test_cohort_retrained_in_place_refuses_old_saes_and_refits_transfer_rows(tmp_path, capsys):
    coh, c = _cohort(tmp_path)
    old = model_digest(c)
    run = tmp_path / "sae"
    assert main(["sae", str(c), str(coh), "--layers", "1", "--sae.n", "16", "--sae.k", "2", "--sae.steps", "10",
                 "--sae.batch", "64", "--device", "cpu", "--out", str(run)]) == 0
    ctx = json.loads((run / "context.json").read_text())
    assert ctx["inr_sha256"] == old and ctx["image_digest"] == ref_digest(coh / f"{ctx['image']}.png")
    assert main(["atoms", str(run), "--top", "2", "--device", "cpu"]) == 0
    atoms = run / "saes" / "L1_n16_k2" / "atoms.safetensors"
    from safetensors import safe_open

    with safe_open(str(atoms), "pt") as f:
        head = f.metadata()
    sae_w = run / "saes" / "L1_n16_k2" / "sae.safetensors"
    assert head["inr_sha256"] == old and head["sae_sha256"] == hashlib.sha256(sae_w.read_bytes()).hexdigest()
    t = _targets(tmp_path, coh)
    targs = ["transfer", str(c), str(t), "--out", str(tmp_path / "t"), "--freeze", "none", "0", "--train.steps", "5", "--no-lpips"]
    assert main(targs) == 0
    first = read_rows(tmp_path / "t" / "results.jsonl")
    assert len(first) == 4 and {r["encoder_sha256"] for r in first} == {old}

    capsys.readouterr()
    assert main(["cohort", str(coh), "--n", "3", "--out", str(c), *NET, "--train.steps", "25", "--overwrite"]) == 0
    out = capsys.readouterr().out
    moved = sorted(c.glob("results.jsonl.replaced-*"))
    assert len(moved) == 1 and f"{c / 'results.jsonl'}: rows of the replaced config moved aside to {moved[0].name}" in out
    new = model_digest(c)
    assert new != old and {r["model_sha256"] for r in read_rows(c / "results.jsonl")} == {new}
    assert len(read_rows(moved[0])) == 3 and len(read_rows(c / "results.jsonl")) == 3

    before = atoms.read_bytes()
    want = f"the INR changed since these SAEs were trained (digest {old[:8]}… ≠ {new[:8]}…); rerun `inrlens sae"
    for argv in (["atoms", str(run), "--top", "2", "--device", "cpu"],
                 ["ablate", str(run), "--layers", "1", "--top", "2", "--device", "cpu"],
                 ["steer", str(run), "--layer", "1", "--atom", "0", "--scale", "0", "--device", "cpu"]):
        assert main(argv) == 2, argv
        errs = err_lines(capsys.readouterr().err)
        assert len(errs) == 1 and want in errs[0] and errs[0].endswith("--overwrite`"), errs
    assert atoms.read_bytes() == before and not (run / "ablations.jsonl").exists() and not (run / "steer").exists()

    # transfer --resume: every row of the old encoder is stale and refitted, none reused
    assert main([*targs, "--resume"]) == 0
    rows = read_rows(tmp_path / "t" / "results.jsonl")
    assert len(rows) == 8 and Counter(r["encoder_sha256"] for r in rows) == {old: 4, new: 4}
    cur = [r for r in rows if r["encoder_sha256"] == new]
    assert [r["key"] for r in cur] == [config_hash({"config": r["config"], "image": r["image_digest"], "seed": 0, "regime": r["regime"],
                                                    "freeze": r["freeze"], "encoder": new}) for r in cur]
    assert not {r["key"] for r in cur} & {r["key"] for r in first}
    df = inrlens.results(tmp_path / "t")
    assert len(df) == 4 and set(df["encoder_sha256"]) == {new}  # the stale rows are not read
    assert main([*targs, "--resume"]) == 0 and len(read_rows(tmp_path / "t" / "results.jsonl")) == 8  # now done

    # the SAEs retrained on the new INR: atoms work again; the stale diagnostics rows are not read back
    assert main(["sae", str(c), str(coh), "--layers", "1", "--sae.n", "16", "--sae.k", "2", "--sae.steps", "10",
                 "--sae.batch", "64", "--device", "cpu", "--out", str(run), "--overwrite"]) == 0
    assert [r["inr_sha256"] for r in read_rows(run / "results.jsonl")] == [old, new]
    assert [r["inr_sha256"] for r in SaeRun(run).read_results()] == [new]
    assert main(["atoms", str(run), "--top", "2", "--device", "cpu"]) == 0


def test_overwrite_moves_the_replaced_configs_rows_aside(tmp_path, capsys):
    a = png(tmp_path / "a.png", 1)
    out = tmp_path / "f"
    assert main(["fit", str(a), "--out", str(out), *FIT]) == 0
    assert main(["fit", str(a), "--out", str(out), *NET, "--train.steps", "21", "--no-lpips"]) == 2  # another config: refused
    capsys.readouterr()
    assert main(["fit", str(a), "--out", str(out), *NET, "--train.steps", "21", "--no-lpips", "--overwrite"]) == 0
    moved = sorted(out.glob("results.jsonl.replaced-*"))
    assert len(moved) == 1 and "moved aside" in capsys.readouterr().out
    assert [r["train"]["steps"] for r in read_rows(moved[0])] == [20]
    assert [r["train"]["steps"] for r in read_rows(out / "results.jsonl")] == [21]
    assert list(inrlens.results(out)["train.steps"]) == [21]
    # an overwrite with the same config is a plain rerun: nothing moved, nothing refitted
    assert main(["fit", str(a), "--out", str(out), *NET, "--train.steps", "21", "--no-lpips", "--overwrite"]) == 0
    assert len(sorted(out.glob("results.jsonl.replaced-*"))) == 1 and "already done" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ sweep
def test_sweep_rows_of_a_replaced_cohort_are_redone_and_each_key_is_current_once(tmp_path, capsys):
    data = tmp_path / "data"
    for i in range(4):
        png(data / f"i{i}.png", 20 + i)
    out = tmp_path / "s"
    args = ["sweep", "--out", str(out), "--data", f"d={data}", "--backbones", "siren", "--depths", "none", "0", "random",
            "--seeds", "0", "--n-cohort", "2", "--n-test", "2", *NET, "--cohort-train.steps", "6", "--train.steps", "4",
            "--images.size", "16", "--no-lpips", "--cluster", "debug", "--jobs", "1", "--no-report"]
    assert main(args) == 0
    cohort_dir = out / "cohorts" / "d_siren"
    old = model_digest(cohort_dir)
    rows = [r for r in read_rows(out / "results") if r["kind"] == "fit"]
    assert len(rows) == 6 and {r.get("cohort_sha256") for r in rows if r["regime"] == "transfer"} == {old}
    assert all("cohort_sha256" not in r for r in rows if r["regime"] == "random")
    assert {r["image_digest"] for r in rows} == {ref_digest(data / f"{r['image']}.png") for r in rows}

    # the cohort checkpoint replaced by hand (same task key, other weights)
    stack, meta = load_stack(cohort_dir)
    with torch.no_grad():
        stack.weights[0].add_(0.01)
    save_stack(stack, cohort_dir, meta)
    new = model_digest(cohort_dir)
    assert new != old
    capsys.readouterr()
    assert main(args) == 0
    assert "2 fits already done, 4 to run" in capsys.readouterr().out  # the random-init rows stay; transfer rows redone
    every = read_rows(out / "results")
    fits = [r for r in every if r["kind"] == "fit"]
    assert len(fits) == 10
    current = read_current_rows(out / "results")
    cur_fits = [r for r in current if r["kind"] == "fit"]
    assert len(cur_fits) == 6 and Counter(r["key"] for r in cur_fits).most_common(1)[0][1] == 1
    assert {r["key"] for r in cur_fits} == {r["key"] for r in rows}  # the same plan keys, each once among current rows
    assert {r["cohort_sha256"] for r in cur_fits if r["regime"] == "transfer"} == {new}
    cohort_rows = [r for r in every if r["kind"] == "cohort"]
    assert [r["cohort_sha256"] for r in cohort_rows] == [old, new]  # its profile recomputed from the new weights
    assert [r["cohort_sha256"] for r in current if r["kind"] == "cohort"] == [new]
    df = inrlens.results(out)
    assert len(df) == 6 and set(df.loc[df["regime"] == "transfer", "cohort_sha256"]) == {new}
    assert main(args) == 0 and "6 fits already done, 0 to run" in capsys.readouterr().out


@pytest.mark.parametrize(("files", "names"), [
    (("dirA/x.png", "dirB/x.png", "dirA/x.jpg"), ("dirA/x.png", "dirB/x.png", "dirA/x.jpg")),  # x.png twice, dirA/x twice
    (("a/in/x.png", "b/in/x.png"), ("a/in/x", "b/in/x")),  # in/x twice: one more folder
    (("dirA/x.png", "dirB/y.png", "dirB/x.png"), ("dirA/x", "y", "dirB/x")),  # unique names are left alone
])
def test_names_grow_until_unique(tmp_path, files, names):
    for i, n in enumerate(files):
        (tmp_path / n).parent.mkdir(parents=True, exist_ok=True)
        Image.open(png(tmp_path / "p.png", i)).save(tmp_path / n, quality=95)
    assert [s.name for s in resolve([str(tmp_path / n) for n in files])] == list(names)
