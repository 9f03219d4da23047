"""One member of a saved INR on its own image's grid, with its activations: :class:`MemberContext`, built by
:func:`load_member` (from an INR and its images) or :meth:`MemberContext.from_run` (from an SAE run folder's
context.json). Every layer probe starts from one (docs/extending.md)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import DataConfig, from_dict
from ..identity import short
from .sae_run import SaeRun, _as_run, _inr_changed


@dataclass(frozen=True, eq=False)
class MemberContext:
    """One member of a saved INR on its own grid, with everything the probes need (read-only).

    Shapes: P = H·W grid coordinates (row-major), C output channels, L hidden layers of width d.
    """

    stack: Any
    """The saved INR (inrlens.nets.Stack), parameters frozen, on the context's device."""
    meta: dict[str, Any]
    """The checkpoint's metadata (regime, members, data, ...)."""
    member: int
    """Member index: which output head (cohort) or which independent INR of the stack."""
    image: str
    """Name of the member's image."""
    shape: tuple[int, int]
    """(H, W) of the grid."""
    coords: Tensor
    """(P, 2) grid coordinates in [-1, 1]."""
    target: Tensor
    """(P, C) the image in [-1, 1]."""
    acts: tuple[Tensor, ...]
    """L × (P, d): hidden activation h_ℓ of layer ℓ = 0..L−1 (a cohort's encoder is shared by all members)."""
    f: Tensor
    """(P, C) the member's output f = rest-of-network(h_{L−1})."""
    record: dict[str, Any]
    """What context.json holds: inr, images, member, image, data, condition, regime, backbone, shape."""

    @property
    def condition(self) -> str:
        return str(self.record["condition"])

    @property
    def depth(self) -> int:
        """L, the number of hidden layers."""
        return int(self.stack.cfg.depth)

    @property
    def device(self) -> torch.device:
        return self.coords.device

    @classmethod
    def from_run(cls, run_dir: str | Path | SaeRun, device: str | torch.device = "cpu") -> MemberContext:
        """Rebuild the member of an SAE run folder from its context.json (images are re-read)."""
        from ..identity import checkpoint_digest

        run = _as_run(run_dir)
        rec = run.read_context()
        data = from_dict(DataConfig, rec.get("data") or {}, f"{run.context} data")
        dev = _device(device)
        stack, meta = _load_stack(rec["inr"], dev)
        now = checkpoint_digest(rec["inr"])
        if rec.get("inr_sha256") and now and rec["inr_sha256"] != now:
            raise ValueError(_inr_changed(run, rec, rec["inr_sha256"], now))
        member = int(rec["member"])
        names = member_names(meta)
        want = names[member] if member < len(names) else rec.get("image")
        if rec.get("image") not in (None, want):
            raise ValueError(f"{run.context}: image {rec['image']!r} is not the image {want!r} of member {member} of {rec['inr']}")
        ctx = _build(stack, meta, member, tuple(rec["images"]), data, want, dev)
        digest = ctx.record["image_digest"]
        if rec.get("image_digest") not in (None, digest):
            warnings.warn(f"{run.root}: the pixels of image {ctx.image!r} changed since these SAEs were trained (digest "
                          f"{short(rec['image_digest'])} ≠ {short(digest)}); PSNRs against the image use the new pixels",
                          stacklevel=2)
        return replace(ctx, record=dict(rec, inr_sha256=now or rec.get("inr_sha256"), image_digest=digest))


def member_names(meta: dict[str, Any]) -> list[str]:
    """Image name of each member recorded in a checkpoint's metadata ('name@seed' → 'name'); [] if none."""
    return [str(m).split("@")[0] for m in meta.get("members", [])]


def pick_member(member: int | str, names: Sequence[str], count: int) -> int:
    """A member given as an index (int or digit string) or an image name → its index in 0..count−1."""
    if isinstance(member, int) or str(member).lstrip("-").isdigit():
        i = int(member)
        if not 0 <= i < count:
            raise ValueError(f"--member {i} is outside 0..{count - 1} for this INR")
        return i
    if member not in names:
        raise ValueError(f"--member {member!r} is not one of this INR's members: {', '.join(names) or '(none recorded)'}")
    return list(names).index(member)


