"""Sweep: expansion, keys (pinned against earlier versions), splits, chunking, spec files, task pickling, a
failing job under the debug cluster, and a tiny real sweep through submitit's LocalExecutor (real subprocesses)
that is SIGKILLed midway and resumed with no duplicate and no missing key."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_signals
from inrlens import rules
from inrlens.config import DataConfig, NetConfig, TrainConfig
from inrlens.rules import parse_depths
from inrlens.store import read_rows
from inrlens.sweep import (
    CohortTask,
    ExecSpec,
    FitTask,
    SweepSpec,
    chunk_fits,
    deal,
    failure_cause,
    key_dict,
    key_hash,
    load_spec_file,
    make_plan,
    merge_flags,
    parse_data,
    run_config,
    run_sweep,
    spec_from_dict,
)


def write_set(folder: Path, n: int, size: int, channels: int, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(tiny_signals(n, size, channels, seed)):
        arr = ((s.pixels.numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(arr[:, :, 0] if channels == 1 else arr).save(folder / f"img{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sets")
    return {"rgb": write_set(root / "rgb", 5, 16, 3, 0), "gray": write_set(root / "gray", 5, 16, 1, 7)}


def tiny_spec(sets: dict[str, Path], **kw) -> SweepSpec:
    base = dict(data=(f"rgb={sets['rgb']}", f"gray={sets['gray']}"), backbones=("siren",), seeds=(0, 1), n_cohort=2, n_test=2,
                net=NetConfig(width=8, depth=2, ff_features=8), cohort_train=TrainConfig(steps=6, lr=1e-3, log_every=5, target_psnr=30.0),
                train=TrainConfig(steps=4, lr=1e-3, log_every=2), images=DataConfig(size=16), lpips=False)
    base.update(kw)
    return SweepSpec(**base)


def expected_fits(n_src: int, n_tgt: int, n_bb: int, L: int, n_test: int, n_seeds: int) -> int:
    # transfer regimes (none + k = 0..L−1) per source, plus one random-init baseline shared by all sources
    return n_bb * n_tgt * n_test * n_seeds * (n_src * (L + 1) + 1)


def test_parse_and_depths():
    assert parse_data(["a=/x", "b=sample:faces"]) == {"a": "/x", "b": "sample:faces"}
    for bad in (["a"], ["=x"], ["a=x", "a=y"], [], ["a b=x"]):
        with pytest.raises(ValueError):
            parse_data(bad)
    assert parse_depths(["all"], 3) == ["none", 0, 1, 2, "random"]
    assert parse_depths(["2", "none", "2"], 3) == [2, "none"]
    with pytest.raises(ValueError, match="outside"):
        parse_depths(["3"], 3)


def test_plan_counts_keys_and_splits(sets, tmp_path):
    spec = tiny_spec(sets, backbones=("siren", "ffmlp"))
    plan = make_plan(spec, tmp_path)
    assert len(plan.cohorts) == 2 * 2
    assert len(plan.fits) == expected_fits(2, 2, 2, 2, 2, 2)
    keys = [f.key for f in plan.fits]
    assert len(set(keys)) == len(keys)
    for c in plan.cohorts:  # a dataset's cohort images are never its test images
        test_names = {f.image for f in plan.fits if f.target == c.source}
        assert not test_names & set(c.images) and len(c.images) == 2
    ff = next(c for c in plan.cohorts if c.backbone == "ffmlp")
    assert ff.net.ff_sigma == pytest.approx(10.0 * 16 / 256)  # σ scaled with the resolution
    # keys are stable and change with anything that defines a fit
    assert [f.key for f in make_plan(spec, tmp_path).fits] == keys
    other = make_plan(tiny_spec(sets, backbones=("siren", "ffmlp"), train=TrainConfig(steps=5, lr=1e-3, log_every=2)), tmp_path)
    assert not set(keys) & {f.key for f in other.fits}
    # the random-init baseline has no source: one fit per (target, image, seed), not one per source
    rnd = [f for f in plan.fits if f.regime == "random"]
    assert len(rnd) == 2 * 2 * 2 * 2 and all(f.source is None for f in rnd)


def test_chunks_and_deal(sets, tmp_path):
    spec = tiny_spec(sets)
    plan = make_plan(spec, tmp_path)
    chunks = chunk_fits(plan.fits, 3, spec)
    assert sum(len(c) for c in chunks) == len(plan.fits)
    assert all(1 <= len(c) <= 3 for c in chunks)
    for c in chunks:  # one stack: one source, target, regime, depth and shape
        assert len({(f.source, f.target, f.regime, f.freeze, tuple(f.shape)) for f in c}) == 1
    packs = deal(chunks, 4)
    assert len(packs) == 4 and sorted(id(c) for p in packs for c in p) == sorted(id(c) for c in chunks)


def test_spec_files_equal_flags(sets, tmp_path):
    flags = tiny_spec(sets, depths=("none", "1"))
    toml = tmp_path / "s.toml"
    toml.write_text(f"""
