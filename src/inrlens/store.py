"""Persistence: checkpoints (``cfg.json`` + ``model.safetensors``), append-only JSONL results, run folders.

Crash safety: every file is written to a temporary name in the same folder, fsynced and renamed, so a reader
sees the old file or the new one, never half of one. A JSONL line is appended in one write that ends with a
newline and is fsynced; a reader ignores a last line without its newline (a writer killed mid-line) and
never parses it as data.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from safetensors.torch import load_file, save_file

from .config import NetConfig, to_dict
from .nets import Stack

CFG_NAME = "cfg.json"
MODEL_NAME = "model.safetensors"
RUN_NAME = "run.json"
TORN_MARK = b" <torn: interrupted write, ignored>\n"
"""Appended after a torn last line before the next row: the torn line can never parse as a row."""


class RunConflict(RuntimeError):
    """An output folder already holds a different run."""


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _clean(o: Any) -> Any:
    """NaN/Inf → None so that every line is strict JSON."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write data to path via temp file + fsync + rename (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(_clean(to_dict(obj)), indent=2, sort_keys=True, default=_json_default) + "\n").encode())


# ------------------------------------------------------------------------------------ checkpoints
def save_stack(stack: Stack, folder: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Save a stack as ``folder/cfg.json`` (architecture + meta) and ``folder/model.safetensors``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"weight{i}": w.detach().cpu().contiguous() for i, w in enumerate(stack.weights)}
    tensors.update({f"bias{i}": b.detach().cpu().contiguous() for i, b in enumerate(stack.biases)})
    if stack.fourier is not None:
        tensors["fourier"] = stack.fourier.detach().cpu().contiguous()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".model.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp)
        digest = _sha256(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, folder / MODEL_NAME)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
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


def checkpoint_ready(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a complete checkpoint (both files, digests matching)."""
    try:
        _read_cfg(Path(folder))
    except (FileNotFoundError, ValueError, OSError):
        return False
    return True


def load_stack(folder: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Stack, dict[str, Any]]:
    """Load a stack saved by :func:`save_stack` → (stack, meta). Clear error when the folder is not one."""
    folder = Path(folder)
    cfg = _read_cfg(folder)
    model_path = folder / MODEL_NAME
    try:
        net = NetConfig(**cfg["net"])
    except TypeError as e:
        raise ValueError(f"{folder / CFG_NAME}: bad 'net' entry ({e})") from None
    try:
        t = load_file(str(model_path), device=str(device))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise ValueError(f"{model_path}: not a readable safetensors file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    n = net.depth + 1
    missing = [k for k in [*(f"weight{i}" for i in range(n)), *(f"bias{i}" for i in range(n))] if k not in t]
    if missing:
        raise ValueError(f"{model_path}: missing tensors {', '.join(missing[:4])} for a depth-{net.depth} {net.backbone}")
    stack = Stack(net, int(cfg["out_features"]), t.get("fourier"), [t[f"weight{i}"] for i in range(n)], [t[f"bias{i}"] for i in range(n)])
    for p in stack.parameters():
        p.requires_grad_(False)
    return stack, cfg.get("meta", {})


# ------------------------------------------------------------------------------------ JSONL results
def append_row(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one JSON line (one write, newline-terminated, fsynced)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(_clean(row), sort_keys=True, default=_json_default, allow_nan=False) + "\n"
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


# ------------------------------------------------------------------------------------ run folders
def prepare_run(out: str | os.PathLike, config: dict[str, Any], resume: bool = False, overwrite: bool = False) -> Path:
    """Create/validate a run folder: refuse one that holds a different run's config unless resume/overwrite.

    resume: keep the folder's results and continue (the config must match, else RunConflict);
    overwrite: replace the recorded config (results already there are kept, never deleted).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunConflict(f"{out}: exists and is not a folder")
    run_file = out / RUN_NAME
    cfg = _clean(json.loads(json.dumps(to_dict(config), default=_json_default)))
    if run_file.exists() and not overwrite:
        try:
            old = json.loads(run_file.read_text())
        except json.JSONDecodeError:
            old = None
        if old != cfg:
            hint = "use --overwrite to replace it" if resume else "use --resume to continue it or --overwrite to replace it"
            raise RunConflict(f"{out}: holds a different run's config ({RUN_NAME}); {hint}")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_file, cfg)
    return out
