"""Run folders: :func:`prepare_run` creates or validates one and takes its owner lock (:mod:`inrlens.store.lock`);
:class:`RunFolder` names the paths of its files (docs/run-folder.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..config import key_dict
from .atomic import _json_default, atomic_write_json, clean_json
from .lock import RunConflict, _undo_fresh_lock, acquire_run_lock
from .names import (
    ATLAS_DIR,
    COHORTS_DIR,
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
)
from .results import done_keys, read_rows


def _make_folders(out: Path) -> list[Path]:
    """mkdir -p out; the folders this call created, outermost first."""
    missing = []
    p = out
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    made = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            if not d.is_dir():
                raise
            continue
        made.append(d)
    return made


def prepare_run(out: str | os.PathLike, config: dict[str, Any], resume: bool = False, overwrite: bool = False) -> Path:
    """Create/validate a run folder and own it: refuse one that holds a different run's config unless
    resume/overwrite, and one that another process is writing to (always).

    resume: keep the folder's results and continue (the config must match, else RunConflict);
    overwrite: replace the recorded config (results already there are kept, never deleted).

    The folder's owner lock (:func:`acquire_run_lock`) is taken before ``run.json`` is read and kept until the
    process exits (or :func:`release_run_lock`); preparing a folder this process already owns is fine. Every
    refusal leaves the folder as it was: when this call created the folder, it removes the folder and its lock
    file again.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunConflict(f"{out}: exists and is not a folder")
    run_file = out / RUN_NAME
    cfg = clean_json(json.loads(json.dumps(key_dict(config), default=_json_default)))  # fails before anything is made
    for attempt in range(5):
        made = _make_folders(out)
        try:
            lock = acquire_run_lock(out)
        except FileNotFoundError:  # the folder was removed under us (another writer undoing its own creation)
            _remove_empty(made)
            if attempt == 4:
                raise
            continue
        except BaseException:
            _remove_empty(made)
            raise
        break
    try:
        if run_file.exists() and not overwrite:
            try:
                old = json.loads(run_file.read_text())
            except json.JSONDecodeError:
                old = None
            if old != cfg:
                hint = "use --overwrite to replace it" if resume else "use --resume to continue it or --overwrite to replace it"
                raise RunConflict(f"{out}: holds a different run's config ({RUN_NAME}); {hint}")
        atomic_write_json(run_file, cfg)
    except BaseException:
        _undo_fresh_lock(lock)
        _remove_empty(made)
        raise
    return out


def _remove_empty(made: list[Path]) -> None:
    for d in reversed(made):
        try:
            d.rmdir()
        except OSError:
            return


class RunFolder:
    """Where a run's files go: ``RunFolder(root).results_jsonl``, ``.cohort(source, backbone)``, ...

    One layout for the roots of fit / cohort / transfer / sweep / reproduce runs (a reproduce run keeps its
    sweep in ``.sweep``, itself a RunFolder). Only paths: nothing is created or read until a method says so.
    docs/run-folder.md describes what each file holds.
    """

    __slots__ = ("root",)

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunFolder) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    # files and folders
    @property
    def run_json(self) -> Path:
        """The recorded config (see :func:`prepare_run`)."""
        return self.root / RUN_NAME

    @property
    def results_jsonl(self) -> Path:
        """Result rows of a fit / cohort / transfer run (one file)."""
        return self.root / RESULTS_NAME

    @property
    def results_dir(self) -> Path:
        """Result rows of a sweep (one JSONL file per job)."""
        return self.root / RESULTS_DIR

    @property
    def models(self) -> Path:
        """Checkpoints of single-signal fits, one per image shape."""
        return self.root / MODELS_DIR

    @property
    def cohorts(self) -> Path:
        return self.root / COHORTS_DIR

    def cohort(self, source: str, backbone: str) -> Path:
        """A sweep's cohort checkpoint for one (source, backbone)."""
        return self.cohorts / f"{source}_{backbone}"

    @property
    def report(self) -> Path:
        """Tables, figures and summary.json written by ``inrlens report``."""
        return self.root / REPORT_DIR

    @property
    def submitit(self) -> Path:
        """Job logs and pickles of a sweep run through submitit."""
        return self.root / SUBMITIT_DIR

    @property
    def timings(self) -> Path:
        """Stage wall times of a reproduce run, one entry per invocation."""
        return self.root / TIMINGS_NAME

    @property
    def sweep(self) -> RunFolder:
        """A reproduce run's freeze sweep."""
        return RunFolder(self.root / SWEEP_DIR)

    @property
    def sae_dir(self) -> Path:
        return self.root / SAE_DIR

    def sae(self, condition: str) -> Path:
        """A reproduce run's SAE run folder for one condition (e.g. ``cohort-siren``)."""
        return self.sae_dir / condition

    @property
    def single_dir(self) -> Path:
        return self.root / SINGLE_DIR

    def single(self, backbone: str) -> Path:
        """A reproduce run's single-signal checkpoint for one backbone."""
        return self.single_dir / backbone

    @property
    def atlas(self) -> Path:
        """The atom atlas (index.html)."""
        return self.root / ATLAS_DIR

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    # results
    def results_files(self) -> list[Path]:
        """The run's result files that exist: results.jsonl, then every ``*.jsonl`` under results/ (sorted)."""
        files = [self.results_jsonl] if self.results_jsonl.is_file() else []
        if self.results_dir.is_dir():
            files += sorted(self.results_dir.rglob("*.jsonl"))
        return files

    def rows(self) -> list[dict[str, Any]]:
        """Every complete result row of the run (torn lines skipped)."""
        return read_rows(self.results_files())

    def done_keys(self) -> set[str]:
        """Keys of the rows already written (the resume set)."""
        return done_keys(self.results_files())
