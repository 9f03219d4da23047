"""Sweep grid: expansion, keys, splits, chunking, spec files, and a tiny real sweep through submitit's
LocalExecutor (real subprocesses) that is SIGKILLed midway and resumed with no duplicate and no missing key."""

from __future__ import annotations

import dataclasses
import json
import os
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
from inrlens.config import NetConfig, TrainConfig, DataConfig
from inrlens.grid import (ExecSpec, SweepSpec, chunk_fits, deal, depth_list, load_spec_file, make_plan, merge_flags,
                          parse_data, run_sweep, spec_from_dict)
from inrlens.store import read_rows


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
    assert depth_list(["all"], 3) == ["none", 0, 1, 2, "random"]
    assert depth_list(["2", "none", "2"], 3) == [2, "none"]
    with pytest.raises(ValueError, match="outside"):
        depth_list(["3"], 3)


def test_plan_counts_keys_and_splits(sets, tmp_path):
    spec = tiny_spec(sets, backbones=("siren", "ffmlp"))
    plan = make_plan(spec, tmp_path)
    assert len(plan.cohorts) == 2 * 2
    assert len(plan.fits) == expected_fits(2, 2, 2, 2, 2, 2)
    keys = [f["key"] for f in plan.fits]
    assert len(set(keys)) == len(keys)
    for c in plan.cohorts:  # a dataset's cohort images are never its test images
        test_names = {f["image"] for f in plan.fits if f["target"] == c["source"]}
        assert not test_names & set(c["images"]) and len(c["images"]) == 2
    ff = next(c for c in plan.cohorts if c["backbone"] == "ffmlp")
    assert ff["net"]["ff_sigma"] == pytest.approx(10.0 * 16 / 256)  # σ scaled with the resolution
    # keys are stable and change with anything that defines a fit
    assert [f["key"] for f in make_plan(spec, tmp_path).fits] == keys
    other = make_plan(tiny_spec(sets, backbones=("siren", "ffmlp"), train=TrainConfig(steps=5, lr=1e-3, log_every=2)), tmp_path)
    assert not set(keys) & {f["key"] for f in other.fits}
    # the random-init baseline has no source: one fit per (target, image, seed), not one per source
    rnd = [f for f in plan.fits if f["regime"] == "random"]
    assert len(rnd) == 2 * 2 * 2 * 2 and all(f["source"] is None for f in rnd)


def test_chunks_and_deal(sets, tmp_path):
    spec = tiny_spec(sets)
    plan = make_plan(spec, tmp_path)
    chunks = chunk_fits(plan.fits, 3, spec)
    assert sum(len(c) for c in chunks) == len(plan.fits)
    assert all(1 <= len(c) <= 3 for c in chunks)
    for c in chunks:  # one stack: one source, target, regime, depth and shape
        assert len({(f["source"], f["target"], f["regime"], f["freeze"], tuple(f["shape"])) for f in c}) == 1
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
    py.write_text("from inrlens.grid import SweepSpec\nfrom inrlens.config import NetConfig\n"
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
    from inrlens.fit import fit_transfer
    from inrlens.data.samples import resolve
    from inrlens.store import load_stack

    spec = tiny_spec(sets, sources=("rgb",), targets=("gray",), depths=("none", "0"))
    run_sweep(spec, ExecSpec(cluster="debug", jobs=2, max_members=4), tmp_path, log=lambda *a: None)
    rows = [r for r in read_rows(tmp_path / "results") if r.get("kind") == "fit"]
    assert len(rows) == 2 * 2 * 2  # 2 test images × 2 seeds × {none, k=0} (random not asked for)
    enc, _ = load_stack(tmp_path / "cohorts" / "rgb_siren")
    plan = make_plan(spec, tmp_path)
    test_imgs = sorted({f["image"] for f in plan.fits})
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
    planned = {f["key"] for f in make_plan(spec, out).fits}
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
