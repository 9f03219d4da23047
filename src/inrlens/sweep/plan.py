"""Expanding a :class:`~inrlens.sweep.spec.SweepSpec` into tasks: one :class:`CohortTask` per (source,
backbone), one :class:`FitTask` per (backbone, target, test image, seed, regime[, source]).

Data split: each named dataset is shuffled once with ``split_seed``; its first ``n_cohort`` images are its
cohort, the next ``n_test`` its test images. A dataset's cohort images are therefore never its test images,
whichever dataset is the source.

Keys: a task's key is a hash of everything that defines its result. A cohort's key covers its source (name
and path), backbone, member images (by pixel digest, :attr:`inrlens.data.Signal.digest`), net, schedule, seed,
image loading and resolution. A fit's key covers its regime, source, target, backbone, freeze depth, image (its
pixel digest), seed, learning rate, the hashes of the test-time schedule and of the image loading, the LPIPS
switch, and either its cohort's key (transfer) or its net's hash (random init). These inputs are fixed: changing
them would make existing runs redo every fit (images entered keys by name until they entered by digest; a test
pins the keys). The run folder and its files are described in docs/run-folder.md. Each of these
is the backbone's own setting when the spec has a ``per_backbone`` entry for it (:func:`inrlens.rules.backbone_spec`),
so a key depends on the settings a fit ran with, not on how the spec spelled them.

Which trained cohort a transfer fit started from is not in its key (the key is known before the cohort is
trained): its row records the checkpoint's digest (``cohort_sha256``), and a row whose cohort has been replaced
since is stale (:func:`inrlens.identity.sweep_row_current`): redone by a rerun, ignored by reports.

Tasks are frozen dataclasses of plain values, so they pickle for submitit; jobs reload images and cohorts
from disk themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import product
from pathlib import Path
from typing import Literal

from ..config import DataConfig, NetConfig, TrainConfig
from ..rules import Depth, backbone_spec, ff_sigma_for, freeze_of, lr_for, parse_depths
from .spec import SweepSpec, key_dict, key_hash, parse_data


@dataclass(frozen=True)
class CohortTask:
    """One cohort to train: a shared encoder with one head per member image of a source."""

    key: str
    """Hash of everything that defines the cohort (see the module docstring)."""
    source: str
    """Dataset name."""
    path: str
    """Dataset path (folder, file or sample:NAME)."""
    backbone: str
    images: tuple[str, ...]
    """Member image names, in head order."""
    net: NetConfig
    train: TrainConfig
    seed: int
    """Initialisation seed (head i uses seed + i)."""
    data: DataConfig
    """How the images are loaded."""
    res: int
    """Resolution the FFMLP σ was scaled to (images.size, or the longest side of the members)."""
    dir: str
    """Folder of the saved cohort (RUN/cohorts/<source>_<backbone>)."""
    grid: tuple[int, int]
    """(H, W) of the grid the activation ranks are taken on: the members' most common shape."""
    digests: tuple[str, ...] = ()
    """Member image digests (:attr:`inrlens.data.Signal.digest`), in head order."""
    shapes: tuple[tuple[int, int], ...] = ()
    """Member image shapes (H, W), in head order (for the memory check before the sweep starts)."""
    channels: int = 0
    """Channels of the member images (0: not recorded)."""


@dataclass(frozen=True)
class FitTask:
    """One test-time fit: a test image × seed, from a cohort encoder (transfer) or from random init."""

    key: str
    """Hash of everything that defines the fit (see the module docstring)."""
    source: str | None
    """Dataset whose cohort is the starting point; None for random init."""
    target: str
    """Dataset of the test image."""
    target_path: str
    backbone: str
    regime: Literal["transfer", "random"]
    depth: Depth
    """'none' (no freeze), k (layers 0..k frozen) or 'random' (the random-init baseline)."""
    freeze: int | None
    """Freeze depth k, None when nothing is frozen."""
    image: str
    seed: int
    lr: float
    shape: tuple[int, int]
    """(H, W) of the test image."""
    channels: int
    cohort_key: str | None
    cohort_dir: str | None
    net: NetConfig | None
    """Random init: the architecture (with σ scaled to the image); transfer: None (the cohort's)."""
    image_digest: str = ""
    """The test image's digest (:attr:`inrlens.data.Signal.digest`): what the key holds; ``image`` is its name."""


