"""One writer per run folder: the folder's owner lock.

:func:`inrlens.store.prepare_run` takes the folder's owner lock (:func:`acquire_run_lock`, an exclusive ``flock`` on
``.inrlens.lock``) before it reads or writes anything there, and the process keeps it until it exits (or
:func:`release_run_lock`). A second process that prepares the same folder gets a one-line :class:`RunConflict`
naming the owner (pid, host, start time, command line) and writes nothing. The lock dies with its process, so a
killed owner never blocks a rerun. Within one process the lock is re-entrant (a reproduce run prepares RUN, then
RUN/sweep, RUN/sae/...; preparing a folder twice is fine). The process that prepared the run folder owns it; its
jobs (submitit workers of a sweep, local processes or SLURM jobs) write under that ownership and must never call
``prepare_run`` or take the lock themselves (they would be refused by their own parent). A writer that adds files
to an existing run folder without preparing it (e.g. single-atom ablations in an SAE run) takes the lock with
:func:`acquire_run_lock` first.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import socket
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from .names import LOCK_NAME


class RunConflict(RuntimeError):
    """An output folder already holds a different run, or another process is writing to it."""


try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks, run folders are not protected against a second writer
    fcntl = None  # type: ignore[assignment]

_NO_LOCKS = {getattr(errno, name) for name in ("ENOLCK", "EOPNOTSUPP", "ENOSYS", "EINVAL") if hasattr(errno, name)}
"""errno values of flock on a file system without locks (some network mounts)."""
_BUSY = {getattr(errno, name) for name in ("EAGAIN", "EWOULDBLOCK", "EACCES") if hasattr(errno, name)}
"""errno values of a non-blocking lock that someone else holds."""


class _Held:
    """This process's hold on one run folder: the locked file descriptor and how many holds are open."""

    __slots__ = ("fd", "count")

    def __init__(self, fd: int) -> None:
        self.fd, self.count = fd, 0


_HELD: dict[str, _Held] = {}
_HELD_GUARD = threading.RLock()


def _lock_key(folder: Path) -> str:
    return os.path.realpath(folder)


def _command_line() -> str:
    argv = list(sys.argv) or ["?"]
    name = os.path.basename(argv[0]) or argv[0]
    head = ["python", "-c"] if name == "-c" else ["inrlens" if name in ("cli.py", "__main__.py") else name]  # -m inrlens.cli
    text = shlex.join([*head, *argv[1:]]).replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= 300 else text[:297] + "..."


def _owner_info() -> bytes:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "cmd": _command_line()}
    return (json.dumps(info, sort_keys=True) + "\n").encode()


def _read_owner(fd: int, wait: float = 0.0) -> dict[str, Any]:
    """The owner's details from the lock file; waits up to ``wait`` seconds for an owner that has just taken the
    lock to write them ({} when they never come)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict) and isinstance(info.get("pid"), int) and _may_be_alive(info):
            return info
        if time.monotonic() >= deadline:
            return {}
        time.sleep(0.02)


def _may_be_alive(info: dict[str, Any]) -> bool:
    """False when the details name a process of this host that no longer exists (a dead owner's details, not yet
    replaced by the new owner's)."""
    if info.get("host") != socket.gethostname():
        return True
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by another user
        return True
    return True


def _conflict_message(folder: Path, info: dict[str, Any]) -> str:
    tail = "is writing to this run folder; wait for it to finish or choose another --out"
    pid = info.get("pid")
    if not isinstance(pid, int):  # the owner took the lock a moment ago and has not written its details yet
        return f"{folder}: another inrlens process {tail}"
    host = info.get("host")
    where = f" on {host}" if isinstance(host, str) and host and host != socket.gethostname() else ""
    started = f", started {info['started']}" if isinstance(info.get("started"), str) else ""
    cmd = f": {info['cmd']}" if isinstance(info.get("cmd"), str) and info["cmd"] else ""
    return f"{folder}: another inrlens process (pid {pid}{where}{started}{cmd}) {tail}"


def _open_lock_file(path: Path) -> tuple[int, bool, bool]:
    """(fd, writable, created) of the lock file, created when missing. Opening an existing one modifies nothing."""
    flags = getattr(os, "O_CLOEXEC", 0)
    for _ in range(10):
        try:
            return os.open(path, os.O_RDWR | flags), True, False
        except FileNotFoundError:
            pass
        except OSError as e:  # a read-only lock file or file system: a read-only fd can still be locked
            if not (isinstance(e, PermissionError) or e.errno == errno.EROFS):
                raise
            return os.open(path, os.O_RDONLY | flags), False, False
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | flags, 0o666), True, True
        except FileExistsError:  # created by another process between the two opens: open that one
            continue
    return os.open(path, os.O_RDWR | flags), True, False


