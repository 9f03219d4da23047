"""The one atomic write, and strict JSON.

Crash safety: every file is written to a temporary name unique to its writer (pid + random) in the same
folder, fsynced and renamed over the final name, so a reader sees the old file or the new one, never half of
one, and two writers of the same path never collide. The final file gets the usual ``0o666 & ~umask`` mode
(as if written with ``open``), not the private 0600 of ``tempfile.mkstemp``.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..config import to_dict


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Tensor):
        return clean_json(o.tolist())
    if hasattr(o, "item"):
        return clean_json(o.item())
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def clean_json(obj: Any) -> Any:
    """A copy of obj with every non-finite float (NaN, ±Inf) replaced by None, so that it is strict JSON.

    Walks dicts, lists and tuples (tuples become lists); other values are returned as they are.
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    return obj


_clean = clean_json  # the old private name, kept for callers not yet migrated


def _tmp_name(path: Path) -> Path:
    """A temp name beside path, unique to this writer (pid + random), keeping path's suffix so that writers
    that pick a format from the file name (matplotlib) still do."""
    return path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")


def _fsync_dir(folder: Path) -> None:
    """Make a rename in folder durable, where the platform lets a folder be opened and synced."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(folder, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes | Callable[[Path], None]) -> Path:
    """Write path atomically: a reader sees the old file or the complete new one, never half of one.

    data: the bytes to write, or a callable ``writer(tmp_path)`` that writes the whole file at ``tmp_path``
    (for writers that want a path: safetensors' ``save_file``, matplotlib's ``savefig``; the temp name keeps
    path's suffix). The temp file sits in path's folder under a name unique to this writer, is fsynced, then
    renamed over path (and the folder fsynced where supported). On any failure, including an exception raised
    by the writer, the temp file is removed and the error re-raised; path is left as it was. The new file's
    mode is ``0o666 & ~umask``. Returns path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    # Created here with mode 0o666, so the kernel applies the umask (and any default ACL) exactly as for a plain
    # open(): the mode it gets is the one the final file must have. Reading it back from the new file reads the
    # umask without os.umask's set-and-restore, which would race with other threads creating files.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if callable(data):
            os.close(fd)
            fd = -1
            data(tmp)
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            if stat.S_IMODE(os.fstat(fd).st_mode) != mode:  # writers that create their own file (safetensors: 0600)
                os.chmod(tmp, mode)
        else:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`atomic_write` with bytes (the older name)."""
    return atomic_write(path, bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """:func:`atomic_write` of a string."""
    return atomic_write(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """:func:`atomic_write` of obj as strict JSON (dataclasses → dicts, NaN/Inf → null, keys sorted, final newline)."""
    text = json.dumps(clean_json(to_dict(obj)), indent=indent, sort_keys=True, default=_json_default, allow_nan=False)
    return atomic_write_text(path, text + "\n")
