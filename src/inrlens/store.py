"""Persistence: the one atomic write, checkpoints (``cfg.json`` + ``model.safetensors``), append-only JSONL
results, and the layout of a run folder (:class:`RunFolder`; every file name lives here, once).

Crash safety: every file is written to a temporary name unique to its writer (pid + random) in the same
folder, fsynced and renamed over the final name, so a reader sees the old file or the new one, never half of
one, and two writers of the same path never collide. The final file gets the usual ``0o666 & ~umask`` mode
(as if written with ``open``), not the private 0600 of ``tempfile.mkstemp``. A JSONL line is appended in one
write that ends with a newline and is fsynced; a reader ignores a last line without its newline (a writer
killed mid-line) and never parses it as data.

One writer per run folder: :func:`prepare_run` takes the folder's owner lock (:func:`acquire_run_lock`, an
exclusive ``flock`` on ``.inrlens.lock``) before it reads or writes anything there, and the process keeps it
until it exits (or :func:`release_run_lock`). A second process that prepares the same folder gets a one-line
:class:`RunConflict` naming the owner (pid, host, start time, command line) and writes nothing. The lock dies
with its process, so a killed owner never blocks a rerun. Within one process the lock is re-entrant (a
reproduce run prepares RUN, then RUN/sweep, RUN/sae/...; preparing a folder twice is fine). The process that
prepared the run folder owns it; its jobs (submitit workers of a sweep, local processes or SLURM jobs) write
under that ownership and must never call :func:`prepare_run` or take the lock themselves (they would be
refused by their own parent). A writer that adds files to an existing run folder without preparing it (e.g.
single-atom ablations in an SAE run) takes the lock with :func:`acquire_run_lock` first.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import secrets
import shlex
import socket
import stat
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .backbones import get_backbone
from .config import NetConfig, key_dict, to_dict
from .nets import Stack

# ------------------------------------------------------------------------------------ file names (the one place)
CFG_NAME = "cfg.json"
"""Checkpoint architecture + meta + the weights' digest (written after the weights)."""
MODEL_NAME = "model.safetensors"
"""Checkpoint weights."""
RUN_NAME = "run.json"
"""A run folder's recorded config (resume refuses a different one)."""
RESULTS_NAME = "results.jsonl"
"""One JSON row per fit (fit / cohort / transfer commands, SAE runs)."""
RESULTS_DIR = "results"
"""A sweep's results: one JSONL file per job."""
MODELS_DIR = "models"
COHORTS_DIR = "cohorts"
REPORT_DIR = "report"
SUBMITIT_DIR = "submitit"
TIMINGS_NAME = "timings.json"
SAE_DIR = "sae"
SINGLE_DIR = "single"
ATLAS_DIR = "atlas"
SWEEP_DIR = "sweep"
CONTEXT_NAME = "context.json"
"""An SAE run's context: which INR member, grid and target it probes."""
TRAIN_STATE_NAME = ".train-state.safetensors"
"""A cohort folder's training state while the cohort trains (:mod:`inrlens.trainstate`); removed when it is saved."""
LOCK_NAME = ".inrlens.lock"
"""A run folder's owner lock (see :func:`acquire_run_lock`): the owner's pid, host, start time and command line."""
TORN_MARK = b" <torn: interrupted write, ignored>\n"
"""Appended after a torn last line before the next row: the torn line can never parse as a row."""


class RunConflict(RuntimeError):
    """An output folder already holds a different run, or another process is writing to it."""


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


# ------------------------------------------------------------------------------------ checkpoints
def save_stack(stack: Stack, folder: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Save a stack as ``folder/cfg.json`` (architecture + meta) and ``folder/model.safetensors``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"weight{i}": w.detach().cpu().contiguous() for i, w in enumerate(stack.weights)}
    tensors.update({f"bias{i}": b.detach().cpu().contiguous() for i, b in enumerate(stack.biases)})
    tensors.update({name: t.detach().cpu().contiguous() for name, t in stack.encoding.items()})  # e.g. FFMLP's "fourier"
    digest = ""

    def write(tmp: Path) -> None:
        nonlocal digest
        save_file(tensors, str(tmp))
        digest = _sha256(tmp)

    atomic_write(folder / MODEL_NAME, write)
    # cfg.json goes last and names the model's digest: a writer killed between the two renames leaves a pair
    # that load_stack / checkpoint_ready recognise as incomplete instead of silently mixing two checkpoints.
    atomic_write_json(folder / CFG_NAME, {"net": to_dict(stack.cfg), "out_features": stack.out_features, "meta": meta or {},
                                          "model_sha256": digest})
    return folder


