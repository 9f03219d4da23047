"""One writer per run folder: real ``inrlens`` processes racing for the same ``--out``.

The process that prepares a run folder owns it (an exclusive ``flock`` on ``.inrlens.lock``) until it exits; a
second process is refused with one line naming the folder and the owner's pid, exit status 2, and writes
nothing. A SIGKILLed owner never blocks the next writer; within one process the lock is re-entrant.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inrlens import store
from inrlens.store import LOCK_NAME, RESULTS_NAME, RUN_NAME, RunConflict, acquire_run_lock, iter_rows, prepare_run, release_run_lock

ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore", TQDM_DISABLE="1")
TIMEOUT = 300

# A child that owns a run folder (prepare_run with a config given as JSON, or just the lock) and sleeps until
# killed. It prints "owned" once the lock is held.
HOLDER = textwrap.dedent("""
    import json, sys, time
    from inrlens.store import acquire_run_lock, prepare_run
    folder, config = sys.argv[1], sys.argv[2]
    if config == "-":
        acquire_run_lock(folder)
    else:
        prepare_run(folder, json.loads(config), resume=True)
    print("owned", flush=True)
    time.sleep(600)
""")

# `inrlens ...` that stops right after preparing its run folder until the file $INRLENS_GATE exists: the
# owner of the folder is then known to be mid-run while the other process tries the same folder.
GATED_CLI = textwrap.dedent("""
    import os, sys, time
    import inrlens.commands.core, inrlens.commands.study, inrlens.workflows
    from inrlens import store
    real = store.prepare_run

    def gated(*a, **k):
        out = real(*a, **k)
        while not os.path.exists(os.environ["INRLENS_GATE"]):
            time.sleep(0.05)
        return out

    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").startswith("inrlens") and getattr(mod, "prepare_run", None) is real:
            mod.prepare_run = gated
    from inrlens.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.fixture()
def image(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "img.png"
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    return path


def fit_args(image: Path, out: Path, width: int = 8) -> list[str]:
    return ["fit", str(image), "--out", str(out), "--net.width", str(width), "--net.depth", "2", "--train.steps", "20",
            "--seeds", "0", "1", "--no-lpips", "--train.device", "cpu"]


def cli(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "inrlens.cli", *args], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def holder(tmp_path: Path, folder: Path, config: dict | None = None) -> subprocess.Popen:
    """A child owning ``folder``; returns once it holds the lock."""
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    p = subprocess.Popen([sys.executable, str(script), str(folder), "-" if config is None else json.dumps(config)],
                         env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if line.strip() != "owned":
        p.kill()
        _, err = p.communicate(timeout=TIMEOUT)
        raise AssertionError(f"holder did not take the lock: {line!r} {err[-2000:]}")
    return p


def kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
    p.communicate(timeout=TIMEOUT)  # waits and closes the pipes


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under folder (hidden ones included): bytes and mtime (ns)."""
    return {str(f.relative_to(folder)): (f.read_bytes(), f.stat().st_mtime_ns) for f in sorted(folder.rglob("*"))
            if f.is_file()} | {str(d.relative_to(folder)) + "/": (b"", 0) for d in folder.rglob("*") if d.is_dir()}


def refusal(err: str, folder: Path, pid: int) -> None:
    """err is exactly one line: the conflict naming folder and the owner's pid."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    m = re.fullmatch(r"inrlens: error: (.*): another inrlens process \(pid (\d+)(?: on [^,]+)?, started [0-9: -]+: (.+)\) "
                     r"is writing to this run folder; wait for it to finish or choose another --out", lines[0])
    assert m, lines[0]
    assert m.group(1) == str(folder)
    assert int(m.group(2)) == pid


def keys_once(path: Path) -> list[dict]:
    rows = list(iter_rows(path))
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)), "a key was written twice"
    return rows


