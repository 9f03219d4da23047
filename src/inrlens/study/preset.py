"""A study preset: the TOML file's tables, typed (:class:`Preset`, :func:`load_preset`), and resolved against the
command line's datasets and [exec] overrides into everything the stages need (:class:`Resolved`,
:func:`resolve_preset`). Every check (preset types, [study] against the sweep, overrides) is a one-line ValueError
raised before anything is written. The tables are described in docs/presets.md.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ..config import from_dict
from ..depth_width import DepthWidthConfig
from ..probes.sae import SAEConfig

# the sweep package: every name this module uses from it is imported here
from ..sweep import ExecSpec, SweepSpec, parse_data, spec_from_dict


@dataclass(frozen=True)
class StudyConfig:
    """The [study] table of a preset: which INRs are decomposed, how many atoms the atlas and ablations cover."""

    source: str = ""
    """Dataset whose cohort is decomposed (and whose cohort image the single-signal fits use); '' = the first
    dataset."""
    member: int = 0
    """Cohort head (= cohort image) index, 0..n_cohort−1."""
    conditions: tuple[Literal["single", "cohort"], ...] = ("single", "cohort")
    """Which INRs are decomposed, each × every swept backbone: 'cohort' (the cohort's encoder at head
    ``member``) and/or 'single' (a single-signal INR fitted to that head's image)."""
    single_steps: int = 500
    """Adam steps of the single-signal fits that are decomposed (lr: the backbone's single-signal lr)."""
    layers: tuple[int, ...] = ()
    """Hidden layers with SAEs (0..L−1); empty = every layer."""
    atlas_top: int = 16
    """Atoms per layer stored as maps (atlas, galleries), by mean magnitude."""
    ablate_top: int = 10
    """Atoms per layer ablated one at a time, by mean magnitude [paper: 10]."""
    ablate_all_layers: bool = False
    """Ablate at every layer with SAEs (False: only at ``ablate_layers``)."""
    ablate_layers: tuple[int, ...] = (2,)
    """Layers whose atoms are ablated when ``ablate_all_layers`` is false [paper: layer 2]."""
    analogues: dict[str, str] = dataclasses.field(default_factory=dict)
    """Which dataset stands in for which of the paper's datasets (celeba, oasis, kodak), e.g. ``{faces = "celeba"}``:
    the report's regime check compares that target's no-freeze PSNR with the paper's band for it, and
    ``--data celeba=PATH`` replaces the dataset that plays CelebA. Datasets named celeba, oasis or kodak need
    no entry. It changes no result, so it is not part of the run's recorded configuration."""

    def __post_init__(self) -> None:
        from ..stats import check_analogues

        object.__setattr__(self, "analogues", check_analogues(self.analogues))
        if not self.conditions or len(set(self.conditions)) != len(self.conditions):
            raise ValueError(f"conditions: give 'single' and/or 'cohort' once each, got {list(self.conditions)}")
        for name in ("single_steps", "atlas_top", "ablate_top"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.member < 0:
            raise ValueError(f"member must be >= 0, got {self.member}")


@dataclass(frozen=True)
class Preset:
    """A preset file: its tables, typed (``load_preset``). [datasets] maps names to paths or sample:NAME; [sweep]
    is read as a sweep definition file is (``inrlens.sweep.spec_from_dict``: nested tables replace single fields
    of the defaults), without ``data`` (the datasets come from [datasets] and --data)."""

    datasets: dict[str, str] = dataclasses.field(default_factory=dict)
    sweep: SweepSpec = SweepSpec()
    exec: ExecSpec = ExecSpec()
    sae: SAEConfig = SAEConfig()
    study: StudyConfig = StudyConfig()
    depth_width: DepthWidthConfig | None = None
    """The optional depth × width SAE study (None: not run)."""


def _table_message(msg: str) -> str:
    """from_dict's 'preset.study.member: …' → '[study] member: …'; 'preset: unknown field(s) x' → 'unknown table(s) x'."""
    if msg.startswith("preset: unknown field(s)"):
        return "unknown table(s)" + msg[len("preset: unknown field(s)"):]
    m = re.match(r"preset\.(\w+)(?:\.([^:]+))?: (.*)$", msg)
    if not m:
        return msg
    table, fld, rest = m.groups()
    if fld is None and rest.startswith("unknown field(s)"):
        return f"unknown [{table}] field(s)" + rest[len("unknown field(s)"):]
    return f"[{table}] {fld}: {rest}" if fld else f"[{table}] {rest}"


def load_preset(preset: str) -> tuple[str, Preset]:
    """'demo' | 'paper' | PATH.toml → (name, Preset). Unknown tables or fields and values of the wrong type are
    one-line ValueErrors naming the table and field (``preset NAME: [sweep] net.width: expected an integer …``)."""
    import tomllib

    if preset.endswith(".toml") or "/" in preset or Path(preset).exists():
        path = Path(preset)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such preset file")
        text, name = path.read_text(), path.stem
    else:
        names = sorted(p.name[:-5] for p in resources.files("inrlens.presets").iterdir() if p.name.endswith(".toml"))
        if preset not in names:
            raise ValueError(f"unknown preset {preset!r}; choose {' | '.join(names)} or give a .toml path")
        text, name = resources.files("inrlens.presets").joinpath(f"{preset}.toml").read_text(), preset
    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"preset {preset}: invalid TOML ({e})") from None
    sweep = tables.get("sweep")
    if isinstance(sweep, dict):
        for key, where in (("data", "the [datasets] table"), ("exec", "the [exec] table")):
            if key in sweep:
                raise ValueError(f"preset {name}: [sweep] {key}: give it in {where}")
        try:
            tables["sweep"], _ = spec_from_dict(sweep, source="[sweep]")
        except ValueError as e:
            raise ValueError(f"preset {name}: {str(e).replace('[sweep]: ', '[sweep] ', 1)}") from None
    try:
        p = from_dict(Preset, tables, "preset")
    except ValueError as e:
        raise ValueError(f"preset {name}: {_table_message(str(e))}") from None
    for k, v in p.datasets.items():
        if not isinstance(v, str):
            raise ValueError(f"preset {name}: [datasets] {k}: expected a path or sample:NAME string, got {v!r}")
    return name, p


@dataclass(frozen=True)
class Resolved:
    """A preset resolved against the command line (--data, --cluster, --jobs, --device) and checked: everything
    the stages need. ``spec`` is the sweep (its ``data`` = the datasets), ``ex`` how it runs."""

    name: str
    datasets: dict[str, str]
    spec: SweepSpec
    ex: ExecSpec
    sae: SAEConfig
    study: StudyConfig
    depth_width: DepthWidthConfig | None = None
    """[depth_width] with every unset field filled in (inrlens.depth_width.check); None: not run."""


def check_study(study: StudyConfig, spec: SweepSpec, datasets: dict[str, str]) -> StudyConfig:
    """[study] against the sweep, before any work: the source trains a cohort, ``member`` is one of its heads,
    ``layers`` and ``ablate_layers`` are hidden layers of the swept net. Returns it with ``source`` filled in."""
    source = study.source or next(iter(datasets))
    if source not in datasets:
        raise ValueError(f"[study] source {source!r} is not a dataset ({', '.join(datasets)})")
    if spec.sources and source not in spec.sources:
        raise ValueError(f"[study] source {source!r} trains no cohort: [sweep] sources = {list(spec.sources)}")
    if study.member >= spec.n_cohort:
        raise ValueError(f"[study] member {study.member} is outside 0..{spec.n_cohort - 1} (the cohort has [sweep] n_cohort = "
                         f"{spec.n_cohort} heads)")
    from ..stats import check_analogues

    check_analogues(study.analogues, datasets)
    L = spec.net.depth
    for name in ("layers", "ablate_layers"):
        bad = [ell for ell in getattr(study, name) if not 0 <= ell < L]
        if bad:
            raise ValueError(f"[study] {name} {bad} outside 0..{L - 1} (the [sweep] net has depth {L})")
    if study.layers and not study.ablate_all_layers:
        missing = [ell for ell in study.ablate_layers if ell not in study.layers]
        if missing:
            raise ValueError(f"[study] ablate_layers {missing} have no SAE: add them to [study] layers {list(study.layers)}")
    return replace(study, source=source)


def with_data(datasets: dict[str, str], study: StudyConfig, given: dict[str, str]) -> tuple[dict[str, str], StudyConfig]:
    """The preset's datasets with the command line's --data merged in: a name already there is replaced; a name of
    one of the paper's datasets (celeba, oasis, kodak) replaces, in its place, the preset dataset whose
    ``[study] analogues`` entry plays it (``--data celeba=PATH`` on the demo replaces faces, whose analogue is
    celeba; [study] source follows); any other name is added. Returns (datasets, study)."""
    out = dict(datasets)
    analogues = dict(study.analogues)
    source = study.source
    for name, path in given.items():
        if name not in out:
            stand_ins = [d for d, paper in analogues.items() if paper == name.lower() and d in out]
            if stand_ins:
                out = {(name if d == stand_ins[0] else d): v for d, v in out.items() if d not in stand_ins[1:]}
                for d in stand_ins:
                    analogues.pop(d)
                    source = name if source == d else source
        out[name] = path
    return out, replace(study, analogues=analogues, source=source)


def resolve_preset(preset: str, data: tuple[str, ...] = (), cluster: str | None = None, jobs: int | None = None,
                   device: str | None = None) -> Resolved:
    """Load a preset, merge the command line's datasets and [exec] overrides, and check everything (one-line
    ValueError) before any file is written."""
    name, p = load_preset(preset)
    datasets, study = with_data(p.datasets, p.study, parse_data(data) if data else {})
    if not datasets:
        raise ValueError(f"preset {name!r} names no datasets; give them with --data NAME=PATH (e.g. --data celeba=/data/celeba)")
    spec = replace(p.sweep, data=tuple(f"{k}={v}" for k, v in datasets.items()))
    overrides = {k: v for k, v in (("cluster", cluster), ("jobs", jobs), ("device", device)) if v is not None}
    try:
        ex = replace(p.exec, **overrides)
    except ValueError as e:
        raise ValueError(f"--{' --'.join(overrides)}: {e}") from None
    try:
        sae = p.sae.validate()
    except ValueError as e:
        raise ValueError(f"preset {name}: [sae] {e}") from None
    try:
        study = check_study(study, spec, datasets)
    except ValueError as e:
        raise ValueError(f"preset {name}: {e}") from None
    dw = None
    if p.depth_width is not None:
        from ..depth_width import check as check_depth_width

        try:
            dw = check_depth_width(p.depth_width, spec, study, datasets, sae)
        except ValueError as e:
            raise ValueError(f"preset {name}: [depth_width] {e}") from None
    return Resolved(name, datasets, spec, ex, sae, study, dw)


def settings_meta(plan: Resolved) -> dict[str, Any]:
    """The report's setup lines for the net, the images, the test-time schedule (per backbone where a
    ``per_backbone`` entry makes them differ) and the paper analogues."""
    from ..rules import backbone_spec, lr_for

    spec = plan.spec
    eff = {b: backbone_spec(spec, b) for b in spec.backbones}

    def per(fn) -> Any:
        vals = {b: fn(b, e) for b, e in eff.items()}
        return next(iter(vals.values())) if len(set(vals.values())) == 1 else ", ".join(f"{b} {v}" for b, v in vals.items())

    img = spec.images
    return {"width": per(lambda b, e: e.net.width), "depth": spec.net.depth,
            "image size": f"scale {img.scale:g}" if img.scale else (img.size or "native"),
            "test-time steps": per(lambda b, e: e.train.steps),
            "test-time lr": per(lambda b, e: f"{lr_for('transfer', b, e.train.lr):g}"),
            "random-init lr": per(lambda b, e: f"{lr_for('random', b, e.random_lr):g}"),
            "paper analogues": ", ".join(f"{k} → {v}" for k, v in plan.study.analogues.items()) or "none"}


def recorded_study(study: StudyConfig) -> dict[str, Any]:
    """[study] as the run's run.json records it: without ``analogues``, which changes no result (so a run keeps
    resuming whatever the report compares it with)."""
    from ..config import to_dict

    return {k: v for k, v in to_dict(study).items() if k != "analogues"}
