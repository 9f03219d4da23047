"""Checkpoints of a stack: ``cfg.json`` (architecture, meta, the weights' digest) + ``model.safetensors``, written
so that an interrupted writer leaves a pair recognised as incomplete, and checked against each other on load."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..backbones import get_backbone
from ..config import NetConfig, to_dict
from ..nets import Stack
from .atomic import atomic_write, atomic_write_json
from .names import CFG_NAME, MODEL_NAME


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
        digest = file_sha256(tmp)

    atomic_write(folder / MODEL_NAME, write)
    # cfg.json goes last and names the model's digest: a writer killed between the two renames leaves a pair
    # that load_stack / checkpoint_ready recognise as incomplete instead of silently mixing two checkpoints.
    atomic_write_json(folder / CFG_NAME, {"net": to_dict(stack.cfg), "out_features": stack.out_features, "meta": meta or {},
                                          "model_sha256": digest})
    return folder


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (64 hex digits) of a file's bytes: the digest checkpoints record and rows refer to."""
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
    if want is not None and file_sha256(model_path) != want:
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
    from ..nets import layer_dims

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
    from ..config import from_dict

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
