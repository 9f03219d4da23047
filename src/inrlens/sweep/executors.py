"""Running a sweep's jobs: submitit executors (local processes, SLURM job arrays) or in this process (debug).

:func:`run_sweep` plans, trains the cohorts that are missing, then runs the fits that are missing, dealt into
``ExecSpec.jobs`` jobs. A job that fails never stops the others: each failure becomes one line naming the
job and the cause (the exception's own message, not submitit's wrapping), and a rerun of the same command
continues from what was written.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .jobs import chunk_fits, cohort_ready, deal, run_fits_job, train_cohorts_job
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


def make_executor(ex: ExecSpec, folder: Path, name: str):
    """The executor of ``ex.cluster`` (submitit logs and pickles under ``folder``)."""
    if ex.cluster == "debug":
        return InlineExecutor()
    import submitit

    folder.mkdir(parents=True, exist_ok=True)
    if ex.cluster == "local":
        e = submitit.LocalExecutor(folder=str(folder))
        e.update_parameters(timeout_min=ex.timeout_min)
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


def wait_jobs(jobs: Sequence[Any], what: str) -> list[str]:
    """Wait for every job; one line per failed job (a job failure never raises here)."""
    errors = []
    for j in jobs:
        try:
            j.result()
        except Exception as e:  # a failed job: report it, let the others finish
            errors.append(f"{what} job {getattr(j, 'job_id', '?')} failed: {failure_cause(e)}{_log_hint(j)}")
    return errors


def _done(results: Path) -> set[str]:
    from ..store import done_keys

    return done_keys(results) if results.exists() else set()


def _cohort_rows(results: Path) -> set[str]:
    from ..store import read_rows

    return {r.get("key") for r in read_rows(results) if r.get("kind") == "cohort"} if results.exists() else set()


def run_sweep(spec: SweepSpec, ex: ExecSpec, run_dir: str | Path, log: Callable[..., Any] = print,
              plan: Plan | None = None) -> dict[str, Any]:
    """Plan (unless ``plan`` is given), train missing cohorts, run missing fits.

    Returns {'errors': [one line per failed job], 'fits': planned fits, 'done': fits with a row, 'seconds'}.
    Assumes ``run_dir`` was prepared (store.prepare_run)."""
    t0 = time.time()
    run_dir = Path(run_dir)
    plan = plan if plan is not None else make_plan(spec, run_dir)
    results = run_dir / "results"
    results.mkdir(parents=True, exist_ok=True)
    keys = {f.key for f in plan.fits}
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"

    def summary(errors: list[str]) -> dict[str, Any]:
        return {"errors": errors, "fits": len(keys), "done": len(_done(results) & keys), "seconds": time.time() - t0}

    have = _cohort_rows(results)
    todo_c = [c for c in plan.cohorts if not (cohort_ready(c) and c.key in have)]
    log(f"sweep: {len(plan.cohorts)} cohorts ({len(todo_c)} to train), {len(plan.fits)} fits")
    if todo_c:
        exe = make_executor(ex, run_dir / "submitit", "inrlens-cohort")
        groups = [todo_c[i :: ex.jobs] for i in range(min(ex.jobs, len(todo_c)))]
        n = len(groups)
        jobs = exe.map_array(train_cohorts_job, groups, [str(results)] * n, [ex.threads] * n, [ex.device] * n)
        errors = wait_jobs(jobs, "cohort")
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
        exe = make_executor(ex, run_dir / "submitit", "inrlens-sweep")
        files = [str(results / f"fits-{stamp}-{i:03d}.jsonl") for i in range(len(packs))]
        n = len(packs)
        jobs = exe.map_array(run_fits_job, packs, files, [spec] * n, [ex.threads] * n, [ex.device] * n)
        errors = wait_jobs(jobs, "fit")
    return summary(errors)


__all__ = ["InlineExecutor", "make_executor", "failure_cause", "wait_jobs", "run_sweep"]
