"""Configuration dataclasses with the defaults described in docs/protocol.md.

Every knob of the study is a field here; nothing numeric is hard-coded elsewhere. The CLI is generated from
these classes by tyro, which reads the docstring under each field as its help text. Tags in the docstrings
say where a default comes from: [paper], [STRAINER], [Gao] or [guess] (docs/protocol.md explains each tag).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import tyro


def _backbone_choices() -> Any:
    from .backbones import backbone_choices

    return backbone_choices()


BackboneName = Annotated[str, tyro.conf.arg(constructor_factory=_backbone_choices,
                                            help_behavior_hint=lambda d: "(default: " + d.strip("[]") + ")")]
"""A registered backbone name (``inrlens.backbones``); the CLI offers the names registered when it parses."""


@dataclass(frozen=True)
class NetConfig:
    """Architecture of one INR (Eq. 1 of the paper; docs/protocol.md)."""

    backbone: BackboneName = "siren"
    """A registered backbone. Built in: 'siren' (sine activations), 'ffmlp' (Fourier features + ReLU MLP),
    'gauss' (Gaussian activations), 'wire' (complex Gabor wavelets), 'finer' (variable-periodic sines) and
    'hashgrid' (multiresolution hash encoding + ReLU MLP); docs/backbones.md describes them, docs/extending.md
    adds more."""
    width: int = 256
    """Hidden width of every encoder layer [paper]."""
    depth: int = 5
    """Number of hidden (encoder) layers L; layer indices are 0..L-1 [paper]."""
    omega0: float = 30.0
    """SIREN frequency ω₀ of the hidden layers [guess]."""
    omega0_first: float = 30.0
    """SIREN frequency ω₀ of the first layer [guess]."""
    ff_features: int = 256
    """FFMLP: number m of Fourier frequencies; γ(x) has 2m entries [guess]."""
    ff_sigma: float = 10.0
    """FFMLP: std σ of the fixed Gaussian frequency matrix B, in cycles per unit coordinate [guess]. Scale it
    with the image size (σ ≈ 10·res/256) when images are downscaled (docs/protocol.md)."""
    gauss_scale: float = 10.0
    """gauss: scale s of the activation exp(−(s·z)²) (σ = 1/(s√2) in the exp(−z²/2σ²) form) [WIRE code: the Gaussian
    INR's default scale; FINER's image scripts use 30]."""
    wire_omega0: float = 20.0
    """wire: frequency ω₀ of the complex Gabor wavelet exp(jω₀z − |s₀z|²), every layer [WIRE code: its suggested
    image-representation ω₀; FINER's WIRE image baseline uses the same]."""
    wire_scale: float = 10.0
    """wire: spread s₀ of the Gabor wavelet's Gaussian window exp(−|s₀z|²), every layer [WIRE code: the model
    factory's default; FINER's WIRE image baseline uses the same; a comment in WIRE's scripts suggests 30]."""
    finer_omega0: float = 30.0
    """finer: frequency ω₀ of sin(ω₀(|z| + 1)z), every layer [FINER code: first and hidden ω₀ = 30]."""
    finer_first_bias: float | None = None
    """finer: k of the first layer's bias init U(−k, k); None = nn.Linear's U(±1/√2) for the 2-d input, the FINER
    code's default (first_bias_scale=None) [FINER code]. A larger k moves layer 0 to higher frequencies."""
    hash_levels: int = 16
    """hashgrid: number of resolution levels L of the hash encoding [paper]."""
    hash_features: int = 2
    """hashgrid: features F per level; γ(x) has L·F entries [paper]."""
    hash_log2_table: int = 16
    """hashgrid: log₂ of the table size T per level (2^16 ≈ one entry per pixel of a 256² image) [guess; the
    paper uses 2^14 to 2^24]."""
    hash_min_res: int = 16
    """hashgrid: coarsest grid resolution N_min [paper]."""
    hash_max_res: int = 512
    """hashgrid: finest grid resolution N_max, cells per unit side [guess]. instant-ngp matches it to the finest
    detail of the data: set it to the images' longer side (512 sits between the study's 256 px faces and 768 px
    Kodak photographs). Fixed per config, so that a cohort's shared table means one function on every grid."""

    def __post_init__(self) -> None:
        from .backbones import get_backbone

        get_backbone(self.backbone)  # unknown name: one-line ValueError listing the registered ones
        if self.width < 1 or self.depth < 1:
            raise ValueError(f"width and depth must be >= 1, got width={self.width} depth={self.depth}")
        if self.ff_features < 1 or self.ff_sigma <= 0:
            raise ValueError("ff_features must be >= 1 and ff_sigma > 0")
        for name in ("omega0", "omega0_first", "ff_sigma", "gauss_scale", "wire_omega0", "wire_scale", "finer_omega0"):
            v = getattr(self, name)  # NaN and inf pass a plain "> 0" test
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and v > 0 and v != float("inf")):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        k = self.finer_first_bias
        if k is not None and (isinstance(k, bool) or not (isinstance(k, (int, float)) and 0 < k < float("inf"))):
            raise ValueError(f"finer_first_bias must be None or a finite number > 0, got {k!r}")
        for name in ("hash_levels", "hash_features", "hash_log2_table", "hash_min_res", "hash_max_res"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.hash_log2_table > 30:
            raise ValueError(f"hash_log2_table must be <= 30 (2^30 entries per level), got {self.hash_log2_table}")
        if self.hash_max_res < self.hash_min_res:
            raise ValueError(f"hash_max_res ({self.hash_max_res}) must be >= hash_min_res ({self.hash_min_res})")
        if self.backbone == "wire" and self.width % 2:
            raise ValueError(f"wire needs an even width (real and imaginary parts of width/2 complex units), got {self.width}")


@dataclass(frozen=True)
class TrainConfig:
    """One Adam fitting loop (single-signal, cohort or transfer)."""

    steps: int = 500
    """Adam steps; full batch: every pixel every step [paper]."""
    lr: float | None = None
    """Learning rate; None = 1e-4 for SIREN, 1e-3 for FFMLP single fits, 1e-4 for cohort and transfer."""
    log_every: int = 10
    """Record the PSNR curve every this many steps (the last step is always recorded)."""
    target_psnr: float | None = None
    """Stop early once the members' PSNR, read as ``stop_metric`` says, reaches this (dB); None = never, run all
    steps (cohort: 30 [paper])."""
    tf32: bool = False
    """Allow TF32 matmuls on CUDA (recorded with every result). Ignored on CPU."""
    compile: bool = False
    """Wrap the forward pass in torch.compile (static shapes). Opt-in; recorded with every result."""
    fused_adam: bool = True
    """Use the fused Adam kernel where the device supports it (CUDA); results equal to float tolerance."""
    device: str = "auto"
    """'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    checkpoint_every: int | None = None
    """Cohorts: write a training state (weights, Adam moments, curve) every this many steps, so that an
    interrupted cohort resumes from it ('inrlens cohort --resume', a rerun sweep) instead of step 0; None = about
    once a minute of training. Single and transfer fits write none. Not part of result keys: a resumed cohort
    equals an uninterrupted one (docs/run-folder.md)."""
    stop_metric: Literal["mean_psnr", "summed_mse_psnr"] = "mean_psnr"
    """What ``target_psnr`` is compared with: 'mean_psnr', the mean over members of each member's PSNR, the
    paper's cohort-mean PSNR [paper]; 'summed_mse_psnr', 10·log10(4 / Σᵢ MSEᵢ) of the members' summed MSE on
    [-1, 1] pixels, the cohort "PSNR" some STRAINER-derived code logs, which reads at most mean_psnr − 10·log10(N)
    for N members (exactly that when all MSEs are equal), so its 30 dB stop comes ≥ 10 dB later for N = 10
    [STRAINER forks].
    Only members whose loss is finite count. Ignored when target_psnr is None (docs/protocol.md)."""

    NON_RESULT: ClassVar[frozenset[str]] = frozenset({"checkpoint_every"})
    """Fields that never change a result, left out of keys and recorded run configs (see :func:`key_dict`)."""

    def __post_init__(self) -> None:
        every = self.checkpoint_every
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError(f"checkpoint_every must be None or an integer >= 1 (steps), got {every!r}")
        if not self.steps >= 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not self.log_every >= 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")
        if self.lr is not None and not (0 < self.lr < float("inf")):  # also refuses NaN
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if self.target_psnr is not None and not (-float("inf") < self.target_psnr < float("inf")):
            raise ValueError(f"target_psnr must be a finite number (dB), got {self.target_psnr}")
        if self.stop_metric not in ("mean_psnr", "summed_mse_psnr"):
            raise ValueError(f"stop_metric must be 'mean_psnr' or 'summed_mse_psnr', got {self.stop_metric!r}")


@dataclass(frozen=True)
class DataConfig:
    """How images become signals: crop, resize, channels (see docs/datasets.md).

    ``size`` and ``scale`` are the two ways to resize, and at most one may be given: ``size`` brings every
    image to one longer side; ``scale`` multiplies every image's own size by one factor, so a dataset keeps
    its native resolution relative to the others (the paper's Kodak photographs have 3× the pixels per side
    of its CelebA-HQ faces). Sizes after resizing are rounded to the nearest integer, halves up, and are at
    least 3 px per side."""

    size: int | None = None
    """Resize so that the longer side has this many pixels (aspect kept, Lanczos; at least 3); None = native."""
    scale: float | None = None
    """Multiply every image's native height and width by this factor (aspect kept, Lanczos; each side rounded
    to the nearest integer, halves up, at least 3 px); None = native. Excludes ``size``."""
    square: bool = False
    """Centre-crop to a square before resizing."""
    channels: Literal["auto", "gray", "rgb"] = "auto"
    """'auto' keeps gray as 1 channel and colour as 3, promoting gray to RGB when a set mixes both."""
    max_pixels: int = 4096 * 4096
    """Refuse images with more pixels than this (a clear error names the limit)."""
    on_bad_file: Literal["error", "skip"] = "error"
    """In a folder, a file that is not a readable image: 'error' stops, 'skip' warns and goes on."""

    def __post_init__(self) -> None:
        if self.size is not None and self.scale is not None:
            raise ValueError(f"give the image size or the scale, not both (size={self.size}, scale={self.scale})")
        if self.size is not None and (isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 3):
            raise ValueError(f"size must be an integer >= 3 (pixels of the longer side), got {self.size!r}")
        if self.scale is not None:
            try:
                ok = not isinstance(self.scale, bool) and math.isfinite(self.scale) and self.scale > 0
            except TypeError:
                ok = False
            if not ok:
                raise ValueError(f"scale must be a finite number > 0, got {self.scale!r}")


def to_dict(obj: Any) -> Any:
    """Dataclass (possibly nested) → plain JSON-able dict."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