# ------------------------------------------------------------------------------------------------ real races
@pytest.mark.parametrize("widths", [(8, 8), (8, 12)], ids=["same-config", "different-widths"])
def test_two_fits_started_together_one_wins(image, tmp_path, widths):
    out = tmp_path / "run"
    gate = tmp_path / "go"
    script = tmp_path / "gated.py"
    script.write_text(GATED_CLI)
    env = dict(ENV, INRLENS_GATE=str(gate))
    procs = [subprocess.Popen([sys.executable, str(script), *fit_args(image, out, w)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for w in widths]
    # The winner waits at the gate holding the folder; the loser must give up on its own meanwhile.
    deadline = time.monotonic() + TIMEOUT
    while all(p.poll() is None for p in procs):
        assert time.monotonic() < deadline, "neither process finished"
        time.sleep(0.1)
    loser = next(i for i, p in enumerate(procs) if p.poll() is not None)
    winner = 1 - loser
    _, err = procs[loser].communicate(timeout=TIMEOUT)
    assert procs[loser].returncode == 2, err
    refusal(err, out, procs[winner].pid)
    gate.touch()
    _, werr = procs[winner].communicate(timeout=TIMEOUT)
    assert procs[winner].returncode == 0, werr[-2000:]

    run = json.loads((out / RUN_NAME).read_text())
    assert run["cmd"] == "fit" and run["net"]["width"] == widths[winner]
    rows = keys_once(out / RESULTS_NAME)
    assert len(rows) == 2  # one image × two seeds, the winner's only
    assert {r["net"]["width"] for r in rows} == {widths[winner]}
    assert {r["seed"] for r in rows} == {0, 1}
    ckpt = json.loads((out / "models" / "16x16" / store.CFG_NAME).read_text())
    assert ckpt["net"]["width"] == widths[winner]
    owner = json.loads((out / LOCK_NAME).read_text())
    assert owner["pid"] == procs[winner].pid


def test_refused_fit_modifies_nothing(image, tmp_path):
    out = tmp_path / "run"
    first = cli(fit_args(image, out))
    _, err = first.communicate(timeout=TIMEOUT)
    assert first.returncode == 0, err[-2000:]
    rows_before = keys_once(out / RESULTS_NAME)
    h = holder(tmp_path, out)  # another process owns the finished run now (as a --resume in progress would)
    try:
        before = snapshot(out)
        for args in (fit_args(image, out), [*fit_args(image, out, 12), "--overwrite"], [*fit_args(image, out), "--resume"]):
            p = cli(args)
            _, err = p.communicate(timeout=TIMEOUT)
            assert p.returncode == 2, err
            refusal(err, out, h.pid)
            assert snapshot(out) == before
    finally:
        kill(h)
    assert keys_once(out / RESULTS_NAME) == rows_before


def test_second_sweep_on_a_running_sweeps_folder_is_refused(tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "results").mkdir()
    (out / "results" / "fits-1.jsonl").write_text('{"key": "a", "kind": "fit"}\n')
    h = holder(tmp_path, out, {"cmd": "sweep", "spec": {"stand-in": True}})
    try:
        before = snapshot(out)
        args = ["sweep", "--out", str(out), "--data", "faces=sample:faces", "--backbones", "siren", "--depths", "none",
                "--seeds", "0", "--n-cohort", "2", "--n-test", "1", "--net.width", "8", "--net.depth", "2",
                "--cohort-train.steps", "5", "--train.steps", "5", "--images.size", "16", "--no-lpips", "--cluster", "debug",
                "--jobs", "1", "--no-report"]
        for extra in ([], ["--overwrite"]):
            p = cli([*args, *extra])
            _, err = p.communicate(timeout=TIMEOUT)
            assert p.returncode == 2, err
            refusal(err, out, h.pid)
            assert snapshot(out) == before
    finally:
        kill(h)


# ------------------------------------------------------------------------------------------------ stale locks
def test_sigkilled_owner_does_not_block_the_next_writer(tmp_path):
    out = tmp_path / "run"
    h = holder(tmp_path, out, {"cmd": "fit", "x": 1})
    try:
        with pytest.raises(RunConflict) as e:
            prepare_run(out, {"cmd": "fit", "x": 1}, resume=True)
        assert f"(pid {h.pid}, started " in str(e.value) and str(e.value).startswith(f"{out}: another inrlens process")
        assert "\n" not in str(e.value)
    finally:
        kill(h)
    assert h.returncode == -signal.SIGKILL
    assert (out / LOCK_NAME).exists()  # the dead owner's lock file is still there, and worth nothing
    try:
        assert prepare_run(out, {"cmd": "fit", "x": 1}, resume=True) == out
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
    finally:
        assert release_run_lock(out)


def test_owner_details_missing_or_stale_give_the_plain_message(tmp_path):
    """An owner that has not written its details yet, or details naming a dead process of this host (left by an
    earlier owner), never put a wrong pid in the message: after a short wait it is the message without details."""
    import socket

    out = tmp_path / "run"
    out.mkdir()
    h = holder(tmp_path, out)
    try:
        dead = subprocess.Popen(["true"])
        dead.wait()
        for text in ("", json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "x", "cmd": "old"})):
            (out / LOCK_NAME).write_text(text)  # same file (inode) the holder has locked
            t0 = time.monotonic()
            with pytest.raises(RunConflict) as e:
                acquire_run_lock(out)
            assert str(e.value) == (f"{out}: another inrlens process is writing to this run folder; wait for it to finish "
                                    "or choose another --out")
            assert time.monotonic() - t0 >= 1.5  # it waited for the details
        assert (out / LOCK_NAME).read_text() == text  # the refused caller wrote nothing
    finally:
        kill(h)


