"""Append-only JSONL results: one row per line, appended in one write that ends with a newline and is fsynced; a
reader ignores a last line without its newline (a writer killed mid-line) and never parses it as data."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .atomic import _json_default, clean_json

TORN_MARK = b" <torn: interrupted write, ignored>\n"
"""Appended after a torn last line before the next row: the torn line can never parse as a row."""


def append_row(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one JSON line (one write, newline-terminated, fsynced)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(clean_json(row), sort_keys=True, default=_json_default, allow_nan=False) + "\n"
    with open(path, "ab") as f:
        # A previous writer killed mid-line leaves a torn tail, which readers have been ignoring. Close it with a
        # marker that keeps it invalid JSON forever (even a whole row that only lacked its newline: it was
        # already counted as missing and redone), then start ours on a fresh line.
        if f.tell() > 0:
            with open(path, "rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    f.write(TORN_MARK)
        f.write(line.encode())
        f.flush()
        os.fsync(f.fileno())


def iter_rows(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file; a line without its final newline or not valid JSON (a torn write) is skipped."""
    path = Path(path)
    if not path.exists():
        return
    data = path.read_bytes()
    for raw in data.split(b"\n")[:-1]:  # the part after the last newline is incomplete by definition
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            yield row


def read_rows(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """All rows of one JSONL file, a list of them, or every ``*.jsonl`` under a folder (recursively)."""
    if isinstance(paths, (str, os.PathLike)):
        p = Path(paths)
        files = sorted(p.rglob("*.jsonl")) if p.is_dir() else [p]
    else:
        files = [Path(x) for x in paths]
    return [r for f in files for r in iter_rows(f)]


def done_keys(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> set[str]:
    """Keys of rows already written (the resume set)."""
    return {r["key"] for r in read_rows(paths) if "key" in r}
