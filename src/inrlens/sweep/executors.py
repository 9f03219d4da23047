"""Running a sweep's jobs: submitit executors (local processes, SLURM job arrays) or in this process (debug).

:func:`run_sweep` plans, trains the cohorts that are missing, then runs the fits that are missing, dealt into
``ExecSpec.jobs`` jobs. A job that fails never stops the others: each failure becomes one line naming the
job and the cause (the exception's own message, not submitit's wrapping), and a rerun of the same command
continues from what was written.

Stopping a sweep: when anything ends :func:`run_sweep` early (Ctrl-C, SIGTERM, its ``cancel`` event, an error),
every job it submitted is cancelled and waited for before the exception goes on (:func:`cancel_jobs`), so no
worker keeps appending rows while a rerun starts the same fits. Local workers ignore SIGINT: a Ctrl-C on the
terminal reaches only the sweep, which stops them itself (no worker traceback on the terminal); their output
goes to their log files under ``RUN_DIR/submitit``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..interrupts import deferred, shielded, trap_sigterm
from .jobs import check_memory, chunk_fits, cohort_ready, deal, run_fits_job, train_cohorts_job
from .plan import Plan, make_plan
from .spec import ExecSpec, SweepSpec


class InlineJob:
    """A job run in this process when its result is asked for (the 'debug' cluster)."""

    def __init__(self, job_id: str, fn: Callable[..., Any], args: tuple):
        self.job_id, self._fn, self._args = job_id, fn, args
        self._ran, self._value, self._error = False, None, None

    def result(self) -> Any:
        if not self._ran:
            self._ran = True
            try:
                self._value = self._fn(*self._args)
            except Exception as e:  # reported by wait_jobs like a failed submitit job; never a debugger prompt
                self._error = e
        if self._error is not None:
            raise self._error
        return self._value


class InlineExecutor:
    """The subset of submitit's executor API that :func:`run_sweep` uses, running every job in this process,
    one after the other, in the order they are waited for. Nothing is pickled and nothing waits for input."""

    def __init__(self) -> None:
        self._n = 0

    def map_array(self, fn: Callable[..., Any], *iterables: Sequence[Any]) -> list[InlineJob]:
        jobs = []
        for args in zip(*iterables):
            jobs.append(InlineJob(f"inline-{self._n}", fn, args))
            self._n += 1
        return jobs


# submitit starts each local job as ``/bin/sh -c "SETUP && python -m submitit.local._local FOLDER"`` (a controller,
# which starts the worker). `trap '' INT` makes the shell, the controller and the worker ignore SIGINT (an ignored
# signal stays ignored across exec), so that a Ctrl-C on the terminal, which signals the whole foreground process
# group, reaches only the sweep, which then stops its jobs (cancel_jobs). `trap : EXIT` keeps the shell waiting for
# the controller instead of exec-ing it (bash would), as submitit expects with a setup: the controller takes its
# parent's pid for its job id.
LOCAL_SETUP = ("trap '' INT", "trap : EXIT")


def make_executor(ex: ExecSpec, folder: Path, name: str):
    """The executor of ``ex.cluster`` (submitit logs and pickles under ``folder``; local workers ignore SIGINT,
    see :func:`cancel_jobs`)."""
    if ex.cluster == "debug":
        return InlineExecutor()
    import submitit

    folder.mkdir(parents=True, exist_ok=True)
    if ex.cluster == "local":
        from ..interrupts import OWNER_ENV, process_token

        e = submitit.LocalExecutor(folder=str(folder))  # each job watches this process (its token): a job outliving it ends
        e.update_parameters(timeout_min=ex.timeout_min, setup=[*LOCAL_SETUP, f"export {OWNER_ENV}={process_token()}"])
        return e
    if ex.cluster == "slurm":
        if shutil.which("sbatch") is None:
            raise ValueError("--cluster slurm: sbatch is not on PATH (no SLURM client here); use --cluster local")
        e = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        params: dict[str, Any] = dict(timeout_min=ex.timeout_min, cpus_per_task=ex.threads, name=name,
                                      slurm_array_parallelism=ex.jobs, mem_gb=ex.slurm_mem_gb)
        if ex.slurm_partition:
            params["slurm_partition"] = ex.slurm_partition
        e.update_parameters(**params)
        return e
    raise ValueError(f"unknown cluster {ex.cluster!r}; use local, debug or slurm")


_RULE = re.compile(r"^\s*[-=─━_*]{3,}\s*$")


def failure_cause(e: BaseException) -> str:
    """One line saying why a job failed.

    submitit wraps a job's exception in a message holding the job's traceback between rules of dashes, then
    where its logs are; the cause is the traceback's exception line (``ValueError: ...``). A job that ended
    without a result (killed, out of memory, timed out) is said so with its state."""
    text = str(e)
    marker = "Traceback (most recent call last):"
    if marker in text:
        tail = text.rsplit(marker, 1)[1].splitlines()
        for line in tail:  # frames are indented; the exception line is the first one that is not
            if line.strip() and not line[:1].isspace() and not _RULE.match(line):
                return line.strip()
    m = re.search(r"has not produced any output \(state: ([^)]*)\)", text)
    if m:
        return f"the job ended without a result (state: {m.group(1)}; killed, out of memory or out of time?)"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not _RULE.match(ln)]
    first = lines[0] if lines else ""
    name = type(e).__name__
    return f"{name}: {first}" if first and not first.startswith(name) else (first or name)


def _log_hint(job: Any) -> str:
    paths = getattr(job, "paths", None)
    err = getattr(paths, "stderr", None) if paths is not None else None
    return f" (log: {err})" if err is not None and Path(err).exists() else ""


class SweepCancelled(RuntimeError):
    """:func:`run_sweep` stopped because its ``cancel`` event was set (its jobs were cancelled first)."""


def wait_jobs(jobs: Sequence[Any], what: str, cancel: threading.Event | None = None) -> list[str]:
    """Wait for every job; one line per failed job (a job failure never raises here). When ``cancel`` is set
    meanwhile, :class:`SweepCancelled` is raised (an inline job that is running finishes first)."""
    errors = []
    for j in jobs:
        if cancel is not None:
            if isinstance(j, InlineJob):
                if cancel.is_set():
                    raise SweepCancelled(f"{what} jobs cancelled")
            else:
                while not j.done():
                    if cancel.wait(0.25):
                        raise SweepCancelled(f"{what} jobs cancelled")
        try:
            j.result()
        except Exception as e:  # a failed job: report it, let the others finish
            errors.append(f"{what} job {getattr(j, 'job_id', '?')} failed: {failure_cause(e)}{_log_hint(j)}")
    return errors


# ------------------------------------------------------------------------------------------------ stopping jobs
def _children() -> dict[int, list[int]]:
    """{pid: child pids} of every process this user can see (/proc, else ps)."""
    kids: dict[int, list[int]] = {}
    proc = Path("/proc")
    if proc.is_dir():
        for d in proc.iterdir():
            if not d.name.isdigit():
                continue
            try:  # "pid (comm) state ppid ...": comm may hold spaces and parentheses
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
        return kids
    try:
        out = subprocess.run(["ps", "-A", "-o", "pid=", "-o", "ppid="], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return kids
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            kids.setdefault(int(parts[1]), []).append(int(parts[0]))
    return kids


def _descendants(roots: Sequence[int], kids: dict[int, list[int]]) -> list[int]:
    out, todo = [], list(roots)
    while todo:
        for k in kids.get(todo.pop(), []):
            if k not in out:
                out.append(k)
                todo.append(k)
    return out


def _state(pid: int) -> str | None:
    """The process's state letter from /proc (R, S, D, T, Z, ...); None when unknown or gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """True while ``pid`` is a process that has not ended (a zombie, ended but not yet reaped, counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _state(pid) not in ("Z", "X") if Path("/proc/self").exists() else True