# ------------------------------------------------------------------------------------------------ one process
def child_tries(tmp_path: Path, folder: Path) -> str:
    """'ok' when a fresh process can take folder's lock, else the RunConflict message."""
    code = ("import sys\nfrom inrlens.store import RunConflict, acquire_run_lock\n"
            "try:\n    acquire_run_lock(sys.argv[1])\nexcept RunConflict as e:\n    print(e)\nelse:\n    print('ok')\n")
    p = subprocess.run([sys.executable, "-c", code, str(folder)], env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout.strip()


def test_reentrant_within_one_process(tmp_path):
    run = tmp_path / "run"
    try:
        prepare_run(run, {"cmd": "reproduce", "a": 1})
        prepare_run(run / "sweep", {"cmd": "sweep", "b": 2}, resume=True)  # a reproduce run prepares both
        prepare_run(run, {"cmd": "reproduce", "a": 1}, resume=True)  # the same folder again: no deadlock, no error
        assert {run.resolve(), (run / "sweep").resolve()} <= set(store.held_run_locks())
        with acquire_run_lock(run) as hold:
            assert hold.held and not hold.fresh
        assert not hold.held
        with pytest.raises(RunConflict, match="different run"):  # a refused re-prepare keeps the process's own hold
            prepare_run(run, {"cmd": "reproduce", "a": 2}, resume=True)
        msg = child_tries(tmp_path, run)
        assert msg.startswith(f"{run}: another inrlens process (pid {os.getpid()}, started "), msg
        assert child_tries(tmp_path, run / "sweep").startswith(f"{run / 'sweep'}: another inrlens process")
    finally:
        assert release_run_lock(run) and release_run_lock(run / "sweep")
    assert not release_run_lock(run)
    assert child_tries(tmp_path, run) == "ok"  # released: the folder is free for another process


def test_same_folder_through_another_path_is_the_same_lock(tmp_path):
    real = tmp_path / "real"
    link = tmp_path / "link"
    real.mkdir()
    link.symlink_to(real, target_is_directory=True)
    try:
        first = acquire_run_lock(real)
        second = acquire_run_lock(link)
        assert first.fresh and not second.fresh
        assert child_tries(tmp_path, link).startswith(f"{link}: another inrlens process (pid {os.getpid()},")
    finally:
        release_run_lock(real)


# ------------------------------------------------------------------------------------------------ nothing written
def test_a_failed_prepare_removes_the_folder_it_created(tmp_path, monkeypatch):
    out = tmp_path / "new" / "run"

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.runs, "atomic_write_json", disk_full)  # the module prepare_run lives in
    with pytest.raises(OSError, match="No space"):
        prepare_run(out, {"cmd": "fit"})
    assert not (tmp_path / "new").exists()
    assert not release_run_lock(out)  # not held either


