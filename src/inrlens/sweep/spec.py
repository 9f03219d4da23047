"""What a freeze sweep computes (:class:`SweepSpec`) and how it runs (:class:`ExecSpec`), from flags or a file.

A sweep definition file (TOML, YAML, or Python defining ``SWEEP = {...}`` or ``SPEC = SweepSpec(...)``) holds
the SweepSpec fields at the top level, nested tables for ``net``, ``cohort_train``, ``train`` and ``images``
(each overriding the sweep's defaults field by field), ``data`` as a table ``{name = path}`` or a list of
``"name=path"``, and an optional ``[exec]`` table of ExecSpec fields. Unknown keys, wrong types and out-of-range
values are one-line errors naming the file and the field. Command-line flags that differ from the defaults
override the file (:func:`merge_flags`).

The protocol defaults (and where each comes from) are described in docs/protocol.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import tyro
from tyro.conf import UseAppendAction

from ..config import (
    DataConfig,
    NetConfig,
    TrainConfig,
    config_hash,
    from_dict,
    key_dict,
    read_table_file,
    register_key_fields,
    to_dict,
)
from ..rules import check_seeds, parse_depths

Cluster = Literal["local", "debug", "slurm"]
T = TypeVar("T")


@dataclass(frozen=True)
class BackboneSettings:
    """Settings of one backbone that differ from the sweep's (the ``per_backbone`` table of a sweep file or
    preset, e.g. ``per_backbone = { ffmlp = { lr = 1e-3, width = 48 } }``); unset fields keep the sweep's value.
    Resolved by :func:`inrlens.rules.backbone_spec`."""

    width: int | None = None
    """Hidden width (net.width)."""
    ff_features: int | None = None
    """FFMLP Fourier features m (net.ff_features)."""
    steps: int | None = None
    """Test-time steps of the freeze-k and no-freeze fits (train.steps)."""
    lr: float | None = None
    """Test-time learning rate of the freeze-k and no-freeze fits (train.lr)."""
    cohort_steps: int | None = None
    """Cohort step limit (cohort_train.steps)."""
    cohort_lr: float | None = None
    """Cohort learning rate (cohort_train.lr)."""
    random_lr: float | None = None
    """Learning rate of the random-init baseline (random_lr)."""

    def __post_init__(self) -> None:
        for name in ("width", "ff_features", "steps", "cohort_steps"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        for name in ("lr", "cohort_lr", "random_lr"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")


@dataclass(frozen=True)
class SweepSpec:
    """What a freeze sweep computes: everything here enters the result keys (see docs/run-folder.md)."""

    data: UseAppendAction[tuple[str, ...]] = ()
    """Named datasets NAME=PATH (a folder, file, sample:NAME or noise:KIND[:KEY=VALUE…], see docs/datasets.md);
    repeat the flag for several."""
    sources: tuple[str, ...] = ()
    """Dataset names that train cohorts (default: every dataset)."""
    targets: tuple[str, ...] = ()
    """Dataset names whose test images are fitted (default: every dataset)."""
    backbones: tuple[str, ...] = ("siren", "ffmlp")
    """Backbones to sweep (registered names: siren, ffmlp, and any added as described in docs/extending.md)."""
    depths: tuple[str, ...] = ("all",)
    """Regimes: 'all' (= none, 0..L−1, random), or any of 'none', 'random' and integers k in 0..L−1."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Re-initialisation seeds of the test-time fits (distinct) [paper: 3]."""
    n_cohort: int = 10
    """Cohort size N per source [paper]."""
    n_test: int = 50
    """Test images per target (fewer when the dataset is smaller; Kodak: 14 with N = 10) [paper]."""
    split_seed: int = 0
    """Seed of the per-dataset cohort/test shuffle."""
    cohort_seed: int = 0
    """Initialisation seed of the cohort encoders (head i uses seed + i)."""
    net: NetConfig = NetConfig()
    """Architecture (the backbone field is replaced by each swept backbone)."""
    sigma_at_256: float | None = 10.0
    """FFMLP: σ = sigma_at_256 · res / 256 with res = images.size (or the longest side of the source cohort
    images when images.size is None), recorded in every row; None keeps net.ff_sigma unchanged."""
    cohort_train: TrainConfig = TrainConfig(steps=5000, target_psnr=30.0, lr=1e-4)
    """Cohort schedule: ≤ 5000 steps, stop at cohort-mean PSNR ≥ 30 dB [paper], lr 1e-4 [STRAINER]."""
    train: TrainConfig = TrainConfig(steps=500, lr=1e-4)
    """Test-time schedule of the freeze-k and no-freeze fits: 500 steps, lr 1e-4 [paper]."""
    random_lr: float | None = None
    """Learning rate of the random-init baseline; None = the backbone's single-signal lr (SIREN 1e-4, FFMLP 1e-3).
    The same rule as `inrlens transfer --random-lr` (see docs/protocol.md)."""
    images: DataConfig = DataConfig()
    """How images are loaded (size, square crop, channels)."""
    lpips: bool = True
    """Compute LPIPS (NaN when its weights are absent)."""
    per_backbone: Annotated[dict[str, BackboneSettings] | None, tyro.conf.Suppress] = None
    """Per-backbone settings that replace the sweep's for one backbone (width, ff_features, steps, lr,
    cohort_steps, cohort_lr, random_lr; :class:`BackboneSettings`), e.g. ``{ffmlp = {lr = 1e-3}}``; None = the
    same settings for every backbone. Given in sweep files and presets (not as a flag)."""
    reinit: Literal["fresh", "first_layer_rule"] = "fresh"
    """How a freeze-k fit draws its re-initialised layers: 'fresh', each as that layer of a random init
    [paper]; 'first_layer_rule', the first one (layer k+1) by the first-layer init rule (SIREN: U(±1/width)), as
    STRAINER's public code builds a decoder [STRAINER code] (docs/protocol.md)."""

    def __post_init__(self) -> None:
        from ..backbones import backbone_names
        from ..rules import backbone_spec

        known = backbone_names()
        if not self.backbones:
            raise ValueError("backbones: give at least one backbone")
        bad = [b for b in self.backbones if b not in known]
        if bad:
            raise ValueError(f"backbones: unknown {', '.join(map(repr, bad))}; registered: {', '.join(known)}")
        if len(set(self.backbones)) != len(self.backbones):
            raise ValueError(f"backbones: a backbone is given twice ({', '.join(self.backbones)})")
        for name in ("n_cohort", "n_test"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        check_seeds(self.seeds, "seeds")
        parse_depths(self.depths, self.net.depth)
        if self.random_lr is not None and not (math.isfinite(self.random_lr) and self.random_lr > 0):
            raise ValueError(f"random_lr must be a finite number > 0, got {self.random_lr!r}")
        if self.per_backbone is not None:
            if not isinstance(self.per_backbone, dict):
                raise ValueError(f"per_backbone: expected a table {{backbone = {{field = value}}}}, got {self.per_backbone!r}")
            table = {}
            for name, v in self.per_backbone.items():
                if name not in known:
                    raise ValueError(f"per_backbone: unknown backbone {name!r}; registered: {', '.join(known)}")
                try:
                    table[name] = v if isinstance(v, BackboneSettings) else from_dict(BackboneSettings, v, f"per_backbone.{name}")
                except ValueError as e:
                    raise ValueError(str(e).replace("unknown field(s)", "unknown setting(s)", 1)) from None
            object.__setattr__(self, "per_backbone", table or None)  # typed entries; an empty table means none
            for b in self.backbones:
                try:
                    backbone_spec(self, b)  # the resolved settings must be a valid sweep (e.g. wire's even width)
                except ValueError as e:
                    raise ValueError(f"per_backbone.{b}: {e}") from None


@dataclass(frozen=True)
class ExecSpec:
    """How a sweep runs. Nothing here changes a result, so nothing here enters the keys."""

    cluster: Cluster = "local"
    """'local' (submitit LocalExecutor: real subprocesses), 'debug' (in this process, one job at a time), 'slurm' (job arrays).
    A failing job is reported as an error line, never opened in a debugger."""
    jobs: int = 2
    """Number of jobs the fits are dealt into (local: concurrent processes; slurm: array size); >= 1."""
    threads: int = 1
    """torch threads per job (fixed so that results do not depend on the machine's core count); >= 1."""
    max_members: int | None = None
    """Members per chunk (one stack), >= 1; None = from the memory budget (memory.members_per_chunk), at most 64."""
    timeout_min: int = 240
    """Per-job time limit (minutes), >= 1."""
    slurm_partition: str | None = None
    """SLURM partition (None = the cluster's default)."""
    slurm_mem_gb: float = 2.0
    """Memory per SLURM job (GB)."""
    device: str = "cpu"
    """Device of the jobs: 'cpu', 'cuda' or 'auto'."""

    def __post_init__(self) -> None:
        for name in ("jobs", "threads", "timeout_min"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_members is not None and self.max_members < 1:
            raise ValueError(f"max_members must be >= 1 (or unset for the memory budget), got {self.max_members}")
        if not self.slurm_mem_gb > 0:
            raise ValueError(f"slurm_mem_gb must be > 0, got {self.slurm_mem_gb}")


# ------------------------------------------------------------------------------------------------ keys
register_key_fields(SweepSpec, ("data", "sources", "targets", "backbones", "depths", "seeds", "n_cohort", "n_test", "split_seed",
                               "cohort_seed", "net", "sigma_at_256", "cohort_train", "train", "random_lr", "images", "lpips"))
register_key_fields(BackboneSettings, ("width", "ff_features", "steps", "lr", "cohort_steps", "cohort_lr", "random_lr"))


def key_hash(obj: Any) -> str:
    """:func:`inrlens.config.config_hash` (which hashes :func:`inrlens.config.key_dict`): the hash every sweep key
    is built from."""
    return config_hash(obj)


def run_config(spec: SweepSpec) -> dict[str, Any]:
    """What a sweep's run.json holds; a rerun with another spec into the same folder is refused."""
    return {"cmd": "sweep", "spec": key_dict(spec)}


def parse_data(items: Sequence[str]) -> dict[str, str]:
    """['celeba=PATH', ...] → {'celeba': 'PATH'}; clear errors for malformed or repeated names."""
    out: dict[str, str] = {}
    for it in items:
        name, sep, path = str(it).partition("=")
        name = name.strip()
        if not sep or not name or not path:
            raise ValueError(f"--data expects NAME=PATH, got {it!r}")
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"dataset name {name!r}: use letters, digits, '-' and '_' only")
        if name in out:
            raise ValueError(f"dataset {name!r} given twice")
        out[name] = path
    if not out:
        raise ValueError("no datasets: give at least one --data NAME=PATH")
    return out


# ------------------------------------------------------------------------------------------------ files
def load_spec_file(path: str | Path) -> dict[str, Any]:
    """A sweep definition from TOML, YAML or Python (a dict ``SWEEP`` or a SweepSpec ``SPEC``) → plain dict."""

    def from_python(p: Path) -> Any:
        import runpy

        ns = runpy.run_path(str(p))
        obj = ns.get("SPEC", ns.get("SWEEP"))
        if obj is None:
            raise ValueError(f"{p}: define SWEEP = dict(...) or SPEC = SweepSpec(...)")
        return to_dict(obj)

    return read_table_file(path, "sweep definition", python=from_python)


_ROOT = "sweep"  # the name from_dict gives the top level; replaced by the source in messages


def _load(cls: type[T], d: Any, source: str, where: str = "") -> T:
    """from_dict with messages of the form '<source>: <field>: <problem>'."""
    try:
        return from_dict(cls, d, where or _ROOT)
    except ValueError as e:
        msg = str(e)
        if not where:
            if msg.startswith(_ROOT + "."):
                msg = msg[len(_ROOT) + 1 :]
            elif msg.startswith(_ROOT + ":"):
                msg = msg[len(_ROOT) + 1 :].strip().replace("unknown field(s)", "unknown sweep field(s)", 1)
        raise ValueError(f"{source}: {msg}") from None


def spec_from_dict(d: dict[str, Any], base: SweepSpec | None = None,
                   source: str = "sweep definition") -> tuple[SweepSpec, ExecSpec | None]:
    """(SweepSpec, ExecSpec or None) from a dict as a definition file gives it (see the module docstring).

    Top-level fields replace ``base``'s (default: SweepSpec()); nested tables replace single fields of
    ``base``'s nested configs. An ``exec`` table gives the ExecSpec. ``source`` names the input in errors."""
    if not isinstance(d, dict):
        raise ValueError(f"{source}: expected a table/mapping at the top level")
    base = base or SweepSpec()
    d = dict(d)
    exd = d.pop("exec", None)
    full = to_dict(base)
    for k, v in d.items():
        if k == "data" and isinstance(v, dict):
            v = [f"{n}={p}" for n, p in v.items()]
        elif k == "depths" and isinstance(v, (list, tuple)):
            v = [str(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in v]  # k = 1 or "1"
        elif isinstance(v, dict) and isinstance(full.get(k), dict):
            v = {**full[k], **v}
        full[k] = v
    spec = _load(SweepSpec, full, source)
    ex = None if exd is None else _load(ExecSpec, exd, source, "exec")
    return spec, ex


def merge_flags(file_spec: T, flags: T) -> T:
    """Flags that differ from the defaults override the file; nested configs field by field.

    Works for SweepSpec and ExecSpec alike (the defaults are ``type(flags)()``)."""
    default = type(flags)()
    kw = {}
    for f in dataclasses.fields(flags):
        fv, dv = getattr(flags, f.name), getattr(default, f.name)
        if dataclasses.is_dataclass(fv) and dataclasses.is_dataclass(dv):
            sub = {g.name: getattr(fv, g.name) for g in dataclasses.fields(fv) if getattr(fv, g.name) != getattr(dv, g.name)}
            if sub:
                kw[f.name] = replace(getattr(file_spec, f.name), **sub)
        elif fv != dv:
            kw[f.name] = fv
    return replace(file_spec, **kw)


def resolve_specs(config: str | Path | None, flags: SweepSpec, exec_flags: ExecSpec) -> tuple[SweepSpec, ExecSpec]:
    """The (SweepSpec, ExecSpec) of a command line: the definition file when given, overridden by the flags
    that differ from the defaults."""
    if config is None:
        return flags, exec_flags
    file_spec, file_ex = spec_from_dict(load_spec_file(config), source=str(config))
    return merge_flags(file_spec, flags), merge_flags(file_ex or ExecSpec(), exec_flags)


__all__ = ["Cluster", "BackboneSettings", "SweepSpec", "ExecSpec", "key_dict", "key_hash", "run_config", "parse_data",
           "load_spec_file", "spec_from_dict", "merge_flags", "resolve_specs"]
