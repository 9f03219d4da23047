"""SIGINT and SIGTERM as an exception, and the moments they must wait.

The command line (:func:`inrlens.cli.main`) turns both signals into :class:`Interrupted` (a ``KeyboardInterrupt``)
for the whole command, so every ``finally`` block runs and a sweep cancels the jobs it started before the
process ends (exit status 128 + the signal's number). Two helpers keep a signal from cutting short what must
finish: :func:`deferred` holds it back until a block ends (used while jobs are submitted, so that no job is
started without the sweep knowing it) and :func:`shielded` drops repeats while the jobs are being cancelled.

Signal handlers belong to the main thread: outside it every helper here does nothing.
"""

from __future__ import annotations

import signal
import threading
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


__all__ = ["Interrupted", "raising", "trap_sigterm", "deferred", "shielded", "SIGNALS"]
