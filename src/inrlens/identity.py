"""Identities of models and result rows: which checkpoint a row came from, whether that row is still current, and
results files set aside by ``--overwrite``. docs/run-folder.md ("Identities") states the rules for users.

* An image is its pixels: :attr:`inrlens.data.Signal.digest` (16 hex digits of a sha256). Result keys use it.
* A checkpoint is its weights: ``cfg.json``'s ``model_sha256`` (the sha256 of ``model.safetensors``, recorded
  by :func:`inrlens.store.save_stack`; computed from the file for checkpoints written before it was recorded).
* A row derived from a model records that model's digest: ``encoder_sha256`` (transfer runs), ``cohort_sha256``
  (sweep fit and cohort rows), ``model_sha256`` (a cohort folder's own rows), ``inr_sha256`` (SAE and ablation
  rows), ``sae_sha256`` (ablation rows). A row whose recorded digest differs from the digest the model's
  checkpoint has now is **stale**: never counted as done, never reused, and left out by the readers
  (:func:`row_is_current`); a row that records no digest, or whose model is gone, cannot be judged and is kept.
* ``--overwrite`` of a folder that held another config moves its results files aside
  (``results.jsonl`` → ``results.jsonl.replaced-<timestamp>``, :func:`prepare_fresh`); no reader reads those.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .store import CFG_NAME, COHORTS_DIR, MODEL_NAME, RESULTS_DIR, RESULTS_NAME, RUN_NAME, prepare_run
from .store.checkpoints import file_sha256

REPLACED_TAG = ".replaced-"
"""Marks a results file moved aside by ``--overwrite`` (``results.jsonl.replaced-20250101-120000``)."""
SAE_WEIGHTS = "sae.safetensors"


def short(digest: str | None) -> str:
    """A digest as messages show it: its first 8 hex digits and '…' ('none' when there is none)."""
    return f"{digest[:8]}…" if digest else "none"


def checkpoint_digest(folder: str | os.PathLike) -> str | None:
    """The digest of the checkpoint in ``folder``: ``cfg.json``'s ``model_sha256``, else (checkpoints written
    before it was recorded) the sha256 of ``model.safetensors``; None when the folder holds no checkpoint."""
    folder = Path(folder)
    cfg, model = folder / CFG_NAME, folder / MODEL_NAME
    if not cfg.is_file() or not model.is_file():
        return None
    try:
        d = json.loads(cfg.read_text()).get("model_sha256")
    except (OSError, ValueError, AttributeError):
        d = None
    if isinstance(d, str) and d:
        return d
    try:
        return file_sha256(model)
    except OSError:
        return None


def sweep_cohort_digests(run_dir: str | os.PathLike) -> dict[str, str]:
    """{cohort key: checkpoint digest} of the cohorts saved under a sweep folder's ``cohorts/`` (the key is the
    one the checkpoint's meta records; folders without a readable checkpoint are left out)."""
    out: dict[str, str] = {}
    root = Path(run_dir) / COHORTS_DIR
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        try:
            meta = json.loads((d / CFG_NAME).read_text()).get("meta") or {}
        except (OSError, ValueError, AttributeError):
            continue
        digest = checkpoint_digest(d)
        if isinstance(meta, dict) and isinstance(meta.get("key"), str) and digest:
            out[meta["key"]] = digest
    return out


def sweep_row_current(row: dict[str, Any], cohorts: dict[str, str]) -> bool:
    """Whether a sweep row (fit or cohort) is current given ``cohorts`` = :func:`sweep_cohort_digests`: False only
    when it records a ``cohort_sha256`` and its cohort's checkpoint now has another digest."""
    got = row.get("cohort_sha256")
    if got is None:  # random-init fits, rows written before digests were recorded
        return True
    want = cohorts.get(row.get("key") if row.get("kind") == "cohort" else row.get("cohort_key"))
    return want is None or want == got


class Digests:
    """Checkpoint and file digests, each computed once (for readers that judge many rows)."""

    def __init__(self) -> None:
        self._ckpt: dict[str, str | None] = {}
        self._file: dict[str, str | None] = {}
        self._cohorts: dict[str, dict[str, str]] = {}

    def checkpoint(self, folder: str | os.PathLike | None) -> str | None:
        if not folder:
            return None
        k = str(Path(folder).absolute())
        if k not in self._ckpt:
            self._ckpt[k] = checkpoint_digest(k)
        return self._ckpt[k]

    def file(self, path: str | os.PathLike) -> str | None:
        k = str(Path(path).absolute())
        if k not in self._file:
            try:
                self._file[k] = file_sha256(k)
            except OSError:
                self._file[k] = None
        return self._file[k]

    def cohorts(self, run_dir: str | os.PathLike) -> dict[str, str]:
        k = str(Path(run_dir).absolute())
        if k not in self._cohorts:
            self._cohorts[k] = sweep_cohort_digests(k)
        return self._cohorts[k]


