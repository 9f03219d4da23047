"""Training-state files: a cohort interrupted mid-training continues from its last state instead of step 0.

While a cohort trains, :func:`inrlens.fit.fit_cohort` writes a :class:`~inrlens.loopstate.LoopState` every
``TrainConfig.checkpoint_every`` steps (None: about once a minute) to ``<cohort folder>/.train-state.safetensors``
(:data:`inrlens.store.TRAIN_STATE_NAME`): the stack's tensors, Adam's moments and step counts, the PSNR curve so
far and the divergence mask. The file is one safetensors file written atomically (:func:`inrlens.store.atomic_write`);
its header carries a JSON document (key ``inrlens``) with

* ``identity``: a hash of everything that decides the loop (:func:`identity`: the caller's run key, the
  architecture, the schedule with its resolved lr, the seed, the device type and Adam kernel, and every image's
  name, shape and pixels), so that a state is only ever used by the cohort that wrote it,
* ``step`` (Adam steps taken), ``seconds`` (training time so far) and ``digest`` (sha256 over the tensors, so
  that a damaged file is recognised).

A state that is missing is no news (training starts at step 0); one that cannot be used (unreadable, torn,
damaged, written for another config) is ignored with a one-line warning and training starts at step 0: a
state is never mixed into another run. The loop draws no random numbers, so there is no RNG state to keep;
continuing from a state gives the result of the uninterrupted loop (bit-identical on CPU). The caller removes
the file once the cohort's checkpoint is saved (:func:`remove`).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .config import NetConfig, TrainConfig, config_hash, key_dict
from .loopstate import LoopState
from .store import TRAIN_STATE_NAME, atomic_write

FORMAT = "inrlens-train-state/1"
"""Format tag of the header document; a file with another tag is not read."""


def path_in(folder: str | os.PathLike) -> Path:
    """The training-state file of a cohort folder."""
    return Path(folder) / TRAIN_STATE_NAME


def identity(run: str, net: NetConfig, train: TrainConfig, seed: int, device: torch.device | str, fused_adam: bool,
             signals: Sequence[Any]) -> str:
    """Hash of everything that decides a cohort's loop: ``run`` (the caller's key of the run or cohort), the
    architecture, the schedule (``train`` with the lr it trains at; ``checkpoint_every`` is left out, it does not
    change the loop), the init seed, the device type, the Adam kernel and each signal's name, shape, channels and
    pixels."""
    images = []
    for s in signals:
        t = s.targets().detach().to("cpu").contiguous()
        images.append([s.name, list(s.shape), int(s.channels), str(t.dtype), hashlib.sha256(t.numpy().tobytes()).hexdigest()])
    return config_hash({"format": FORMAT, "run": run, "net": key_dict(net), "train": key_dict(train), "seed": int(seed),
                        "device": torch.device(device).type, "fused_adam": bool(fused_adam), "images": images}, n=32)


def _digest(tensors: dict[str, Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _flatten(state: LoopState) -> dict[str, Tensor]:
    tensors = {f"param.{n}": t for n, t in state.tensors.items()}
    tensors.update({f"adam.{k}": t for k, t in state.adam.items()})
    tensors["loop.alive"] = state.alive
    tensors["loop.curve"] = state.curve
    tensors["loop.steps"] = torch.tensor(list(state.steps), dtype=torch.int64)
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}


def save(path: str | os.PathLike, state: LoopState, ident: str) -> Path:
    """Write ``state`` atomically to ``path`` (a reader sees the previous state or this one, never half of one)."""
    from safetensors.torch import save_file

    tensors = _flatten(state)
    doc = {"format": FORMAT, "identity": ident, "step": int(state.step), "seconds": float(state.seconds),
           "digest": _digest(tensors)}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"inrlens": json.dumps(doc, sort_keys=True)}))


def _warn(path: Path, why: str) -> None:
    warnings.warn(f"{path}: training state not used ({why}); training starts at step 0", RuntimeWarning, stacklevel=3)


def load(path: str | os.PathLike, ident: str) -> LoopState | None:
    """The state at ``path`` when it was written for ``ident`` and is intact; None when there is none (silently)
    or it cannot be used (one-line warning: unreadable, torn or damaged, another format, another identity)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a mapping
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        _warn(path, f"unreadable: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        return None
    try:
        doc = json.loads(meta.get("inrlens", ""))
        if not isinstance(doc, dict):
            raise ValueError
    except ValueError:
        _warn(path, "no inrlens header")
        return None
    if doc.get("format") != FORMAT:
        _warn(path, f"format {doc.get('format')!r}, expected {FORMAT!r}")
        return None
    if doc.get("identity") != ident:
        _warn(path, "written for another config, run or set of images")
        return None
    if doc.get("digest") != _digest(tensors):
        _warn(path, "damaged: its tensors do not match their digest")
        return None
    try:
        step, seconds = int(doc["step"]), float(doc["seconds"])
        alive, curve, steps = tensors["loop.alive"], tensors["loop.curve"], tensors["loop.steps"]
    except (KeyError, TypeError, ValueError):
        _warn(path, "incomplete header or loop tensors")
        return None
    params = {k[len("param."):]: t for k, t in tensors.items() if k.startswith("param.")}
    adam = {k[len("adam."):]: t for k, t in tensors.items() if k.startswith("adam.")}
    return LoopState(step, params, adam, alive, [int(s) for s in steps.tolist()], curve, seconds)


def clear_temps(path: str | os.PathLike) -> None:
    """Delete temporary files a writer of ``path`` killed mid-write left beside it (:func:`inrlens.store.atomic_write`
    names them ``.<stem>.<pid>-<random>.tmp<suffix>``). Only for the folder's one writer: the caller owns it."""
    path = Path(path)
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{path.stem}.*.tmp{path.suffix}"):
            try:
                tmp.unlink()
            except OSError:
                pass


def remove(path: str | os.PathLike) -> None:
    """Delete a training-state file and any temporary file a killed writer left beside it (no error when gone)."""
    try:
        Path(path).unlink()
    except FileNotFoundError:
        pass
    clear_temps(path)


__all__ = ["FORMAT", "path_in", "identity", "save", "load", "remove", "clear_temps"]