backbones = ["siren"]
seeds = [0, 1]
n_cohort = 2
n_test = 2
depths = ["none", 1]
lpips = false
[data]
rgb = "{sets['rgb']}"
gray = "{sets['gray']}"
[net]
width = 8
depth = 2
ff_features = 8
[cohort_train]
steps = 6
lr = 1e-3
log_every = 5
[train]
steps = 4
lr = 1e-3
log_every = 2
[images]
size = 16
[exec]
jobs = 3
""")
    spec, ex = spec_from_dict(load_spec_file(toml))
    assert spec == flags and ex == ExecSpec(jobs=3)
    yml = tmp_path / "s.yaml"
    import yaml

    yml.write_text(yaml.safe_dump(load_spec_file(toml), sort_keys=False))
    assert spec_from_dict(load_spec_file(yml))[0] == flags
    py = tmp_path / "s.py"
    py.write_text("from inrlens.sweep import SweepSpec\nfrom inrlens.config import NetConfig\n"
                  f"SPEC = SweepSpec(data=('rgb={sets['rgb']}',), net=NetConfig(width=8))\n")
    s3, _ = spec_from_dict(load_spec_file(py))
    assert s3.data == (f"rgb={sets['rgb']}",) and s3.net.width == 8
    # flags that differ from the defaults override the file, nested fields one by one
    merged = merge_flags(spec, SweepSpec(seeds=(5,), train=dataclasses.replace(SweepSpec().train, steps=9)))  # as tyro builds it
    assert merged.seeds == (5,) and merged.train.steps == 9 and merged.train.lr == 1e-3 and merged.n_test == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("widht = 3\n")
    with pytest.raises(ValueError, match="unknown sweep field"):
        spec_from_dict(load_spec_file(bad))


def test_debug_sweep_rows_match_direct_fits(sets, tmp_path):
    """In-process sweep: row count, and one chunk's PSNRs equal fitting those members directly."""
    from inrlens.data.samples import resolve
    from inrlens.fit import fit_transfer
    from inrlens.store import load_stack

    spec = tiny_spec(sets, sources=("rgb",), targets=("gray",), depths=("none", "0"))
    run_sweep(spec, ExecSpec(cluster="debug", jobs=2, max_members=4), tmp_path, log=lambda *a: None)
    rows = [r for r in read_rows(tmp_path / "results") if r.get("kind") == "fit"]
    assert len(rows) == 2 * 2 * 2  # 2 test images × 2 seeds × {none, k=0} (random not asked for)
    enc, _ = load_stack(tmp_path / "cohorts" / "rgb_siren")
    plan = make_plan(spec, tmp_path)
    test_imgs = sorted({f.image for f in plan.fits})
    sigs = {s.name: s for s in resolve(str(sets["gray"]), spec.images)}
    _, _, res = fit_transfer(enc, [sigs[n] for n in test_imgs], 0, spec.train, (0, 1), progress=False, with_lpips=False)
    got = {(r["image"], r["seed"]): r["psnr"] for r in rows if r["freeze"] == 0}
    for m in res:
        assert got[(m.image, m.seed)] == pytest.approx(m.psnr, abs=1e-4)
    cohort_rows = [r for r in read_rows(tmp_path / "results") if r.get("kind") == "cohort"]
    assert len(cohort_rows) == 1 and len(cohort_rows[0]["sr_w"]) == 2