def _sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_cfg(folder: Path) -> dict[str, Any]:
    cfg_path, model_path = folder / CFG_NAME, folder / MODEL_NAME
    if not cfg_path.exists() or not model_path.exists():
        raise FileNotFoundError(f"{folder}: not a saved INR (needs {CFG_NAME} and {MODEL_NAME})")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg_path}: not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(cfg, dict) or "net" not in cfg or "out_features" not in cfg:
        raise ValueError(f"{cfg_path}: not an inrlens checkpoint config (needs 'net' and 'out_features')")
    want = cfg.get("model_sha256")  # absent in checkpoints written before the digest was recorded
    if want is not None and _sha256(model_path) != want:
        raise ValueError(f"{folder}: incomplete checkpoint ({MODEL_NAME} does not match {CFG_NAME}; a writer was interrupted); "
                         "rerun the command that wrote it")
    return cfg


def checkpoint_ready(folder: str | os.PathLike, key: str | None = None) -> bool:
    """True when ``folder`` holds a complete checkpoint (both files, digests matching) and, when key is given,
    one whose recorded ``meta["key"]`` is that key (a sweep's cohort folder written for this spec)."""
    try:
        cfg = _read_cfg(Path(folder))
    except (FileNotFoundError, ValueError, OSError):
        return False
    if key is not None:
        meta = cfg.get("meta")
        return isinstance(meta, dict) and meta.get("key") == key
    return True


def _encoding_shapes(net: NetConfig) -> dict[str, tuple[int, ...]]:
    """Shape of each encoding tensor of one member (drawn on the meta device: no memory, whatever the table size)."""
    bb = get_backbone(net.backbone)
    try:
        with torch.device("meta"):
            enc = bb.draw_encoding(net, torch.Generator().manual_seed(0))
    except (RuntimeError, NotImplementedError, TypeError):  # a plug-in's op without a meta kernel: draw it for real
        enc = bb.draw_encoding(net, torch.Generator().manual_seed(0))
    return {k: tuple(v.shape) for k, v in enc.items()}


def check_tensors(folder: str | os.PathLike, net: NetConfig, out_features: int, shapes: dict[str, tuple[int, ...]]) -> tuple[str, ...]:
    """Check a checkpoint's tensor ``shapes`` (name → shape) against what its cfg.json (``net``, ``out_features``)
    implies for the backbone: ``weight<ℓ>`` (B_ℓ, in_ℓ, out_ℓ) and ``bias<ℓ>`` (B_ℓ, 1, out_ℓ) for ℓ = 0..L
    (:func:`inrlens.nets.layer_dims`), each encoding tensor (B_f, …) as the backbone draws it, member counts 1 or
    B, and no other tensor. A one-line ValueError names the first mismatch, e.g. ``…/cfg.json says width 32 but
    weight1 is (1, 64, 64)``. Returns the encoding tensors' names."""
    from .nets import layer_dims

    folder = Path(folder)
    cfg_path, model_path = folder / CFG_NAME, folder / MODEL_NAME
    L = net.depth
    stored = sorted(int(k[6:]) for k in shapes if k.startswith("weight") and k[6:].isdigit())
    if stored != list(range(L + 1)):
        have = f"weight0..weight{stored[-1]} (depth {stored[-1]})" if stored == list(range(len(stored))) and stored else \
            f"weights {', '.join(map(str, stored)) or 'none'}"
        raise ValueError(f"{cfg_path} says depth {L} (weight0..weight{L}) but {MODEL_NAME} holds {have}")
    enc = _encoding_shapes(net)
    dims = layer_dims(net, out_features)
    want = set(enc) | {f"{kind}{i}" for i in range(L + 1) for kind in ("weight", "bias")}
    missing = [k for k in [*enc, *(f"bias{i}" for i in range(L + 1))] if k not in shapes]
    if missing:
        raise ValueError(f"{model_path}: has no tensor {missing[0]}, which a {net.backbone} of depth {L} needs")
    extra = sorted(set(shapes) - want)
    if extra:
        raise ValueError(f"{model_path}: holds tensors that {CFG_NAME} does not describe: {', '.join(extra[:4])}"
                         f"{', …' if len(extra) > 4 else ''}")
    members = {}
    for name, one in enc.items():
        got = tuple(shapes[name])
        if len(got) != len(one) + 1 or got[1:] != one:
            raise ValueError(f"{cfg_path} says a {net.backbone} whose {name} is (members, {', '.join(map(str, one))}) "
                             f"but {name} is {got}")
        members[name] = got[0]
    for ell, (fan_in, fan_out) in enumerate(dims):
        for name, exp in ((f"weight{ell}", (fan_in, fan_out)), (f"bias{ell}", (1, fan_out))):
            got = tuple(shapes[name])
            if len(got) == 3 and got[1:] == exp:
                members[name] = got[0]
                continue
            if len(got) != 3 or (name.startswith("bias") and got[2] == exp[1]):
                raise ValueError(f"{model_path}: {name} is {got}, not (members, {exp[0]}, {exp[1]})")
            if got[2] != exp[1]:
                field = f"out_features {out_features}" if ell == L else f"width {net.width}"
            else:
                field = f"{net.backbone} with an input of size {fan_in}" if ell == 0 else f"width {net.width}"
            raise ValueError(f"{cfg_path} says {field} but {name} is {got}")
    for i in range(L + 1):
        if members[f"bias{i}"] != members[f"weight{i}"]:
            raise ValueError(f"{model_path}: bias{i} has {members[f'bias{i}']} members but weight{i} has {members[f'weight{i}']}")
    B = max(members.values())
    odd = next((k for k, b in members.items() if b not in (1, B)), None)
    if odd is not None:
        raise ValueError(f"{model_path}: {odd} has {members[odd]} members; every tensor must have 1 (shared) or {B}")
    return tuple(enc)