def _device(device: str | torch.device) -> torch.device:
    from ..fit import resolve_device

    return device if isinstance(device, torch.device) else resolve_device(device)


def _load_stack(inr_dir: str | Path, device: torch.device) -> tuple[Any, dict[str, Any]]:
    from ..store import load_stack

    return load_stack(inr_dir, device=device)


def _build(stack: Any, meta: dict[str, Any], member: int, images: tuple[str, ...], data: DataConfig,
           want: str | None, dev: torch.device) -> MemberContext:
    """Load the member's image (``want`` by name, or the only image when no name is known), its grid and
    activations. Raises before anything is written."""
    from ..data import grid, harmonise_channels, resolve
    from .sae import layer_acts, run_from

    sigs = resolve(tuple(images), data)
    names = [s.name for s in sigs]
    if want is not None:
        if want not in names:
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise ValueError(f"image {want!r} of member {member} is not among the given images ({len(sigs)} found: {shown}); "
                             "pass the image the INR was fitted to")
        sig = sigs[names.index(want)]
    elif len(sigs) == 1:
        sig = sigs[0]
    else:
        raise ValueError(f"member {member} records no image name and {len(sigs)} images were given; "
                         "pass the one image the INR was fitted to")
    if sig.channels != stack.out_features:
        sig = harmonise_channels([sig], "rgb" if stack.out_features == 3 else "gray")[0]
    coords = grid(*sig.shape, device=dev)
    acts = tuple(layer_acts(stack, coords, member))
    f = run_from(stack, acts[-1], stack.cfg.depth - 1, member)
    return MemberContext(stack, meta, member, sig.name, tuple(sig.shape), coords, sig.targets().to(dev), acts, f,
                         {"image_digest": sig.digest})


def load_member(inr_dir: str | Path, images: Sequence[str | Path], member: int | str = 0, data: DataConfig | None = None,
                device: str | torch.device = "cpu", condition: str = "") -> MemberContext:
    """Load member ``member`` (index or image name) of the INR saved in ``inr_dir`` on its image's grid.

    images: the image(s) the INR was fitted to (files, folders, ``sample:NAME``, ``noise:…``). When the checkpoint records
    its members' images, the member's own image is picked from them by name and an image of another name is
    refused (one-line ValueError); otherwise exactly one image must be given. data: how to load the images;
    a checkpoint that recorded its own data settings (a cohort) uses those instead. condition: the label of
    this INR in tables and plots ('' = '<regime>-<backbone>').
    """
    dev = _device(device)
    from ..config import key_dict  # the recorded data settings omit knobs added later while at their default
    from ..data import is_source  # 'sample:…' / 'noise:…' are recorded as given, paths made absolute
    from ..identity import checkpoint_digest

    stack, meta = _load_stack(inr_dir, dev)
    names = member_names(meta)
    idx = pick_member(member, names, stack.members)
    data = from_dict(DataConfig, meta["data"], f"{inr_dir} data") if "data" in meta else (data or DataConfig())
    ctx = _build(stack, meta, idx, tuple(str(i) for i in images), data, names[idx] if idx < len(names) else None, dev)
    regime = meta.get("regime", "single")
    rec = {"inr": str(Path(inr_dir).resolve()),
           "images": [str(i) if is_source(i) else str(Path(i).resolve()) for i in images],
           "member": idx, "image": ctx.image, "data": key_dict(data), "condition": condition or f"{regime}-{stack.cfg.backbone}",
           "regime": regime, "backbone": stack.cfg.backbone, "shape": list(ctx.shape),
           "inr_sha256": checkpoint_digest(inr_dir), "image_digest": ctx.record["image_digest"]}
    return replace(ctx, record=rec)


__all__ = ["MemberContext", "load_member", "member_names", "pick_member"]
