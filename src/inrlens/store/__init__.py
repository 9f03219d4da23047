"""Persistence: the one atomic write, checkpoints (``cfg.json`` + ``model.safetensors``), append-only JSONL
results, and the layout of a run folder (:class:`RunFolder`; every file name lives in one place).

* :mod:`inrlens.store.names`: the file and folder names.
* :mod:`inrlens.store.atomic`: :func:`atomic_write` and its text/JSON forms; :func:`clean_json` (strict JSON).
* :mod:`inrlens.store.checkpoints`: :func:`save_stack`, :func:`load_stack`, :func:`checkpoint_ready`,
  :func:`check_tensors`.
* :mod:`inrlens.store.results`: :func:`append_row`, :func:`iter_rows`, :func:`read_rows`, :func:`done_keys`.
* :mod:`inrlens.store.lock`: the run folder's owner lock (:func:`acquire_run_lock`, :class:`RunConflict`).
* :mod:`inrlens.store.runs`: :func:`prepare_run` and :class:`RunFolder`.

Every name is importable from ``inrlens.store`` itself.

Crash safety: every file is written to a temporary name unique to its writer (pid + random) in the same
folder, fsynced and renamed over the final name, so a reader sees the old file or the new one, never half of
one, and two writers of the same path never collide. The final file gets the usual ``0o666 & ~umask`` mode
(as if written with ``open``), not the private 0600 of ``tempfile.mkstemp``. A JSONL line is appended in one
write that ends with a newline and is fsynced; a reader ignores a last line without its newline (a writer
killed mid-line) and never parses it as data.

One writer per run folder: :func:`prepare_run` takes the folder's owner lock (:func:`acquire_run_lock`, an
exclusive ``flock`` on ``.inrlens.lock``) before it reads or writes anything there, and the process keeps it
until it exits (or :func:`release_run_lock`). A second process that prepares the same folder gets a one-line
:class:`RunConflict` naming the owner (pid, host, start time, command line) and writes nothing (details in
:mod:`inrlens.store.lock`).
"""

from .atomic import _clean as _clean  # private names that tests import
from .atomic import _json_default as _json_default
from .atomic import _tmp_name as _tmp_name
from .atomic import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text, clean_json
from .checkpoints import check_tensors, checkpoint_ready, load_stack, save_stack
from .lock import RunConflict, RunLock, acquire_run_lock, held_run_locks, release_run_lock
from .names import (
    ATLAS_DIR,
    CFG_NAME,
    COHORTS_DIR,
    CONTEXT_NAME,
    LOCK_NAME,
    MODEL_NAME,
    MODELS_DIR,
    REPORT_DIR,
    RESULTS_DIR,
    RESULTS_NAME,
    RUN_NAME,
    SAE_DIR,
    SINGLE_DIR,
    SUBMITIT_DIR,
    SWEEP_DIR,
    TIMINGS_NAME,
    TRAIN_STATE_NAME,
)
from .results import TORN_MARK, append_row, done_keys, iter_rows, read_rows
from .runs import RunFolder, prepare_run

__all__ = [
    # file names
    "ATLAS_DIR", "CFG_NAME", "COHORTS_DIR", "CONTEXT_NAME", "LOCK_NAME", "MODELS_DIR", "MODEL_NAME", "REPORT_DIR", "RESULTS_DIR",
    "RESULTS_NAME", "RUN_NAME", "SAE_DIR", "SINGLE_DIR", "SUBMITIT_DIR", "SWEEP_DIR", "TIMINGS_NAME", "TRAIN_STATE_NAME",
    "TORN_MARK",
    # functions and classes
    "atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "clean_json", "check_tensors", "checkpoint_ready",
    "load_stack", "save_stack", "append_row", "done_keys", "iter_rows", "read_rows", "RunConflict", "RunLock", "acquire_run_lock",
    "held_run_locks", "release_run_lock", "RunFolder", "prepare_run",
]