def load_stack(folder: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Stack, dict[str, Any]]:
    """Load a stack saved by :func:`save_stack` → (stack, meta). Clear error when the folder is not one, and when
    its cfg.json does not describe its tensors (:func:`check_tensors`: a hand-edited depth, width or out_features)."""
    folder = Path(folder)
    cfg = _read_cfg(folder)
    model_path = folder / MODEL_NAME
    from .config import from_dict

    net = from_dict(NetConfig, cfg["net"], f"{folder / CFG_NAME}: net")
    out_features = cfg["out_features"]
    if isinstance(out_features, bool) or not isinstance(out_features, int) or out_features < 1:
        raise ValueError(f"{folder / CFG_NAME}: out_features must be an integer >= 1, got {out_features!r}")
    try:
        t = load_file(str(model_path), device=str(device))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{model_path}: not a readable safetensors file ({why})") from None
    n = net.depth + 1
    enc_names = check_tensors(folder, net, out_features, {k: tuple(v.shape) for k, v in t.items()})
    stack = Stack(net, out_features, {k: t[k] for k in enc_names}, [t[f"weight{i}"] for i in range(n)],
                  [t[f"bias{i}"] for i in range(n)])
    for p in stack.parameters():
        p.requires_grad_(False)
    return stack, cfg.get("meta", {})


# ------------------------------------------------------------------------------------ JSONL results
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


# ------------------------------------------------------------------------------------ run folder ownership
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
        path = folder / LOCK_NAME
        fd = -1
        for _ in range(20):
            fd, writable, created = _open_lock_file(path)
            if fcntl is None:
                break
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
                              "writes to this run folder at the same time", stacklevel=2)
                break
            # The file locked must still be the one at path: a writer that created the folder and then failed
            # removes its lock file before unlocking it, so a lock on a removed file is worth nothing.
            try:
                st, fst = os.stat(path), os.fstat(fd)
            except FileNotFoundError:
                _close(fd)
                continue
            if (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino):
                break
            _close(fd)
        else:
            raise RunConflict(f"{folder}: could not take the run folder's lock ({LOCK_NAME} keeps being replaced)")
        before = None
        if writable and fcntl is not None:
            try:
                before = None if created else _read_all(fd)
                data = _owner_info()
                os.pwrite(fd, data, 0)  # then cut what is left of the old details: a reader never sees an empty file
                os.ftruncate(fd, len(data))
            except OSError:  # the details are for messages only; the lock is what counts
                pass
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


# ------------------------------------------------------------------------------------ run folders
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