def _cli(args: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "inrlens.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def sweep_args(sets: dict[str, Path], out: Path, cluster: str, extra: tuple[str, ...] = ()) -> list[str]:
    return ["sweep", "--out", str(out), "--data", f"rgb={sets['rgb']}", "--data", f"gray={sets['gray']}",
            "--backbones", "siren", "--seeds", "0", "1", "--n-cohort", "2", "--n-test", "2", "--net.width", "8",
            "--net.depth", "2", "--cohort-train.steps", "6", "--cohort-train.lr", "1e-3", "--train.steps", "4",
            "--train.lr", "1e-3", "--images.size", "16", "--no-lpips", "--cluster", cluster, "--jobs", "2", *extra]


def check_complete(out: Path, n_expected: int) -> list[dict]:
    rows = [r for r in read_rows(out / "results") if r.get("kind") == "fit"]
    counts = Counter(r["key"] for r in rows)
    assert not [k for k, c in counts.items() if c > 1], "duplicate keys"
    spec_d = json.loads((out / "run.json").read_text())["spec"]
    spec, _ = spec_from_dict({k: v for k, v in spec_d.items() if k != "hash"})
    planned = {f.key for f in make_plan(spec, out).fits}
    assert len(planned) == n_expected and set(counts) == planned
    return rows


def test_local_sweep_killed_and_resumed(sets, tmp_path):
    """Real subprocesses (LocalExecutor); SIGKILL to the driver and its workers midway; rerun completes."""
    out = tmp_path / "sweep"
    n = expected_fits(2, 2, 1, 2, 2, 2)
    args = sweep_args(sets, out, "local", ("--max-members", "1", "--no-report"))
    p = _cli(args, start_new_session=True)
    deadline = time.time() + 300
    killed = False
    while time.time() < deadline and p.poll() is None:
        rows = [r for r in read_rows(out / "results") if r.get("kind") == "fit"] if (out / "results").exists() else []
        if len(rows) >= 3:
            os.killpg(p.pid, signal.SIGKILL)  # the driver and the LocalExecutor workers (same process group)
            killed = True
            break
        time.sleep(0.2)
    p.wait()
    assert killed, f"sweep ended before it could be killed: {p.stdout.read()}"
    partial = [r for r in read_rows(out / "results") if r.get("kind") == "fit"]
    assert 3 <= len(partial) < n
    p2 = _cli(args)
    log, _ = p2.communicate(timeout=600)
    assert p2.returncode == 0, log
    assert f"{n - len({r['key'] for r in partial})} to run" in log or "to run" in log
    rows = check_complete(out, n)
    assert all(r["status"] == "ok" and r["runtime"]["device"] == "cpu" for r in rows)
    # a third run has nothing left to do
    p3 = _cli(args)
    log3, _ = p3.communicate(timeout=300)
    assert p3.returncode == 0 and f"{n} fits already done, 0 to run" in log3, log3
    assert len([r for r in read_rows(out / "results") if r.get("kind") == "fit"]) == n


def test_sweep_refuses_other_spec_and_bad_input(sets, tmp_path):
    from inrlens.cli import main

    out = tmp_path / "s"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"cmd": "sweep", "spec": {"other": 1}}))
    assert main(sweep_args(sets, out, "debug")) == 2
    assert json.loads((out / "run.json").read_text()) == {"cmd": "sweep", "spec": {"other": 1}}  # untouched
    assert main(["sweep", "--out", str(tmp_path / "t"), "--data", "x=/nonexistent/folder"]) == 2
    assert main(["sweep", "--out", str(tmp_path / "u"), "--data", f"rgb={sets['rgb']}", "--sources", "nope"]) == 2
    assert main(["sweep", "--out", str(tmp_path / "v"), "--data", f"rgb={sets['rgb']}", "--n-cohort", "5"]) == 2


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = subprocess.run(["ps", "-o", "pid=", "--ppid", str(p)], capture_output=True, text=True).stdout.split()
        out += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_local_sweep_worker_killed_then_rerun(sets, tmp_path):
    """SIGKILL to one worker process only: the driver reports the failed job (non-zero exit, one error line per
    job), keeps what the others wrote, and a rerun fills exactly the missing keys."""
    out = tmp_path / "sweep"
    n = expected_fits(2, 2, 1, 2, 2, 2)
    args = sweep_args(sets, out, "local", ("--max-members", "1", "--no-report"))
    p = _cli(args, start_new_session=True)
    deadline = time.time() + 300
    victim = None
    while time.time() < deadline and p.poll() is None and victim is None:
        rows = [r for r in read_rows(out / "results") if r.get("kind") == "fit"] if (out / "results").exists() else []
        if len(rows) >= 2:
            workers = [c for c in _descendants(p.pid) if "submitit.core._submit" in _cmdline(c)]
            if workers:
                victim = workers[0]
                os.kill(victim, signal.SIGKILL)
                break
        time.sleep(0.2)
    try:
        log, _ = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert victim is not None, f"no worker to kill: {log}"
    assert p.returncode != 0 and "failed" in log, log
    p2 = _cli(args)
    log2, _ = p2.communicate(timeout=600)
    assert p2.returncode == 0, log2
    check_complete(out, n)