@dataclass(frozen=True)
class Plan:
    """Everything a sweep will compute."""

    cohorts: tuple[CohortTask, ...] = ()
    fits: tuple[FitTask, ...] = ()


@dataclass(frozen=True)
class _Dataset:
    """A loaded dataset reduced to what planning needs."""

    name: str
    path: str
    cohort: tuple[str, ...]
    test: tuple[str, ...]
    shape: dict[str, tuple[int, int]]
    channels: dict[str, int]
    digest: dict[str, str]


def load_dataset(path: str, images: DataConfig) -> list:
    """The signals of one dataset; its image names must be unique (jobs find images by name; keys hold digests)."""
    from ..data import resolve

    sigs = resolve(path, images)
    names = [s.name for s in sigs]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: image names are not unique")
    return sigs


def split_dataset(name: str, path: str, spec: SweepSpec) -> _Dataset:
    """Load one dataset and split it into cohort and test images (see the module docstring)."""
    from ..data import split

    sigs = load_dataset(path, spec.images)
    if len(sigs) <= spec.n_cohort:
        raise ValueError(f"dataset {name!r} has {len(sigs)} images; a cohort of {spec.n_cohort} leaves none for testing")
    cohort, test = split(sigs, spec.n_cohort, spec.n_test, spec.split_seed)
    return _Dataset(name, path, tuple(s.name for s in cohort), tuple(s.name for s in test),
                    {s.name: tuple(s.shape) for s in sigs}, {s.name: s.channels for s in sigs}, {s.name: s.digest for s in sigs})


def select_datasets(spec: SweepSpec) -> tuple[dict[str, str], list[str], list[str]]:
    """(datasets {name: path}, source names, target names), checked against each other."""
    datasets = parse_data(spec.data)
    sources = list(spec.sources) or list(datasets)
    targets = list(spec.targets) or list(datasets)
    for n in sources + targets:
        if n not in datasets:
            raise ValueError(f"dataset {n!r} is not defined; define it with --data {n}=PATH")
    return datasets, sources, targets


def net_for(spec: SweepSpec, backbone: str, res: int) -> NetConfig:
    """The swept architecture for a backbone (its ``per_backbone`` settings applied), with FFMLP's σ scaled to
    the resolution ``res``."""
    spec = backbone_spec(spec, backbone)
    net = replace(spec.net, backbone=backbone)
    if backbone == "ffmlp" and spec.sigma_at_256 is not None:
        net = replace(net, ff_sigma=ff_sigma_for(spec.sigma_at_256, res))
    return net