def _send(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_trees(procs: Sequence[subprocess.Popen], grace: float) -> list[int]:
    """Freeze each process and everything below it (SIGSTOP, top down, until no new process appears, so that
    nothing starts another one meanwhile), kill them all (SIGKILL) and wait, at most ``grace`` seconds, until
    they are gone. Returns the pids still alive then."""
    deadline = time.monotonic() + grace
    roots = [p.pid for p in procs]
    frozen: list[int] = []
    todo = list(roots)
    while todo:  # each round reaches one more generation (a job's tree is three deep)
        for pid in todo:
            _send(pid, signal.SIGSTOP)
            frozen.append(pid)
        t0 = time.monotonic()  # a stop takes effect when the process next runs: wait until it has
        while (time.monotonic() - t0 < 1.0 and time.monotonic() < deadline
               and any(_state(p) not in (None, "T", "t", "Z", "X") for p in frozen)):
            time.sleep(0.005)
        todo = [p for p in _descendants(roots, _children()) if p not in frozen]
        if time.monotonic() > deadline:
            frozen += todo
            break
    for pid in frozen:
        _send(pid, signal.SIGKILL)
    while True:
        for p in procs:
            p.poll()  # reap our own children
        left = [pid for pid in frozen if pid_alive(pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def cancel_jobs(jobs: Sequence[Any], grace: float = 30.0) -> list[int]:
    """Stop every job of ``jobs`` that has not ended and wait for the local ones to be gone.

    * local (submitit LocalExecutor): the job's processes (the shell submitit starts, its controller, the worker)
      are frozen and killed (SIGKILL), then waited for, at most ``grace`` seconds. A worker holds nothing that
      needs a clean exit: each row is one append (a torn last line is skipped by every reader and redone by a
      rerun) and a cohort is saved to a temporary folder that is renamed when complete.
    * SLURM (or another submitit cluster): one quiet ``scancel`` of every job id; the cluster ends them.
    * inline (debug): nothing runs outside the caller.

    Returns the pids of local job processes still alive after ``grace`` (empty when all are gone)."""
    procs: list[subprocess.Popen] = []
    cancel_cmds: dict[str, list[str]] = {}
    for j in jobs:
        if isinstance(j, InlineJob):
            continue
        proc = getattr(j, "_process", None)  # a submitit LocalJob: the process submitit started for it
        if isinstance(proc, subprocess.Popen):
            if proc.poll() is None:
                procs.append(proc)
            continue
        cmd = getattr(j, "_cancel_command", None)  # a cluster job (scancel for SLURM)
        if isinstance(cmd, str) and shutil.which(cmd) and getattr(j, "job_id", None) is not None:
            cancel_cmds.setdefault(cmd, []).append(str(j.job_id))
    for cmd, ids in cancel_cmds.items():
        try:
            subprocess.run([cmd, *ids], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=60, check=False)
        except (OSError, subprocess.SubprocessError):
            pass
    return _kill_trees(procs, grace) if procs else []


# ------------------------------------------------------------------------------------------------ the sweep
def _done(results: Path) -> set[str]:
    from .jobs import current_keys

    return current_keys(results)  # rows of a cohort checkpoint replaced since are stale: redone


def _cohort_rows(results: Path) -> set[str]:
    from .jobs import current_keys

    return current_keys(results, "cohort")


def run_sweep(spec: SweepSpec, ex: ExecSpec, run_dir: str | Path, log: Callable[..., Any] = print,
              plan: Plan | None = None, cancel: threading.Event | None = None,
              cancel_grace: float = 30.0) -> dict[str, Any]:
    """Plan (unless ``plan`` is given), train missing cohorts, run missing fits.

    Returns {'errors': [one line per failed job], 'fits': planned fits, 'done': fits with a row, 'seconds'}.
    Assumes ``run_dir`` was prepared (store.prepare_run).

    Stopping: whatever ends this call early (KeyboardInterrupt, SIGTERM — turned into
    :class:`inrlens.interrupts.Interrupted` here when the process has no SIGTERM handler of its own — or any
    other exception) cancels every job submitted so far (:func:`cancel_jobs`, waiting at most ``cancel_grace``
    seconds) before it propagates. From another thread, set ``cancel``: the jobs are cancelled and
    :class:`SweepCancelled` is raised. Finished fits keep their rows; a rerun continues."""
    live: list[Any] = []
    with trap_sigterm():
        try:
            return _run_sweep(spec, ex, Path(run_dir), log, plan, cancel, live)
        except BaseException:
            if live:
                with shielded():  # a second Ctrl-C must not leave half the jobs running
                    left = cancel_jobs(live, cancel_grace)
                if left:
                    warnings.warn(f"sweep: {len(left)} job process(es) did not end after {cancel_grace:.0f} s: pids "
                                  f"{' '.join(map(str, left))}", stacklevel=2)
            raise


def _run_sweep(spec: SweepSpec, ex: ExecSpec, run_dir: Path, log: Callable[..., Any], plan: Plan | None,
               cancel: threading.Event | None, live: list[Any]) -> dict[str, Any]:
    t0 = time.time()
    plan = plan if plan is not None else make_plan(spec, run_dir)
    check_memory(plan, ex, run_dir)  # a cohort or fit that cannot fit the budget: one line before any job starts
    results = run_dir / "results"
    results.mkdir(parents=True, exist_ok=True)
    keys = {f.key for f in plan.fits}
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"

    def summary(errors: list[str]) -> dict[str, Any]:
        return {"errors": errors, "fits": len(keys), "done": len(_done(results) & keys), "seconds": time.time() - t0}

    def submit(name: str, fn: Callable[..., Any], *iterables: Sequence[Any]) -> list[Any]:
        exe = make_executor(ex, run_dir / "submitit", name)
        if cancel is not None and cancel.is_set():
            raise SweepCancelled("sweep cancelled before its jobs were submitted")
        with deferred():  # a signal waits until every job started is known (and can be cancelled)
            jobs = exe.map_array(fn, *iterables)
            live.extend(jobs)
        return jobs

    have = _cohort_rows(results)
    todo_c = [c for c in plan.cohorts if not (cohort_ready(c) and c.key in have)]
    log(f"sweep: {len(plan.cohorts)} cohorts ({len(todo_c)} to train), {len(plan.fits)} fits")
    if todo_c:
        groups = [todo_c[i :: ex.jobs] for i in range(min(ex.jobs, len(todo_c)))]
        n = len(groups)
        jobs = submit("inrlens-cohort", train_cohorts_job, groups, [str(results)] * n, [ex.threads] * n, [ex.device] * n)
        errors = wait_jobs(jobs, "cohort", cancel)
        if errors:
            return summary(errors)
    done = _done(results)
    todo = [f for f in plan.fits if f.key not in done]
    chunks = chunk_fits(todo, ex.max_members, spec)
    packs = deal(chunks, ex.jobs, spec.net.depth)
    log(f"sweep: {len(plan.fits) - len(todo)} fits already done, {len(todo)} to run in {len(chunks)} chunks over "
        f"{len(packs)} jobs ({ex.cluster})")
    errors = []
    if packs:
        files = [str(results / f"fits-{stamp}-{i:03d}.jsonl") for i in range(len(packs))]
        n = len(packs)
        jobs = submit("inrlens-sweep", run_fits_job, packs, files, [spec] * n, [ex.threads] * n, [ex.device] * n)
        errors = wait_jobs(jobs, "fit", cancel)
    return summary(errors)


__all__ = ["InlineExecutor", "make_executor", "failure_cause", "wait_jobs", "run_sweep", "cancel_jobs", "pid_alive",
           "SweepCancelled", "LOCAL_SETUP"]