# ------------------------------------------------------------------------------------------------ keys, tasks
def faces_spec(**kw) -> SweepSpec:
    base = dict(data=("faces=sample:faces",), backbones=("siren", "ffmlp"), seeds=(0, 1), n_cohort=3, n_test=2, depths=("all",),
                net=NetConfig(width=8, depth=2, ff_features=8), cohort_train=TrainConfig(steps=6, lr=1e-3, log_every=5, target_psnr=30.0),
                train=TrainConfig(steps=4, lr=1e-3, log_every=2), images=DataConfig(size=16), lpips=False)
    base.update(kw)
    return SweepSpec(**base)


def pin_sets(root: Path) -> None:
    """Two 5-image datasets (16×16, gray and RGB) from a fixed formula, so that pinned keys do not depend on any
    loader or bundled sample data."""
    for name, ch in (("gray", 1), ("rgb", 3)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(5):
            y, x = np.mgrid[0:16, 0:16]
            a = ((x * (i + 1) * 7 + y * 11 + i * 37) % 256).astype(np.uint8)
            Image.fromarray(a if ch == 1 else np.stack([a, a[::-1], a.T], -1)).save(root / name / f"img{i:02d}.png")


def _pinned(plan) -> tuple[list, dict, str]:
    cohorts = [(c.source, c.backbone, c.key, c.images, c.res, c.grid, c.dir) for c in plan.cohorts]
    fits = {(f.source, f.target, f.backbone, f.depth, f.image, f.seed): (f.lr, f.key) for f in plan.fits}
    return cohorts, fits, hashlib.sha256(json.dumps([f.key for f in plan.fits]).encode()).hexdigest()[:16]


def test_keys_pinned_to_earlier_versions(tmp_path, monkeypatch):
    """Keys must not change, or existing run folders would redo every fit. The first values below were computed with
    the single-module sweep (src/inrlens/grid.py and the configs of commit 91005f4, before the sweep became the
    inrlens.sweep package and before DataConfig gained `scale`); never update them to make this test pass.

    One deliberate change since: images enter keys by their pixel digest (Signal.digest), not by name, so that two
    images with one name are two fits and one image under two names is one. With the digest read as the name the
    plan must still give exactly the earlier keys (so nothing else changed); the second set of pins is the same
    plans with digests, computed once by the version that made that change (after the first check passed)."""
    from inrlens.data import Signal

    pin_sets(tmp_path)
    monkeypatch.chdir(tmp_path)  # dataset paths are part of the cohort keys: relative paths keep them fixed
    spec = SweepSpec(data=("gray=gray", "rgb=rgb"), backbones=("siren", "ffmlp"), seeds=(0, 1), n_cohort=2, n_test=2,
                     depths=("all",), net=NetConfig(width=8, depth=2, ff_features=8),
                     cohort_train=TrainConfig(steps=6, lr=1e-3, log_every=5, target_psnr=30.0),
                     train=TrainConfig(steps=4, lr=1e-3, log_every=2), images=DataConfig(size=16), lpips=False)
    spec2 = dataclasses.replace(spec, train=TrainConfig(steps=4), images=DataConfig())  # default lrs, native image size
    with monkeypatch.context() as m:
        m.setattr(Signal, "digest", property(lambda s: s.name))  # the keys as images entered them by name
        cohorts, fits, every = _pinned(make_plan(spec, Path("run")))
        assert cohorts == [
            ("gray", "siren", "1195d5f8acd8318f", ("img02", "img01"), 16, (16, 16), "run/cohorts/gray_siren"),
            ("gray", "ffmlp", "d346d87d604eff30", ("img02", "img01"), 16, (16, 16), "run/cohorts/gray_ffmlp"),
            ("rgb", "siren", "2c6173dbf6ecf1ce", ("img02", "img01"), 16, (16, 16), "run/cohorts/rgb_siren"),
            ("rgb", "ffmlp", "d08b8e505c94e810", ("img02", "img01"), 16, (16, 16), "run/cohorts/rgb_ffmlp")]
        assert fits[("gray", "gray", "siren", "none", "img00", 0)] == (1e-3, "be1e530112b36b11")
        assert fits[("rgb", "gray", "siren", 0, "img00", 0)] == (1e-3, "fca2e0af9e42ac4e")
        assert fits[("rgb", "rgb", "ffmlp", 1, "img00", 1)] == (1e-3, "be22b59ca343f3e6")
        assert fits[(None, "gray", "siren", "random", "img00", 0)] == (1e-4, "2fffa3c163b01aed")
        assert fits[(None, "rgb", "ffmlp", "random", "img04", 1)] == (1e-3, "8c4737013385b99a")
        # every key, in plan order: 2 backbones × 2 targets × 2 images × 2 seeds × (2 sources × {none, 0, 1} + random)
        assert len(fits) == 112 and every == "7e39f5d51af15625"
        _, fits, every = _pinned(make_plan(spec2, Path("run")))
        assert fits[("gray", "gray", "siren", "none", "img00", 0)] == (1e-4, "1ea6ed88e5b6fc7a")
        assert fits[(None, "gray", "siren", "random", "img00", 0)] == (1e-4, "ec25607605694ed0")
        assert fits[(None, "gray", "ffmlp", "random", "img00", 0)] == (1e-3, "c188db6cc1a91583")
        assert every == "8cb43dec6a53affe"
    # the same plans with images keyed by their pixel digests
    plan = make_plan(spec, Path("run"))
    cohorts, fits, every = _pinned(plan)
    assert cohorts == [
        ("gray", "siren", "eece6ee09037ec36", ("img02", "img01"), 16, (16, 16), "run/cohorts/gray_siren"),
        ("gray", "ffmlp", "529b036f69b43549", ("img02", "img01"), 16, (16, 16), "run/cohorts/gray_ffmlp"),
        ("rgb", "siren", "3f083d9a15c99410", ("img02", "img01"), 16, (16, 16), "run/cohorts/rgb_siren"),
        ("rgb", "ffmlp", "85c3818bcdc5bb07", ("img02", "img01"), 16, (16, 16), "run/cohorts/rgb_ffmlp")]
    for c in plan.cohorts:  # the digests are the pixels' (an independent float32 recomputation from the PNG)
        assert c.digests == tuple(_ref_digest(tmp_path / c.source / f"{n}.png") for n in c.images)
    assert {f.image_digest for f in plan.fits if f.image == "img00" and f.target == "rgb"} == {_ref_digest(tmp_path / "rgb" / "img00.png")}
    assert fits[("gray", "gray", "siren", "none", "img00", 0)] == (1e-3, "511654066a4abc5e")
    assert fits[("rgb", "gray", "siren", 0, "img00", 0)] == (1e-3, "03dd0f741c19146c")
    assert fits[("rgb", "rgb", "ffmlp", 1, "img00", 1)] == (1e-3, "05a995b0421a5f07")
    assert fits[(None, "gray", "siren", "random", "img00", 0)] == (1e-4, "84d60f1497528a12")
    assert fits[(None, "rgb", "ffmlp", "random", "img04", 1)] == (1e-3, "8060b522c070379b")
    assert len(fits) == 112 and every == "b274fdd7a3c4e0b8"
    _, fits, every = _pinned(make_plan(spec2, Path("run")))
    assert fits[("gray", "gray", "siren", "none", "img00", 0)] == (1e-4, "f73d9de35bfb2c8c")
    assert fits[(None, "gray", "siren", "random", "img00", 0)] == (1e-4, "a0684bc6204ddfdd")
    assert fits[(None, "gray", "ffmlp", "random", "img00", 0)] == (1e-3, "0c4df527ae9ff463")
    assert every == "21ccf200ec1292a7"


def _ref_digest(png: Path) -> str:
    """Signal.digest recomputed by hand: 8-bit PNG → float32 in [-1, 1] (H, W, C), sha256 of dtype|shape|bytes."""
    a = np.asarray(Image.open(png), dtype=np.float64) / 255.0
    a = (a[:, :, None] if a.ndim == 2 else a).astype(np.float32)
    a = np.ascontiguousarray(a * np.float32(2.0) - np.float32(1.0))
    h = hashlib.sha256(f"<f4|{'x'.join(map(str, a.shape))}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:16]


def test_fields_added_later_enter_keys_only_when_set():
    """A config field added after the keys were fixed (DataConfig.scale) is left out of keys and run.json while
    it holds its default, so run folders written before it existed keep resuming."""
    old = {"size": None, "square": False, "channels": "auto", "max_pixels": 4096 * 4096, "on_bad_file": "error"}
    assert key_dict(DataConfig()) == old
    assert key_dict(DataConfig(scale=0.5)) == dict(old, scale=0.5)
    assert key_hash(DataConfig(scale=0.5)) != key_hash(DataConfig())
    rc = run_config(SweepSpec(data=("a=/x",)))
    assert rc["cmd"] == "sweep" and rc["spec"]["images"] == old and rc["spec"]["data"] == ["a=/x"]
    assert spec_from_dict(rc["spec"])[0] == SweepSpec(data=("a=/x",))  # what run.json holds loads back


def test_tasks_pickle_round_trip(tmp_path):
    plan = make_plan(faces_spec(), tmp_path)
    assert pickle.loads(pickle.dumps(plan)) == plan
    c, f = plan.cohorts[0], plan.fits[0]
    assert isinstance(c, CohortTask) and isinstance(f, FitTask)
    c2, f2 = pickle.loads(pickle.dumps(c)), pickle.loads(pickle.dumps(f))
    assert (c2.key, c2.images, c2.net, c2.train, c2.data, c2.grid) == (c.key, c.images, c.net, c.train, c.data, c.grid)
    assert (f2.key, f2.shape, f2.cohort_dir, f2.depth) == (f.key, f.shape, f.cohort_dir, f.depth)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.lr = 1.0  # type: ignore[misc]


def test_baseline_and_transfer_lr_match_the_transfer_command(tmp_path):
    """`inrlens transfer` resolves its random-init baseline with rules.lr_for('random', ...) and its freeze-k fits
    with rules.lr_for('transfer', ...); the sweep plan gives the same values for both backbones."""
    single_lr = {"siren": 1e-4, "ffmlp": 1e-3}  # the backbones' single-signal lrs (docs/protocol.md)
    for kw, want_random, want_transfer in (({}, None, 1e-3), ({"random_lr": 5e-3, "train": TrainConfig(steps=4)}, 5e-3, 1e-4)):
        spec = faces_spec(depths=("none", "random"), **kw)
        plan = make_plan(spec, tmp_path)
        for bb in ("siren", "ffmlp"):
            rnd = {f.lr for f in plan.fits if f.backbone == bb and f.regime == "random"}
            tr = {f.lr for f in plan.fits if f.backbone == bb and f.regime == "transfer"}
            expect = want_random if want_random is not None else single_lr[bb]
            assert rnd == {rules.lr_for("random", bb, spec.random_lr)} == {expect}
            assert tr == {rules.lr_for("transfer", bb, spec.train.lr)} == {want_transfer}


# ------------------------------------------------------------------------------------------------ bad input
def test_spec_file_bad_values_are_one_line_errors(tmp_path):
    from inrlens.cli import main

    cases = {
        '[net]\nwidth = "abc"\n': "net.width: expected an integer, got 'abc'",
        'seeds = [0, 0]\n': "seeds repeat",
        'n_test = 0\n': "n_test must be >= 1, got 0",
        'backbones = ["siren", "resnet"]\n': "unknown 'resnet'",
        '[exec]\njobs = 0\n': "exec: jobs must be >= 1, got 0",
        '[exec]\nmax_members = 0\n': "max_members must be >= 1",
        '[exec]\nthreads = "2"\n': "exec.threads: expected an integer, got '2'",
        '[images]\nsizee = 3\n': "images: unknown field(s) sizee",
    }
    for text, want in cases.items():
        f = tmp_path / "sweep.toml"
        f.write_text(text)
        with pytest.raises(ValueError) as e:
            spec_from_dict(load_spec_file(f), source="sweep.toml")
        msg = str(e.value)
        assert msg.startswith("sweep.toml: ") and want in msg and "\n" not in msg, msg
    f.write_text('[net]\nwidth = "abc"\n')
    with pytest.raises(ValueError) as e:
        spec_from_dict(load_spec_file(f), source="sweep.toml")
    assert str(e.value) == "sweep.toml: net.width: expected an integer, got 'abc'"
    out = tmp_path / "never"
    assert main(["sweep", "--config", str(f), "--out", str(out)]) == 2
    assert main(["sweep", "--data", "faces=sample:faces", "--max-members", "0", "--out", str(out)]) == 2
    assert main(["sweep", "--data", "faces=sample:faces", "--depths", "7", "--out", str(out)]) == 2
    assert not out.exists()  # refused before the run folder was written
    assert main(["rank", str(tmp_path), "--grid", "0", "8"]) == 2


def test_exec_and_sweep_spec_validation():
    for kw in ({"jobs": 0}, {"threads": 0}, {"timeout_min": 0}, {"max_members": 0}, {"max_members": -3}):
        with pytest.raises(ValueError, match=f"{next(iter(kw))} must be >= 1"):
            ExecSpec(**kw)
    assert ExecSpec(max_members=None).max_members is None and ExecSpec(max_members=1).max_members == 1
    for kw, msg in (({"n_cohort": 0}, "n_cohort must be >= 1"), ({"seeds": ()}, "at least one seed"),
                    ({"seeds": (1, 2, 1)}, "seeds repeat"), ({"backbones": ("siren", "nope")}, "unknown 'nope'"),
                    ({"backbones": ()}, "at least one backbone"), ({"depths": ("9",)}, "outside")):
        with pytest.raises(ValueError, match=msg):
            SweepSpec(**kw)


# ------------------------------------------------------------------------------------------------ failing jobs
SUBMITIT_FAILURE = ('Job (task=0) failed during processing with trace:\n----------------------\nTraceback (most recent call last):\n'
                    '  File "/x/submitit/core/submission.py", line 55, in process_job\n    result = delayed.result()\n'
                    '             ^^^^^^^^^^^^^^^^\n  File "<dynamic-code>", line 3, in f\nValueError: bad thing 3\nsecond line\n\n'
                    "----------------------\nYou can check full logs with 'job.stderr(0)' and 'job.stdout(0)'or at paths:\n"
                    "  - /tmp/sbt/4657_0_log.err\n  - /tmp/sbt/4657_0_log.out")


def test_failure_cause_is_the_exception_line():
    assert failure_cause(RuntimeError(SUBMITIT_FAILURE)) == "ValueError: bad thing 3"
    killed = RuntimeError("Job 12_0 (task: 0) with path /r/12_0_result.pkl\nhas not produced any output (state: FINISHED)\n"
                          "Error stream produced:\n----------------------------------------\n")
    assert "state: FINISHED" in failure_cause(killed) and "---" not in failure_cause(killed)
    assert failure_cause(RuntimeError("boom\n-----")) == "RuntimeError: boom"
    assert failure_cause(ValueError("")) == "ValueError"


def test_debug_cluster_failing_job_is_reported_not_debugged(sets, tmp_path, monkeypatch):
    """A job that raises under the in-process cluster: one error line with the cause, the other jobs run, and
    nothing reads stdin (submitit's DebugExecutor opened pdb here)."""
    import inrlens.fit

    class NoInput:
        def __getattr__(self, name):
            raise AssertionError("stdin was read")

    def boom(*a, **k):
        raise RuntimeError("boom from the test")

    monkeypatch.setattr(sys, "stdin", NoInput())
    monkeypatch.setattr(inrlens.fit, "fit_transfer", boom)
    spec = tiny_spec(sets, sources=("rgb",), targets=("gray",), depths=("none", "random"))
    res = run_sweep(spec, ExecSpec(cluster="debug", jobs=2, max_members=4), tmp_path, log=lambda *a: None)
    assert len(res["errors"]) == 1 and res["errors"][0].endswith("failed: RuntimeError: boom from the test"), res["errors"]
    rows = [r for r in read_rows(tmp_path / "results") if r.get("kind") == "fit"]
    assert res["fits"] == 8 and res["done"] == len(rows) == 4 and {r["regime"] for r in rows} == {"random"}


FAILING_SWEEP = """
import sys
import inrlens.fit

def boom(*a, **k):
    raise RuntimeError("boom from the test")

inrlens.fit.fit_transfer = boom
from inrlens.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_debug_cluster_failure_exits_without_waiting_for_input(tmp_path):
    """`inrlens sweep --cluster debug` whose fit job raises: non-zero exit, one error line naming the cause, a
    hint naming a command that exists, no debugger prompt, even with a stdin that never ends."""
    script = tmp_path / "failing_sweep.py"
    script.write_text(FAILING_SWEEP)
    args = ["sweep", "--out", str(tmp_path / "s"), "--data", "faces=sample:faces", "--backbones", "siren", "--depths", "none",
            "--seeds", "0", "--n-cohort", "2", "--n-test", "1", "--net.width", "8", "--net.depth", "2", "--cohort-train.steps", "3",
            "--train.steps", "2", "--images.size", "16", "--no-lpips", "--cluster", "debug", "--jobs", "1", "--no-report"]
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, str(script), *args], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)  # stdin left open: a prompt would wait forever
    try:
        log, _ = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode not in (0, None), log
    errors = [ln for ln in log.splitlines() if ln.startswith("inrlens: error:")]
    assert len(errors) == 1 and errors[0].endswith("failed: RuntimeError: boom from the test") and "(Pdb)" not in log, log
    assert f"inrlens sweep --out {tmp_path / 's'}" in log and "--resume" not in log, log