def row_is_current(row: dict[str, Any], file: str | os.PathLike, digests: Digests | None = None) -> bool:
    """Whether a result row read from ``file`` still describes the models it came from (module docstring).

    Judged by what the row records: ``cohort_sha256`` against the sweep's cohort checkpoint of its key (the
    sweep folder being the parent of ``results/``), ``encoder_sha256`` against the ``encoder`` folder,
    ``model_sha256`` of a cohort-folder row against the checkpoint beside ``file``, ``inr_sha256`` against the
    ``inr`` folder, ``sae_sha256`` against ``<folder of file>/<row folder>/sae.safetensors``. A digest whose
    model cannot be found is not held against the row."""
    digests = digests or Digests()
    file = Path(file)
    checks: list[tuple[str, str | None]] = []
    if "cohort_sha256" in row:
        run = file.parent.parent if file.parent.name == RESULTS_DIR else file.parent
        return sweep_row_current(row, digests.cohorts(run))
    if "encoder_sha256" in row:
        checks.append((row["encoder_sha256"], digests.checkpoint(row.get("encoder"))))
    if "model_sha256" in row and row.get("regime") == "cohort":
        checks.append((row["model_sha256"], digests.checkpoint(file.parent)))
    if "inr_sha256" in row:
        checks.append((row["inr_sha256"], digests.checkpoint(row.get("inr"))))
    if "sae_sha256" in row and row.get("folder"):
        checks.append((row["sae_sha256"], digests.file(file.parent / str(row["folder"]) / SAE_WEIGHTS)))
    return all(got is None or want is None or got == want for got, want in checks)


_SLOT = ("kind", "config", "source", "target", "backbone", "regime", "freeze", "image", "seed")


def _slot(row: dict[str, Any], file: Path) -> tuple | None:
    """What one fit row stands for within its run folder (None for rows that are no per-image fit)."""
    if row.get("kind", "fit") != "fit" or "image" not in row or "seed" not in row:
        return None
    run = file.parent.parent if file.parent.name == RESULTS_DIR else file.parent
    return (str(run.absolute()), *(json.dumps(row.get(k), sort_keys=True) for k in _SLOT))


def current_rows(rows_by_file: Iterable[tuple[dict[str, Any], str | os.PathLike]]) -> list[dict[str, Any]]:
    """The rows of (row, file) pairs that :func:`row_is_current` keeps, in order, less the fit rows written before
    images were keyed by digest (no ``image_digest``) for which the same run folder holds a newer row of the same
    (config, source, target, backbone, regime, freeze, image name, seed): the refit that replaced them."""
    digests = Digests()
    kept = [(r, Path(f)) for r, f in rows_by_file if row_is_current(r, f, digests)]
    fresh = {_slot(r, f) for r, f in kept if "image_digest" in r}
    return [r for r, f in kept if "image_digest" in r or _slot(r, f) is None or _slot(r, f) not in fresh]


def read_current_rows(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """:func:`inrlens.store.read_rows` (one JSONL file, a list of them, or every ``*.jsonl`` under a folder)
    without the stale rows (:func:`row_is_current`)."""
    from .store import iter_rows

    if isinstance(paths, (str, os.PathLike)):
        p = Path(paths)
        files = sorted(p.rglob("*.jsonl")) if p.is_dir() else [p]
    else:
        files = [Path(x) for x in paths]
    return current_rows((r, f) for f in files for r in iter_rows(f))


# ------------------------------------------------------------------------------------------------ --overwrite
def is_replaced(path: str | os.PathLike) -> bool:
    """True for a results file moved aside by ``--overwrite``."""
    return REPLACED_TAG in Path(path).name


def move_aside(path: str | os.PathLike) -> Path:
    """Rename ``path`` to ``<name>.replaced-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3`` … when taken); returns the new path."""
    path = Path(path)
    base = f"{path.name}{REPLACED_TAG}{time.strftime('%Y%m%d-%H%M%S')}"
    target, i = path.with_name(base), 1
    while target.exists():
        i += 1
        target = path.with_name(f"{base}-{i}")
    os.replace(path, target)
    return target


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return "unreadable"


def prepare_fresh(out: str | os.PathLike, config: dict[str, Any], resume: bool = False, overwrite: bool = False,
                  files: Sequence[str] = (RESULTS_NAME,), log: Callable[[str], Any] | None = None) -> Path:
    """:func:`inrlens.store.prepare_run`, and when ``overwrite`` replaced another config: each of ``files`` that
    exists in ``out`` is moved aside (:func:`move_aside`), with one line through ``log`` (a warning without one), so that rows of the
    replaced config never mix with the new run's. Nothing is deleted; an overwrite with the same config keeps its
    rows (it is a plain rerun)."""
    out = Path(out)
    before = _read_json(out / RUN_NAME) if overwrite else None
    folder = prepare_run(out, config, resume, overwrite)
    if before is not None and before != _read_json(out / RUN_NAME):
        for name in files:
            p = out / name
            if p.is_file():
                moved = move_aside(p)
                msg = f"{p}: rows of the replaced config moved aside to {moved.name} (--overwrite)"
                if log is not None:
                    log(msg)
                else:
                    warnings.warn(msg, stacklevel=2)
    return folder


__all__ = ["short", "file_sha256", "checkpoint_digest", "sweep_cohort_digests", "sweep_row_current", "Digests",
           "row_is_current", "current_rows", "read_current_rows", "is_replaced", "move_aside", "prepare_fresh", "REPLACED_TAG"]