class RunLock:
    """One hold of a run folder's owner lock, from :func:`acquire_run_lock`.

    ``release()`` (or leaving a ``with`` block) gives this hold back; the folder is unlocked when the last hold
    of the process is given back, or when the process ends, however it ends (the OS closes the file).
    """

    __slots__ = ("folder", "path", "fresh", "_key", "_open", "_before")

    def __init__(self, folder: Path, key: str, fresh: bool, before: bytes | None = None) -> None:
        self.folder, self.path, self.fresh, self._key, self._open = folder, folder / LOCK_NAME, fresh, key, True
        self._before = before  # a fresh hold: the lock file's bytes before this process wrote its details (None: created)

    def __repr__(self) -> str:
        return f"RunLock({str(self.folder)!r}, {'held' if self._open else 'released'})"

    @property
    def held(self) -> bool:
        """True until this hold is released."""
        return self._open

    def release(self) -> None:
        """Give this hold back (a second call does nothing)."""
        with _HELD_GUARD:
            if not self._open:
                return
            self._open = False
            held = _HELD.get(self._key)
            if held is None:
                return
            held.count -= 1
            if held.count <= 0:
                del _HELD[self._key]
                _close(held.fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _close(fd: int) -> None:
    # Closing (never flock(LOCK_UN)) ends the lock: a child forked while it was held shares the open file and
    # an explicit unlock there would unlock the parent too.
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


def _flock_current(folder: Path, path: Path) -> tuple[int, bool, bool]:
    """(fd, writable, created) of the lock file ``path`` (created when missing), exclusively and non-blockingly
    flocked. Another holder: RunConflict naming it. A file system without locks: a warning, the file unlocked.
    Retried while the file locked is no longer the one at ``path``."""
    for _ in range(20):
        fd, writable, created = _open_lock_file(path)
        if fcntl is None:
            return fd, writable, created
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in _BUSY:
                info = _read_owner(fd, wait=2.0)
                _close(fd)
                raise RunConflict(_conflict_message(folder, info)) from None
            if e.errno not in _NO_LOCKS:
                _close(fd)
                raise
            warnings.warn(f"{folder}: this file system has no file locks; make sure no other inrlens process "
                          "writes to this run folder at the same time", stacklevel=3)
            return fd, writable, created
        # The file locked must still be the one at path: a writer that created the folder and then failed
        # removes its lock file before unlocking it, so a lock on a removed file is worth nothing.
        try:
            st, fst = os.stat(path), os.fstat(fd)
        except FileNotFoundError:
            _close(fd)
            continue
        if (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino):
            return fd, writable, created
        _close(fd)
    raise RunConflict(f"{folder}: could not take the run folder's lock ({LOCK_NAME} keeps being replaced)")


def _write_owner(fd: int, created: bool) -> bytes | None:
    """Write this process's details into the locked file; returns the bytes it held before (None when this call
    created it, or they could not be read)."""
    before = None
    try:
        before = None if created else _read_all(fd)
        data = _owner_info()
        os.pwrite(fd, data, 0)  # then cut what is left of the old details: a reader never sees an empty file
        os.ftruncate(fd, len(data))
    except OSError:  # the details are for messages only; the lock is what counts
        pass
    return before


def acquire_run_lock(folder: str | os.PathLike) -> RunLock:
    """Take the owner lock of the existing run folder ``folder`` for this process, or fail with RunConflict.

    An exclusive, non-blocking ``flock`` on ``folder/.inrlens.lock`` (created when missing). Once it is taken
    the file is rewritten with this process's pid, host, start time and command line, for the message another
    process gets: ``RunConflict("<folder>: another inrlens process (pid N, started …: <command>) is writing to
    this run folder; …")``. A refused caller writes nothing. Re-entrant: a process that already holds the lock
    (by the folder's resolved path) gets another hold at once. The lock is released when the last hold is
    released or the process ends, however it ends (a SIGKILLed owner never blocks the next writer).
    Jobs started by the owner (submitit workers) must not call this: they write under their parent's lock.
    """
    folder = Path(folder)
    key = _lock_key(folder)
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is not None:  # this process (or the parent it was forked from) holds it already
            held.count += 1
            return RunLock(folder, key, fresh=False)
        fd, writable, created = _flock_current(folder, folder / LOCK_NAME)
        before = _write_owner(fd, created) if writable and fcntl is not None else None
        held = _HELD[key] = _Held(fd)
        held.count = 1
        return RunLock(folder, key, fresh=True, before=before)


def _read_all(fd: int) -> bytes:
    chunks, pos = [], 0
    while chunk := os.pread(fd, 1 << 16, pos):
        chunks.append(chunk)
        pos += len(chunk)
    return b"".join(chunks)


def release_run_lock(folder: str | os.PathLike) -> bool:
    """Release every hold this process has on ``folder``'s owner lock (e.g. a notebook that prepared a run and
    wants another process to continue it). True when one was held."""
    key = _lock_key(Path(folder))
    with _HELD_GUARD:
        held = _HELD.pop(key, None)
        if held is None:
            return False
        _close(held.fd)
        return True


def held_run_locks() -> list[Path]:
    """The run folders (resolved paths) whose owner lock this process holds."""
    with _HELD_GUARD:
        return [Path(k) for k in _HELD]


def _undo_fresh_lock(lock: RunLock) -> None:
    """Release a hold that a refused prepare_run took, leaving the folder as it was: a lock file this call
    created is removed while still held (a process that opened it meanwhile then sees it gone and retries);
    one that was there gets its previous bytes back."""
    if lock.fresh and lock.held:
        with _HELD_GUARD:
            held = _HELD.get(lock._key)
            if held is not None and held.count == 1:
                try:
                    if lock._before is None:
                        os.unlink(lock.path)
                    else:
                        os.pwrite(held.fd, lock._before, 0)
                        os.ftruncate(held.fd, len(lock._before))
                except OSError:
                    pass
    lock.release()
