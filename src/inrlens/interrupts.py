"""SIGINT and SIGTERM as an exception, and the moments they must wait.

The command line (:func:`inrlens.cli.main`) turns both signals into :class:`Interrupted` (a ``KeyboardInterrupt``)
for the whole command, so every ``finally`` block runs and a sweep cancels the jobs it started before the
process ends (exit status 128 + the signal's number). Two helpers keep a signal from cutting short what must
finish: :func:`deferred` holds it back until a block ends (used while jobs are submitted, so that no job is
started without the sweep knowing it) and :func:`shielded` drops repeats while the jobs are being cancelled.

Signal handlers belong to the main thread: outside it every helper here does nothing.

A command killed outright (SIGKILL, an out-of-memory kill) runs no ``finally`` block and cannot stop its local
jobs. So each local job watches the command that started it (:func:`watch_owner`, given the command's
:func:`process_token` through :data:`OWNER_ENV`) and ends itself within about a second of the command's end.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM received; ``signum`` says which (the exit status is 128 + signum)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def _raise(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def _restore(old: dict) -> None:
    for s, h in old.items():
        if h is not None:  # None: a handler installed from C, which Python cannot put back
            signal.signal(s, h)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def raising(signals: tuple[int, ...] = SIGNALS) -> Iterator[None]:
    """Inside the block, each of ``signals`` raises :class:`Interrupted` in the main thread; the previous
    handlers are restored afterwards. A signal this process was started ignoring stays ignored (a shell script
    starts its background commands so, to keep a Ctrl-C meant for the script away from them)."""
    if not _main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise) for s in signals if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        _restore(old)


@contextmanager
def trap_sigterm() -> Iterator[None]:
    """Inside the block SIGTERM raises :class:`Interrupted` unless a handler of its own is installed already
    (without this, the default action ends the process at once: no ``finally`` block runs)."""
    if not _main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    with raising((signal.SIGTERM,)):
        yield


@contextmanager
def deferred(signals: tuple[int, ...] = SIGNALS) -> Iterator[None]:
    """Hold ``signals`` back inside the block; one received there is delivered (to the handler in place before)
    as the block ends."""
    if not _main_thread():
        yield
        return
    got: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in signals}
    try:
        yield
    finally:
        _restore(old)
        for s in dict.fromkeys(got):
            signal.raise_signal(s)


@contextmanager
def shielded(signals: tuple[int, ...] = SIGNALS) -> Iterator[None]:
    """Ignore ``signals`` inside the block (a second Ctrl-C cannot cut a cleanup short); previous handlers are
    restored afterwards and nothing is delivered late."""
    if not _main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in signals}
    try:
        yield
    finally:
        _restore(old)


# ------------------------------------------------------------------------------------------------ orphaned jobs
OWNER_ENV = "INRLENS_JOB_OWNER"
"""Environment variable through which a local job learns the :func:`process_token` of the command that started it."""

ORPHAN_EXIT = 3
"""Exit status of a local job that ended itself because the command that started it was gone."""

_watching: set[str] = set()


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks after boot, field 22 of /proc/PID/stat); None without /proc or
    when no such process is alive."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the command name, in parentheses, may hold spaces
    if len(fields) < 20 or fields[0] in ("Z", "X"):  # a zombie has ended: its parent just has not reaped it yet
        return None
    return fields[19]


def process_token(pid: int | None = None) -> str:
    """'PID:START' for a live process (this one by default): a pid alone could be reused by another process after
    this one ends; with the start time it cannot. 'PID' where /proc is missing."""
    pid = os.getpid() if pid is None else int(pid)
    start = _start_time(pid)
    return f"{pid}:{start}" if start is not None else str(pid)


def token_alive(token: str) -> bool:
    """Whether the process a :func:`process_token` names is still running (and is that process, not a later one
    given the same pid). An unreadable token counts as alive: a job is never ended on a guess."""
    pid_s, _, start = token.partition(":")
    try:
        pid = int(pid_s)
    except ValueError:
        return True
    if start:
        return _start_time(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, owned by someone else
        return True
    return True


def watch_owner(token: str | None = None, every: float = 1.0) -> bool:
    """In a local job: a daemon thread that ends this process (``os._exit(ORPHAN_EXIT)``, at once: nothing half
    done is saved, rows already appended stay, a torn last line is ignored by readers) once the process named by
    ``token`` (default: ``$INRLENS_JOB_OWNER``) has ended. Returns whether a watch runs (False without a token:
    a SLURM job or a job run in the command's own process); a second call for the same token starts nothing."""
    token = token if token is not None else os.environ.get(OWNER_ENV, "")
    if not token or token == process_token() or token in _watching:
        return bool(token) and token in _watching
    _watching.add(token)

    def watch() -> None:
        while token_alive(token):
            time.sleep(every)
        os._exit(ORPHAN_EXIT)

    threading.Thread(target=watch, name="inrlens-owner-watch", daemon=True).start()
    return True


__all__ = ["Interrupted", "raising", "trap_sigterm", "deferred", "shielded", "SIGNALS", "OWNER_ENV", "ORPHAN_EXIT",
           "process_token", "token_alive", "watch_owner"]