def test_a_refused_prepare_leaves_an_older_run_folder_as_it_was(tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / RUN_NAME).write_text(json.dumps({"cmd": "fit", "x": 1}))  # written before run folders had a lock file
    (out / RESULTS_NAME).write_text('{"key": "a"}\n')
    before = snapshot(out)
    with pytest.raises(RunConflict, match="different run"):
        prepare_run(out, {"cmd": "fit", "x": 2})
    assert snapshot(out) == before and not (out / LOCK_NAME).exists()
    assert not release_run_lock(out)
    # a lock file left by an earlier owner gets its bytes back too
    (out / LOCK_NAME).write_text('{"pid": 1}\n')
    before = snapshot(out)
    with pytest.raises(RunConflict, match="different run"):
        prepare_run(out, {"cmd": "fit", "x": 2})
    assert {k: v[0] for k, v in snapshot(out).items()} == {k: v[0] for k, v in before.items()}
    assert not release_run_lock(out)


def test_bad_config_fails_before_the_folder_exists(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TypeError):
        prepare_run(out, {"cmd": "fit", "x": object()})
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ jobs
def test_sweep_jobs_never_take_the_lock():
    """The process that prepared a sweep owns its folder; its jobs (submitit workers) write under that
    ownership. A job that prepared the folder or took the lock would be refused by its own parent."""
    import inspect

    from inrlens.sweep import jobs

    src = inspect.getsource(jobs)
    assert "prepare_run" not in src and "acquire_run_lock" not in src


# ------------------------------------------------------------------------------------------------ SAE runs
def test_ablate_refused_while_another_process_owns_the_sae_run_and_no_duplicate_rows(image, tmp_path, capsys):
    """`inrlens ablate` adds files to an SAE run without preparing it: it takes the folder's lock all the same.
    A layer given twice (or an ablation rerun) writes each key once."""
    from inrlens.cli import main

    assert main(fit_args(image, tmp_path / "fit")) == 0
    run = tmp_path / "sae"
    assert main(["sae", str(tmp_path / "fit" / "models" / "16x16"), str(image), "--layers", "1", "1", "--sae.n", "16",
                 "--sae.k", "2", "--sae.steps", "10", "--sae.batch", "64", "--device", "cpu", "--out", str(run)]) == 0
    rows = keys_once(run / RESULTS_NAME)
    assert [(r["layer"], r["n"], r["k"]) for r in rows] == [(1, 16, 2)]
    for folder in store.held_run_locks():  # as if this process had exited
        release_run_lock(folder)
    capsys.readouterr()
    h = holder(tmp_path, run)
    try:
        before = snapshot(run)
        assert main(["ablate", str(run), "--layers", "1", "--top", "2", "--device", "cpu"]) == 2
        refusal(capsys.readouterr().err, run, h.pid)
        assert snapshot(run) == before
    finally:
        kill(h)
    assert main(["ablate", str(run), "--layers", "1", "1", "--top", "2", "--device", "cpu"]) == 0
    assert main(["ablate", str(run), "--layers", "1", "--top", "2", "--device", "cpu"]) == 0
    assert len(keys_once(run / "ablations.jsonl")) == 2


def test_cohort_retrained_after_its_folder_was_lost_writes_its_key_once(tmp_path):
    import shutil

    from inrlens.config import DataConfig, NetConfig, TrainConfig
    from inrlens.sweep import SweepSpec, make_plan
    from inrlens.sweep.jobs import train_cohort_job

    spec = SweepSpec(data=("faces=sample:faces",), backbones=("siren",), depths=("none",), seeds=(0,), n_cohort=2, n_test=1,
                     net=NetConfig(width=8, depth=2), cohort_train=TrainConfig(steps=5, lr=1e-3, log_every=5),
                     train=TrainConfig(steps=4, lr=1e-3, log_every=2), images=DataConfig(size=16), lpips=False)
    plan = make_plan(spec, tmp_path)
    cohort = plan.cohorts[0]
    results = tmp_path / "results"
    assert train_cohort_job(cohort, str(results))["status"] == "trained"
    assert train_cohort_job(cohort, str(results))["status"] == "cached"
    shutil.rmtree(cohort.dir)  # lost (deleted by hand): retrained on the next run
    assert train_cohort_job(cohort, str(results))["status"] == "trained"
    rows = store.read_rows(results)
    assert [r["key"] for r in rows] == [cohort.key]
