"""Keep freed memory inside the process: on glibc, large tensors otherwise cost a page fault per page, every step.

glibc's ``malloc`` serves a request larger than its mmap threshold (128 KiB, raised dynamically up to 32 MiB) with a
fresh ``mmap`` and gives it back with ``munmap`` when freed. A training step on CPU allocates activations of
(members × pixels × width) floats — tens of MiB for a stack of 128×192 images at width 64 — and frees them again,
so every step maps new pages that the kernel must fault in and zero: on the development machine about half of a
fit's CPU time was system time. :func:`keep_freed_memory` raises the mmap threshold (and the heap trim threshold)
to 1 GiB with ``mallopt``, so freed blocks stay in the heap and the next step reuses them; results are unchanged
(the arithmetic is the same), the process keeps its peak heap instead of returning it between steps.

The command line turns it on for itself and for every sweep job; from Python call it once at the start of a script
(``inrlens.keep_freed_memory()``). ``INRLENS_KEEP_FREED_MEMORY=0`` turns it off. Elsewhere than glibc (macOS,
musl, Windows) it does nothing. Measured in ``benchmarks/bench_allocator.py``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

ENV = "INRLENS_KEEP_FREED_MEMORY"
THRESHOLD = 1 << 30
"""Bytes: requests below this come from the heap, and the heap is trimmed only above it."""

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers (malloc.h)

_state: dict[str, bool] = {}


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - present only in glibc
        return libc
    except (OSError, AttributeError):
        return None


def keep_freed_memory(enable: bool | None = None) -> bool:
    """Raise glibc's mmap and trim thresholds to :data:`THRESHOLD` (once per process). ``enable`` None: on unless
    ``$INRLENS_KEEP_FREED_MEMORY`` is '0'. Returns whether the thresholds are raised in this process."""
    if enable is None:
        enable = os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")
    if not enable:
        return _state.get("on", False)
    if "on" in _state:
        return _state["on"]
    libc = _glibc()
    ok = bool(libc is not None and libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD) == 1 and libc.mallopt(M_TRIM_THRESHOLD, THRESHOLD) == 1)
    _state["on"] = ok
    return ok


def kept() -> bool:
    """Whether :func:`keep_freed_memory` raised the thresholds in this process (recorded with every result row)."""
    return _state.get("on", False)
