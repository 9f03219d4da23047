"""Interrupts stop everything: Ctrl-C (SIGINT to the whole process group, as a terminal sends it) or SIGTERM (to
the command alone, as `kill` or a scheduler sends it) during `inrlens sweep` / `inrlens reproduce` with local
jobs cancels every job, leaves no worker process alive, prints one line saying how to continue (exit 130 / 143),
and a rerun started right after writes every planned key exactly once.

Real processes on tiny problems (16 px noise images, width 8). Worker processes are found by their command
line, which names the run folder's submitit folder (``python -m submitit.local._local RUN/submitit`` and the
worker ``python -u -m submitit.core._submit RUN/submitit``), scanned in /proc.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from inrlens.config import DataConfig, NetConfig, TrainConfig
from inrlens.sweep import ExecSpec, SweepCancelled, SweepSpec, make_plan, run_config, run_sweep, spec_from_dict

pytestmark = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc (Linux)")

ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore", TQDM_DISABLE="1")
NOISE = "noise:uniform:n=14:size=16"
SWEEP_LINE = "finished fits are kept — rerun the same command to continue"
TIMEOUT = 240


# ------------------------------------------------------------------------------------------------ helpers
def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process (zombies excluded) whose command line contains ``text``."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmd and state not in ("Z", "X"):
            out.append((int(d.name), cmd.strip()))
    return out


def sweep_args(out: Path, steps: int = 200) -> list[str]:
    # depth 2 → none, k = 0, 1, random; 3 test images × 2 seeds → 24 fits, one per chunk, dealt over 2 jobs
    return ["sweep", "--out", str(out), "--data", f"u={NOISE}", "--backbones", "siren", "--seeds", "0", "1",
            "--n-cohort", "2", "--n-test", "3", "--net.width", "8", "--net.depth", "2", "--cohort-train.steps", "20",
            "--train.steps", str(steps), "--images.size", "16", "--no-lpips", "--cluster", "local", "--jobs", "2",
            "--max-members", "1", "--no-report"]


def start(args: list[str]) -> subprocess.Popen:
    # its own session and process group, as a shell gives a foreground command: killpg(SIGINT) is a Ctrl-C
    return subprocess.Popen([sys.executable, "-m", "inrlens.cli", *args], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def fit_rows_raw(results: Path) -> list[dict]:
    """Every complete, valid fit row of every results/*.jsonl, read line by line (no de-duplication)."""
    rows = []
    for f in sorted(results.glob("*.jsonl")):
        for line in f.read_bytes().split(b"\n")[:-1]:
            try:
                row = json.loads(line)
            except ValueError:  # a torn line (a worker killed mid-write), closed by the next append
                continue
            if isinstance(row, dict) and row.get("kind") == "fit":
                rows.append(row)
    return rows


def wait_for_first_fit_row(p: subprocess.Popen, results: Path) -> None:
    t0 = time.time()
    while not (results.exists() and fit_rows_raw(results)):
        if p.poll() is not None:
            out, err = p.communicate()
            pytest.fail(f"the command ended before it could be interrupted (rc {p.returncode}): {err[-2000:]}")
        assert time.time() - t0 < TIMEOUT, "no fit row appeared"
        time.sleep(0.05)


def file_sizes(results: Path) -> dict[str, int]:
    return {f.name: f.stat().st_size for f in results.glob("*.jsonl")}


def assert_stopped(p: subprocess.Popen, submitit_dir: Path, rc: int, line: str) -> list[str]:
    """The command exits ``rc`` with ``line`` as its only stderr line, no traceback, and no process of its jobs
    alive once it has exited; nothing is written after that."""
    out, err = p.communicate(timeout=90)
    left = processes_mentioning(str(submitit_dir))  # checked at once: the command waits for its jobs before exiting
    assert p.returncode == rc, (p.returncode, err[-3000:])
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert [ln for ln in err.splitlines() if ln.strip()] == [line], err[-3000:]
    assert not left, f"processes of the interrupted command still alive: {left}"
    results = submitit_dir.parent / "results"
    before = file_sizes(results)
    time.sleep(1.0)
    assert file_sizes(results) == before, "a results file grew after the command had exited"
    return out.splitlines()


def train_cohorts_here(spec: SweepSpec, run: Path) -> Path:
    """Prepare the run folder and train its cohorts in this process (tiny: 20 steps), as an earlier run would have,
    so that the command under test starts with its fits at once; the folder's lock is given back for it."""
    import torch

    from inrlens.store import prepare_run, release_run_lock
    from inrlens.sweep import train_cohorts_job

    threads = torch.get_num_threads()
    run = prepare_run(run, run_config(spec), resume=True)
    try:
        train_cohorts_job(make_plan(spec, run).cohorts, str(run / "results"))
    finally:
        release_run_lock(run)
        torch.set_num_threads(threads)
    return run


def sweep_spec_of(args: list[str]) -> SweepSpec:
    """The spec `inrlens sweep ARGS` runs (parsed as the command line parses it)."""
    import tyro

    from inrlens.commands.study import Sweep
    from inrlens.sweep import resolve_specs

    cmd = tyro.cli(Sweep, args=args[1:])
    return resolve_specs(cmd.config, cmd.spec, cmd.exec)[0]


def planned_keys(run: Path) -> set[str]:
    spec_d = json.loads((run / "run.json").read_text())["spec"]
    spec, _ = spec_from_dict({k: v for k, v in spec_d.items() if k != "hash"})
    return {f.key for f in make_plan(spec, run).fits}


# ------------------------------------------------------------------------------------------------ sweep
@pytest.mark.slow  # real processes: a few seconds each on an idle 2-core machine
def test_ctrl_c_stops_the_sweep_and_its_workers(tmp_path):
    """SIGINT to the whole process group (a terminal's Ctrl-C): workers ignore it, the sweep cancels them."""
    out = tmp_path / "s"
    train_cohorts_here(sweep_spec_of(sweep_args(out)), out)
    p = start(sweep_args(out))
    wait_for_first_fit_row(p, out / "results")
    assert processes_mentioning(str(out / "submitit")), "no worker was running when the sweep was interrupted"
    os.killpg(p.pid, signal.SIGINT)
    assert_stopped(p, out / "submitit", 130, f"inrlens: interrupted (SIGINT); {SWEEP_LINE}")
    assert len({r["key"] for r in fit_rows_raw(out / "results")}) < 24  # interrupted part-way


@pytest.mark.slow  # real processes: a few seconds each on an idle 2-core machine
def test_sigterm_stops_the_sweep_then_a_rerun_writes_each_key_once(tmp_path):
    """SIGTERM to the command alone (its workers get nothing from the sender): it cancels them itself. A rerun
    started at once finishes with every planned key exactly once over all raw results files."""
    out = tmp_path / "s"
    train_cohorts_here(sweep_spec_of(sweep_args(out)), out)
    p = start(sweep_args(out))
    wait_for_first_fit_row(p, out / "results")
    os.kill(p.pid, signal.SIGTERM)
    assert_stopped(p, out / "submitit", 143, f"inrlens: interrupted (SIGTERM); {SWEEP_LINE}")
    partial = Counter(r["key"] for r in fit_rows_raw(out / "results"))
    assert 1 <= len(partial) < 24 and max(partial.values()) == 1

    p2 = start(sweep_args(out))
    log, err = p2.communicate(timeout=TIMEOUT)
    assert p2.returncode == 0, err[-3000:]
    assert f"{len(partial)} fits already done, {24 - len(partial)} to run" in log, log
    counts = Counter(r["key"] for r in fit_rows_raw(out / "results"))
    planned = planned_keys(out)
    assert len(planned) == 24 and set(counts) == planned
    assert set(counts.values()) == {1}, {k: c for k, c in counts.items() if c > 1}
    assert not processes_mentioning(str(out / "submitit"))


# ------------------------------------------------------------------------------------------------ reproduce
PRESET = """
[datasets]
faces = "sample:faces"
[sweep]
backbones = ["siren"]
depths = ["all"]
seeds = [0, 1]
n_cohort = 3
n_test = 2
lpips = false
net = { width = 8, depth = 3 }
cohort_train = { steps = 20, lr = 1e-3 }
train = { steps = 200, lr = 1e-3 }
images = { size = 16, square = true, channels = "gray" }
[exec]
cluster = "local"
jobs = 2
threads = 1
device = "cpu"
max_members = 1
[sae]
n = 16
k = 2
steps = 10
batch = 128
[study]
single_steps = 10
atlas_top = 2
ablate_top = 1
"""


@pytest.mark.slow  # real processes: a few seconds each on an idle 2-core machine
def test_ctrl_c_during_the_reproduce_sweep_stops_its_workers(tmp_path):
    """reproduce runs the sweep in its main thread beside a progress thread: Ctrl-C there cancels the jobs."""
    preset = tmp_path / "tiny.toml"
    preset.write_text(PRESET)
    run = tmp_path / "run"
    from inrlens.commands.reproduce import resolve_preset

    train_cohorts_here(resolve_preset(str(preset)).spec, run / "sweep")
    p = start(["reproduce", "--preset", str(preset), "--out", str(run)])
    wait_for_first_fit_row(p, run / "sweep" / "results")
    os.killpg(p.pid, signal.SIGINT)
    assert_stopped(p, run / "sweep" / "submitit", 130,
                   "inrlens: interrupted (SIGINT); finished fits are kept — rerun with --resume to continue")
    assert not (run / "report.md").exists()
    # the interrupted invocation's time is recorded, so a resumed run's "all invocations" wall time includes it
    (entry,) = json.loads((run / "timings.json").read_text())["invocations"]
    assert entry["stopped_in"] == "sweep" and 0 < entry["sweep"] <= entry["total"]


# ------------------------------------------------------------------------------------------------ the hooks
@pytest.mark.slow  # real processes: a few seconds each on an idle 2-core machine
def test_cancel_event_stops_a_sweep_running_in_another_thread(tmp_path):
    """run_sweep(cancel=event) from a thread (the Python API): setting the event cancels the local jobs, waits
    until they are gone and raises SweepCancelled; the finished fits keep their rows."""
    from inrlens.store import prepare_run

    spec = SweepSpec(data=(f"u={NOISE}",), backbones=("siren",), seeds=(0, 1), n_cohort=2, n_test=3,
                     net=NetConfig(width=8, depth=2), cohort_train=TrainConfig(steps=20), train=TrainConfig(steps=200),
                     images=DataConfig(size=16), lpips=False)
    run = train_cohorts_here(spec, tmp_path / "s")
    prepare_run(run, run_config(spec), resume=True)  # run_sweep's caller owns the folder
    ev, got = threading.Event(), {}

    def go() -> None:
        try:
            got["summary"] = run_sweep(spec, ExecSpec(cluster="local", jobs=2, max_members=1), run, log=lambda *a: None,
                                       cancel=ev)
        except BaseException as e:  # noqa: BLE001 - handed to the test's thread
            got["error"] = e

    t = threading.Thread(target=go)
    t.start()
    try:
        t0 = time.time()
        while not ((run / "results").exists() and fit_rows_raw(run / "results")):
            assert t.is_alive(), got
            assert time.time() - t0 < TIMEOUT
            time.sleep(0.05)
    finally:
        ev.set()
        t.join(120)
    assert not t.is_alive()
    assert isinstance(got.get("error"), SweepCancelled), got
    assert not processes_mentioning(str(run / "submitit"))
    rows = fit_rows_raw(run / "results")
    assert rows and len({r["key"] for r in rows}) == len(rows) < 24


class _FakeLocalJob:
    """What cancel_jobs reads from a submitit LocalJob: the process submitit started (here a shell that starts a
    child ignoring SIGINT and SIGTERM, which starts a grandchild)."""

    def __init__(self, proc: subprocess.Popen):
        self._process, self.job_id = proc, str(proc.pid)


def test_cancel_jobs_kills_the_whole_tree():
    from inrlens.sweep.executors import cancel_jobs, pid_alive

    script = "trap '' INT TERM; sh -c \"trap '' INT TERM; sleep 300 & sleep 300; wait\" & wait"
    procs = [subprocess.Popen(["sh", "-c", script]) for _ in range(2)]
    t0 = time.time()

    def tree(root: int) -> list[int]:
        out, todo = [], [root]
        while todo:
            pid = todo.pop()
            kids = Path(f"/proc/{pid}/task/{pid}/children")
            for k in (kids.read_text().split() if kids.exists() else []):
                out.append(int(k))
                todo.append(int(k))
        return out

    while any(len(tree(p.pid)) < 3 for p in procs):  # shell → sh → 2 × sleep
        assert time.time() - t0 < 20
        time.sleep(0.02)
    pids = [q for p in procs for q in [p.pid, *tree(p.pid)]]
    assert len(pids) == 8 and all(pid_alive(q) for q in pids)
    os.kill(pids[1], signal.SIGTERM)  # ignored: SIGTERM alone would leave them running
    time.sleep(0.1)
    assert pid_alive(pids[1])
    assert cancel_jobs([_FakeLocalJob(p) for p in procs], grace=10) == []
    assert not [q for q in pids if pid_alive(q)]
    assert all(p.returncode == -signal.SIGKILL for p in procs)


def test_cancel_jobs_scancels_cluster_jobs_in_one_quiet_call(tmp_path, monkeypatch, capfd):
    """SLURM jobs: one scancel naming every job id; its complaints (a job already ended) stay off the terminal."""
    from inrlens.sweep import InlineExecutor
    from inrlens.sweep.executors import cancel_jobs

    bindir, calls = tmp_path / "bin", tmp_path / "calls"
    bindir.mkdir()
    fake = bindir / "scancel"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\necho 'scancel: error: job already completed' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")

    class SlurmLikeJob:
        _cancel_command = "scancel"

        def __init__(self, job_id: str):
            self.job_id = job_id

    inline = InlineExecutor().map_array(lambda x: x, [1])
    capfd.readouterr()
    assert cancel_jobs([SlurmLikeJob("41_0"), SlurmLikeJob("41_1"), *inline]) == []
    assert calls.read_text().splitlines() == ["41_0 41_1"]
    assert capfd.readouterr().err == ""


def test_deferred_signal_arrives_when_the_block_ends():
    """A SIGTERM inside deferred() reaches the handler only as the block ends (nothing inside is cut short)."""
    from inrlens.interrupts import Interrupted, deferred, raising

    steps, before = [], signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as e, raising():
        with deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            steps.append("inside finished")
        steps.append("after the block")  # never reached: the signal raises as the block ends
    assert steps == ["inside finished"] and e.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before  # restored


def test_a_signal_started_ignored_stays_ignored():
    """A command a shell script starts in the background ignores SIGINT: the command line keeps it so."""
    from inrlens.interrupts import raising

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with raising():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN  # raises Interrupted
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


# ------------------------------------------------------------------------------------------------ SIGKILL of the command
@pytest.mark.slow  # real processes: a few seconds on an idle 2-core machine
def test_workers_of_a_sigkilled_sweep_end_themselves(tmp_path):
    """SIGKILL of the sweep alone (no finally block runs, nothing can cancel the jobs): each local job notices its
    command is gone and ends within seconds, though its fits (20 000 steps each) would run for minutes more."""
    out = tmp_path / "s"
    args = sweep_args(out, steps=20000)
    train_cohorts_here(sweep_spec_of(args), out)
    p = start(args)
    t0 = time.time()
    while len([c for _, c in processes_mentioning(str(out / "submitit")) if "core._submit" in c]) < 2:
        assert p.poll() is None and time.time() - t0 < TIMEOUT, "the sweep's two workers never started"
        time.sleep(0.1)
    time.sleep(1.0)  # into their first fits
    os.kill(p.pid, signal.SIGKILL)
    p.communicate(timeout=30)
    t0 = time.time()
    while processes_mentioning(str(out / "submitit")):
        assert time.time() - t0 < 15, f"workers outlived the killed sweep: {processes_mentioning(str(out / 'submitit'))}"
        time.sleep(0.2)
    logs = "".join(f.read_text(errors="replace") for f in (out / "submitit").rglob("*.err"))
    assert "Traceback" not in logs, logs[-2000:]


def test_process_token_names_one_process_and_its_watch_ends_an_orphan():
    """A token is alive while its process runs, not after it ends, not for a later process given the same pid (a
    wrong start time); an unreadable token counts as alive. A child watching a process that ends exits ORPHAN_EXIT."""
    from inrlens.interrupts import ORPHAN_EXIT, process_token, token_alive

    me = process_token()
    assert token_alive(me) and me.split(":")[0] == str(os.getpid())
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tok = process_token(sleeper.pid)
        assert token_alive(tok)
        pid, _, start = tok.partition(":")
        assert not token_alive(f"{pid}:{int(start) + 1}")  # same pid, another start time: another process
        assert token_alive("garbage")
        code = ("import time, sys; from inrlens.interrupts import watch_owner; "
                f"assert watch_owner({tok!r}, every=0.05); time.sleep(60); sys.exit(0)")
        watcher = subprocess.Popen([sys.executable, "-c", code], env=ENV)
        time.sleep(1.0)
        assert watcher.poll() is None  # its owner still runs
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not token_alive(tok)
    assert watcher.wait(timeout=30) == ORPHAN_EXIT