KEY_FIELDS: dict[type, tuple[str, ...]] = {}
"""For each config class, the fields it had when result keys were first computed from it. A field added later
enters :func:`key_dict` (and so every key and every recorded run config) only when it differs from its default,
so adding a knob keeps existing run folders resumable. Classes register with :func:`register_key_fields`."""


def register_key_fields(cls: type, names: tuple[str, ...]) -> None:
    """Freeze the key-relevant field set of ``cls`` (call once, where the class is defined)."""
    unknown = set(names) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(sorted(unknown))}")
    KEY_FIELDS[cls] = tuple(names)


def key_dict(obj: Any) -> Any:
    """Plain dict of a config for keys and recorded run configs: :func:`to_dict`, except that fields added after
    a class's keys were fixed (not in :data:`KEY_FIELDS`) are left out while they hold their default, and fields
    a class names in its ``NON_RESULT`` class attribute (knobs that never change a result, such as
    ``TrainConfig.checkpoint_every``) are always left out."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        known = KEY_FIELDS.get(type(obj))
        skip = getattr(type(obj), "NON_RESULT", frozenset())
        out = {}
        for f in dataclasses.fields(obj):
            if f.name in skip:
                continue
            v = getattr(obj, f.name)
            if known is not None and f.name not in known and f.default is not dataclasses.MISSING and v == f.default:
                continue
            out[f.name] = key_dict(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [key_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): key_dict(v) for k, v in obj.items()}
    return obj


def config_hash(obj: Any, n: int = 16) -> str:
    """Stable hash of a config (dataclass or dict): sha256 of the canonical JSON of :func:`key_dict`, first n hex
    digits. The one hash every result key is built from."""
    blob = json.dumps(key_dict(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


register_key_fields(NetConfig, ("backbone", "width", "depth", "omega0", "omega0_first", "ff_features", "ff_sigma"))
register_key_fields(TrainConfig, ("steps", "lr", "log_every", "target_psnr", "tf32", "compile", "fused_adam", "device"))
register_key_fields(DataConfig, ("size", "square", "channels", "max_pixels", "on_bad_file"))


def read_table_file(path: str | os.PathLike, what: str, python: Any = None) -> dict[str, Any]:
    """The top-level table of a definition file (``what``: e.g. "sweep definition") as a plain dict: TOML, YAML,
    or — when ``python`` is given — a .py file, passed to ``python(path)``. A missing file, a syntax error, another
    suffix or a top level that is not a table are one-line errors naming the file."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such {what}")
    suf = path.suffix.lower()
    if suf == ".toml":
        import tomllib

        try:
            d = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: invalid TOML ({e})") from None
    elif suf in (".yaml", ".yml"):
        import yaml

        try:
            d = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    elif suf == ".py" and python is not None:
        d = python(path)
    else:
        kinds = ".toml, .yaml/.yml or .py" if python is not None else ".toml or .yaml/.yml"
        raise ValueError(f"{path}: {what}s are {kinds} files")
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a table/mapping at the top level")
    return d


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against (and lightly converted to) the annotation ``tp``; one-line ValueError otherwise.

    Accepts ints for floats, lists for tuples, tables (dicts) for nested dataclasses; bools are never numbers."""
    origin = get_origin(tp)
    args = get_args(tp)
    if tp is Any:
        return value
    if origin is Annotated:
        return _coerce(value, args[0], where)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0] if len(errors) == 1 else f"{where}: {value!r} is none of {' | '.join(_type_name(a) for a in args)}")
    if origin is Literal:
        if value in args:
            return value
        raise ValueError(f"{where}: {value!r} is not one of {', '.join(repr(a) for a in args)}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a table of {tp.__name__} fields, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
        elif origin is tuple and args:
            if len(value) != len(args):
                raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
            items = [_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            items = [_coerce(v, args[0], f"{where}[{i}]") if args else v for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{where}: expected a string, got {value!r}")
    if isinstance(tp, type) and issubclass(tp, os.PathLike):
        if isinstance(value, (str, os.PathLike)):
            return tp(value)
        raise ValueError(f"{where}: expected a path, got {value!r}")
    return value


def from_dict(cls: type, d: dict[str, Any], where: str = "") -> Any:
    """Build a dataclass (nested ones from nested tables) from a plain dict, as a config file gives it.

    The one loader of configs (sweep files, presets, checkpoints): unknown keys, wrong types and values the
    dataclass refuses are one-line ValueErrors naming the field, e.g. ``[sweep] net.width: expected an integer,
    got 'abc'``. Missing keys take the dataclass defaults.
    """
    where = where or cls.__name__
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a table, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(fields)})")
    hints = typing.get_type_hints(cls, include_extras=True)
    kw = {name: _coerce(v, hints.get(name, Any), f"{where}.{name}" if where else name) for name, v in d.items()}
    try:
        return cls(**kw)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


__all__ = [
    "BackboneName",
    "NetConfig",
    "TrainConfig",
    "DataConfig",
    "to_dict",
    "config_hash",
    "key_dict",
    "register_key_fields",
    "KEY_FIELDS",
    "from_dict",
    "read_table_file",
    "field",
]