def _most_common(shapes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The most frequent shape; ties go to the larger shape."""
    count: dict[tuple[int, int], int] = {}
    for s in shapes:
        count[s] = count.get(s, 0) + 1
    return max(count, key=lambda s: (count[s], s))


def cohort_task(spec: SweepSpec, ds: _Dataset, backbone: str, run_dir: Path) -> CohortTask:
    """The cohort of one (source, backbone)."""
    spec = backbone_spec(spec, backbone)
    res = spec.images.size or max(max(ds.shape[n]) for n in ds.cohort)
    net = net_for(spec, backbone, res)
    digests = tuple(ds.digest[n] for n in ds.cohort)
    ident = {"source": ds.name, "path": ds.path, "backbone": backbone, "images": list(digests), "net": key_dict(net),
             "train": key_dict(spec.cohort_train), "seed": spec.cohort_seed, "data": key_dict(spec.images), "res": res}
    return CohortTask(key=key_hash(ident), source=ds.name, path=ds.path, backbone=backbone, images=ds.cohort, net=net,
                      train=spec.cohort_train, seed=spec.cohort_seed, data=spec.images, res=res,
                      dir=str(Path(run_dir) / "cohorts" / f"{ds.name}_{backbone}"),
                      grid=_most_common([ds.shape[n] for n in ds.cohort]), digests=digests,
                      shapes=tuple(ds.shape[n] for n in ds.cohort), channels=ds.channels[ds.cohort[0]])


def _fit_key(spec: SweepSpec, ident: dict, source: str | None, target: str, backbone: str, freeze: int | None,
             image: str, seed: int) -> str:
    ident = dict(ident, source=source, target=target, backbone=backbone, freeze=freeze, image=image, seed=seed,
                 train=key_hash(spec.train), data=key_hash(spec.images), lpips=spec.lpips)
    return key_hash(ident)


def random_fit(spec: SweepSpec, ds: _Dataset, backbone: str, image: str, seed: int) -> FitTask:
    """The random-init baseline of one (backbone, test image, seed): a single-signal fit, no source."""
    spec = backbone_spec(spec, backbone)
    net = net_for(spec, backbone, spec.images.size or max(ds.shape[image]))
    lr = lr_for("random", backbone, spec.random_lr)
    ident = {"regime": "random", "net": key_hash(net), "lr": lr}
    return FitTask(key=_fit_key(spec, ident, None, ds.name, backbone, None, ds.digest[image], seed), source=None,
                   target=ds.name, target_path=ds.path, backbone=backbone, regime="random", depth="random", freeze=None,
                   image=image, seed=seed, lr=lr, shape=ds.shape[image], channels=ds.channels[image], cohort_key=None,
                   cohort_dir=None, net=net, image_digest=ds.digest[image])


def transfer_fit(spec: SweepSpec, cohort: CohortTask, ds: _Dataset, freeze: int | None, image: str, seed: int) -> FitTask:
    """A freeze-k (or no-freeze, ``freeze=None``) fit of one test image from a cohort's encoder."""
    spec = backbone_spec(spec, cohort.backbone)
    lr = lr_for("transfer", cohort.backbone, spec.train.lr)
    ident = {"regime": "transfer", "cohort": cohort.key, "lr": lr}
    if spec.reinit != "fresh":  # the default leaves keys as they were before the option existed
        ident["reinit"] = spec.reinit
    key = _fit_key(spec, ident, cohort.source, ds.name, cohort.backbone, freeze, ds.digest[image], seed)
    return FitTask(key=key, source=cohort.source, target=ds.name, target_path=ds.path, backbone=cohort.backbone,
                   regime="transfer", depth="none" if freeze is None else freeze, freeze=freeze, image=image, seed=seed,
                   lr=lr, shape=ds.shape[image], channels=ds.channels[image], cohort_key=cohort.key,
                   cohort_dir=cohort.dir, net=None, image_digest=ds.digest[image])


def regime_fits(spec: SweepSpec, ds: _Dataset, backbone: str, image: str, seed: int, depth: Depth,
                cohorts: Sequence[CohortTask]) -> list[FitTask]:
    """The fits of one (backbone, target image, seed, regime): one per source cohort, or the one baseline."""
    if depth == "random":
        return [random_fit(spec, ds, backbone, image, seed)]
    return [transfer_fit(spec, c, ds, freeze_of(depth), image, seed) for c in cohorts]


def make_plan(spec: SweepSpec, run_dir: str | Path) -> Plan:
    """Expand the spec into cohort tasks and fit tasks (with keys); loads the images to split and group them.

    Raises a one-line ValueError for undefined datasets, unreadable or too small ones, and bad depths."""
    datasets, sources, targets = select_datasets(spec)
    regimes = parse_depths(spec.depths, spec.net.depth)
    loaded = {n: split_dataset(n, p, spec) for n, p in datasets.items() if n in sources or n in targets}
    cohorts = [cohort_task(spec, loaded[src], bb, Path(run_dir)) for src in sources for bb in spec.backbones]
    fits: list[FitTask] = []
    for bb, tgt in product(spec.backbones, targets):
        ds = loaded[tgt]
        mine = [c for c in cohorts if c.backbone == bb]  # in source order
        for image, seed, depth in product(ds.test, spec.seeds, regimes):
            fits += regime_fits(spec, ds, bb, image, seed, depth, mine)
    return Plan(tuple(cohorts), tuple(fits))


__all__ = ["CohortTask", "FitTask", "Plan", "make_plan", "net_for", "load_dataset", "split_dataset", "select_datasets",
           "cohort_task", "random_fit", "transfer_fit", "regime_fits"]
