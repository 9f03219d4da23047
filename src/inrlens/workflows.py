"""Run-folder operations: fit images, train a cohort, sweep freeze depths of one encoder — on disk, resumable.

These are the library functions below ``inrlens fit``, ``inrlens cohort`` and ``inrlens transfer`` (the
commands only parse flags, call one of them and print a table). Each takes signals already loaded (see
:func:`inrlens.data.resolve`), writes a run folder and returns its result rows:

* ``OUT/run.json`` — the config (a rerun with another config into the same folder is refused unless
  ``overwrite``, which moves the old ``results.jsonl`` aside to ``results.jsonl.replaced-<timestamp>``;
  ``resume`` continues one with the same config),
* ``OUT/results.jsonl`` — one row per fitted member (image × seed, or cohort head), appended as each stack
  finishes, so that a killed run resumes where it stopped,
* checkpoints (``cfg.json`` + ``model.safetensors``): ``OUT/models/<H>x<W>/`` per image shape for single fits
  (or ``OUT`` itself with ``checkpoint="root"``), ``OUT`` for a cohort; transfer runs keep no checkpoints.

The rows returned are the rows as ``results.jsonl`` holds them (a NaN metric — a diverged fit, LPIPS without its
weights — is None), whether fitted now or read back on resume. docs/run-folder.md describes the files and every
row field. Nothing here prints: progress bars only (off with ``progress=False``) and an optional ``log`` callback
for one-line notes ("skip …").

Row keys: a row's ``key`` is ``config_hash({"config": config_hash(<run config>), "image": <image digest>, "seed",
"regime", "freeze"})``, plus ``"encoder": <encoder checkpoint digest>`` in a transfer run; resume skips keys
already in ``results.jsonl``. Images are keyed by their pixels (:attr:`inrlens.data.Signal.digest`, also in every
row as ``image_digest``; ``image`` is the display name), so two images with one name are two keys and one image
under two names is one. A transfer row records its encoder's digest (``encoder_sha256``) and a cohort row its
checkpoint's (``model_sha256``): rows of an encoder or cohort retrained in place are stale, redone on resume and
left out by :func:`results` (:mod:`inrlens.identity`). The learning rates follow :mod:`inrlens.rules` (the same
rule ``inrlens sweep`` and ``inrlens reproduce`` use) and are recorded in every row as ``lr``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from . import rules, trainstate
from .config import DataConfig, NetConfig, TrainConfig, config_hash, key_dict, to_dict
from .data import Signal, group_by_shape
from .fit import MemberResult, fit_cohort, fit_single, fit_transfer, resolve_device, runtime_info
from .identity import checkpoint_digest, current_rows, prepare_fresh
from .store import RunFolder, append_row, checkpoint_ready, clean_json, done_keys, load_stack, read_rows, save_stack
from .store.names import CFG_NAME

Log = Callable[[str], Any]

COHORT_TRAIN = TrainConfig(steps=5000, target_psnr=30.0)
"""Default cohort schedule: up to 5000 steps, stop once the cohort-mean PSNR reaches 30 dB [paper]; the lr
(None) resolves to :data:`inrlens.rules.COHORT_LR`."""

LEGACY_RANDOM_LR = 1e-4
"""The random-init baseline lr ``inrlens transfer`` used before it followed :func:`inrlens.rules.lr_for` (when
``--train.lr`` was not given). A transfer run whose baseline lr differs from it records ``random_lr`` in its
config, so its keys differ from rows an older version wrote at the other lr."""


# ------------------------------------------------------------------------------------------------ helpers
def row_key(config: str, image: str, seed: int, regime: str, freeze: int | None, encoder: str | None = None) -> str:
    """Key of one result row of a fit / cohort / transfer run: ``config`` is the hash of the run config, ``image``
    the image's digest (:attr:`inrlens.data.Signal.digest`), ``encoder`` the encoder checkpoint's digest (transfer
    runs only)."""
    ident = {"config": config, "image": image, "seed": seed, "regime": regime, "freeze": freeze}
    if encoder is not None:
        ident["encoder"] = encoder
    return config_hash(ident)


def _rows(results: Sequence[MemberResult], base: dict[str, Any], fit_seconds: float, signals: Sequence[Signal]) -> list[dict[str, Any]]:
    digest = {s.name: s.digest for s in signals}
    out = []
    for r in results:
        row = dict(base)
        row.update(r.row())
        row["image_digest"] = digest[row["image"]]
        row["fit_seconds"] = fit_seconds
        row["status"] = "diverged" if r.diverged else "ok"
        row["key"] = row_key(row["config"], row["image_digest"], row["seed"], row["regime"], row["freeze"], base.get("encoder_sha256"))
        out.append(clean_json(row))  # as results.jsonl holds it: non-finite numbers as None, tuples as lists
    return out


def _by_shape(signals: Sequence[Signal]) -> list[list[Signal]]:
    return [[signals[i] for i in idx] for idx in group_by_shape(signals).values()]


def _stored(path: Path, keys: Iterable[str], model: str | None = None) -> list[dict[str, Any]]:
    """Rows of ``path`` with the given keys, in the order of ``keys`` (first row of each key); ``model``: only rows
    recording that checkpoint digest as ``model_sha256`` (a cohort folder's rows)."""
    by_key: dict[str, dict[str, Any]] = {}
    for r in read_rows(path) if path.exists() else []:
        if model is None or r.get("model_sha256") == model:
            by_key.setdefault(r.get("key"), r)
    return [by_key[k] for k in keys if k in by_key]


def _model_keys(path: Path, model: str | None) -> set[str]:
    """Keys of the rows of ``path`` that record the checkpoint digest ``model`` (none when it is None)."""
    if model is None or not path.exists():
        return set()
    return {r["key"] for r in read_rows(path) if "key" in r and r.get("model_sha256") == model}


def _append_new(path: Path, rows: Sequence[dict[str, Any]], done: set[str]) -> None:
    for row in rows:
        if row["key"] not in done:  # a group refitted after a kill between its rows: no key twice
            append_row(path, row)
            done.add(row["key"])


def _quiet(_: str) -> None:
    return None


# ------------------------------------------------------------------------------------------------ fit
def fit_images(
    signals: Sequence[Signal],
    out: str | os.PathLike,
    net: NetConfig = NetConfig(),
    train: TrainConfig = TrainConfig(),
    seeds: Sequence[int] = (0,),
    *,
    data: DataConfig = DataConfig(),
    lpips: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint: Literal["by-shape", "root"] = "by-shape",
    progress: bool = True,
    log: Log | None = None,
) -> list[dict[str, Any]]:
    """Fit one INR per (image × seed) from random init (the single-signal regime) into the run folder ``out``.

    ``data`` is the DataConfig the signals were loaded with (recorded in the config and the checkpoints, so
    that ``inrlens sae`` can rebuild the grid). Images of one shape form one stack, saved as
    ``out/models/<H>x<W>/``; ``checkpoint="root"`` saves it as ``out`` itself (all images must share one shape).
    lr: ``train.lr``, else the backbone's single-signal lr (:func:`inrlens.rules.lr_for`). Returns one row per
    member: fresh rows for the stacks fitted now, stored rows for those a resume skipped.
    """
    seeds = rules.check_seeds(seeds, "seeds")
    if not signals:
        raise ValueError("fit_images: no images to fit")
    groups = _by_shape(signals)
    if checkpoint == "root" and len(groups) > 1:
        raise ValueError(f"fit_images: checkpoint='root' needs images of one shape, got {sorted(s.shape for s in signals)}")
    lr = rules.lr_for("single", net.backbone, train.lr)
    from .memory import members_per_chunk

    for group in groups:  # one member of each stack must fit the memory budget: refused before run.json
        members_per_chunk(net, group[0].shape[0] * group[0].shape[1], group[0].channels, 0, device=resolve_device(train.device))
    conf = {"cmd": "fit", "net": net, "train": key_dict(train), "data": data, "seeds": seeds}  # key_dict: as train_cohort
    folder = RunFolder(prepare_fresh(out, conf, resume, overwrite, log=log))
    done = done_keys(folder.results_jsonl)
    chash = config_hash(conf)
    dev = resolve_device(train.device)
    base = {"regime": "single", "freeze": None, "config": chash, "net": to_dict(net), "train": to_dict(train),
            "runtime": runtime_info(dev, train), "lr": lr}
    rows: list[dict[str, Any]] = []
    for group in groups:
        h, w = group[0].shape
        ckpt = folder.root if checkpoint == "root" else _model_folder(folder.models, group, log)
        keys = [row_key(chash, s.digest, sd, "single", None) for s in group for sd in seeds]
        if all(k in done for k in keys) and (checkpoint != "root" or checkpoint_ready(ckpt)):
            (log or _quiet)(f"skip {len(group)} image(s) of shape {group[0].shape}: already done")
            rows += _stored(folder.results_jsonl, keys)
            continue
        stack, fr, res = fit_single(group, net, replace(train, lr=lr), seeds, progress=progress, with_lpips=lpips)
        digest = {s.name: s.digest for s in group}
        save_stack(stack, ckpt, {"regime": "single", "members": [f"{r.image}@{r.seed}" for r in res], "data": to_dict(data),
                                 "member_digests": [digest[r.image] for r in res],
                                 "psnr": [r.psnr for r in res], "steps_run": fr.steps_run, "seconds": fr.seconds})
        new = _rows(res, dict(base, checkpoint=ckpt.relative_to(folder.root).as_posix()), fr.seconds, group)
        _append_new(folder.results_jsonl, new, done)
        rows += new
    return rows


def _checkpoint_members(ckpt: Path) -> set[str] | None:
    """The image digests (else names) of the members a saved stack holds; None when ``ckpt`` holds no complete
    checkpoint (nothing there to lose)."""
    if not checkpoint_ready(ckpt):
        return None
    meta = json.loads((ckpt / CFG_NAME).read_text()).get("meta") or {}
    digests = meta.get("member_digests")
    if isinstance(digests, list) and digests:
        return set(map(str, digests))
    return {str(m).rsplit("@", 1)[0] for m in meta.get("members", [])}


def _model_folder(models: Path, group: Sequence[Signal], log: Log | None) -> Path:
    """Where a stack of one image shape is saved: ``models/<H>x<W>``, unless a checkpoint there holds images
    this stack does not (an earlier fit of other images of that shape into the same run folder): then the first
    ``models/<H>x<W>-2``, ``-3``, … that is free or holds only images of this stack, so no fitted model is lost."""
    h, w = group[0].shape
    mine = {s.digest for s in group} | {s.name for s in group}
    for i in itertools.count(1):
        ckpt = models / (f"{h}x{w}" if i == 1 else f"{h}x{w}-{i}")
        held = _checkpoint_members(ckpt)
        if held is None or held <= mine:
            if i > 1:
                (log or _quiet)(f"{models / f'{h}x{w}'} holds other images of shape {h}×{w}: this stack is saved as {ckpt}")
            return ckpt
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------------------------ cohort
def train_cohort(
    signals: Sequence[Signal],
    out: str | os.PathLike,
    net: NetConfig = NetConfig(),
    train: TrainConfig = COHORT_TRAIN,
    *,
    n: int = 10,
    split_seed: int = 0,
    seed: int = 0,
    data: DataConfig = DataConfig(),
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Log | None = None,
) -> list[dict[str, Any]]:
    """Train a STRAINER cohort (one shared encoder, one linear head per image, loss Σ MSE_i) into ``out``.

    The cohort is ``n`` images drawn from ``signals`` with ``split_seed`` (:func:`inrlens.data.split`); head i
    is initialised with ``seed + i``. lr: ``train.lr``, else :data:`inrlens.rules.COHORT_LR`. ``out`` holds the
    checkpoint (``cfg.json`` + ``model.safetensors``; ``meta["members"]`` names the heads' images),
    ``results.jsonl`` (one row per head) and ``run.json``. With ``resume``, a finished cohort is not retrained
    and its stored rows are returned, and an interrupted one continues from the training state it left in
    ``out`` (:mod:`inrlens.trainstate`; written every ``train.checkpoint_every`` steps, None: about once a minute;
    removed when the cohort is saved); the result equals an uninterrupted run's.
    """
    from .data import split

    cohort, _ = split(signals, n, 0, split_seed)
    from .memory import check_cohort

    check_cohort(net, [s.shape for s in cohort], cohort[0].channels, device=resolve_device(train.device))  # before run.json
    conf = {"cmd": "cohort", "n": n, "split_seed": split_seed, "seed": seed, "net": net,
            "train": key_dict(train), "data": data,  # key_dict: without checkpoint_every, which changes no result
            "images": [s.name for s in cohort]}
    folder = RunFolder(prepare_fresh(out, conf, resume, overwrite, log=log))
    chash = config_hash(conf)
    keys = [row_key(chash, s.digest, seed, "cohort", None) for s in cohort]
    current = checkpoint_digest(folder.root) if checkpoint_ready(folder.root) else None
    done = _model_keys(folder.results_jsonl, current)  # rows of the checkpoint in the folder now (older ones are stale)
    state = trainstate.path_in(folder.root)
    if resume and current is not None and all(k in done for k in keys):  # complete pair + every head's row
        trainstate.remove(state)  # left by a run killed after its last row
        (log or _quiet)(f"{folder.root}: cohort already trained; nothing to do")
        return _stored(folder.results_jsonl, keys, current)
    lr = rules.lr_for("cohort", net.backbone, train.lr)
    stack, fr, res = fit_cohort(cohort, net, replace(train, lr=lr), seed, progress=progress, state=state, resume=resume,
                                run=chash)
    save_stack(stack, folder.root, {"regime": "cohort", "members": [s.name for s in cohort], "steps_run": fr.steps_run,
                                    "seconds": fr.seconds, "data": to_dict(data), "member_digests": [s.digest for s in cohort]})
    model = checkpoint_digest(folder.root)
    dev = resolve_device(train.device)
    base = {"regime": "cohort", "freeze": None, "config": chash, "net": to_dict(net), "train": to_dict(train),
            "runtime": runtime_info(dev, train), "steps_run": fr.steps_run, "lr": lr, "model_sha256": model}
    rows = _rows(res, base, fr.seconds, cohort)
    _append_new(folder.results_jsonl, rows, _model_keys(folder.results_jsonl, model))
    trainstate.remove(state)  # after the rows: a run killed before them resumes from the state, not step 0
    return rows


# ------------------------------------------------------------------------------------------------ transfer
def _transfer_targets(signals: Sequence[Signal], encoder: Any, meta: dict[str, Any], encoder_dir: str | os.PathLike,
                      include_cohort: bool, limit: int | None) -> list[Signal]:
    """The images a transfer run fits: channels matched to the encoder's output, cohort members left out unless
    ``include_cohort`` (:func:`_not_members`), the first ``limit``; a ValueError when none is left."""
    sigs = list(signals)
    if any(s.channels != encoder.out_features for s in sigs):  # before the cohort test: the members' pixels had these channels
        from .data import harmonise_channels

        sigs = harmonise_channels(sigs, "rgb" if encoder.out_features == 3 else "gray")
    if not include_cohort:
        sigs = _not_members(sigs, meta, encoder_dir)
        if not sigs:
            raise ValueError("every target image is a member of the cohort; pass --include-cohort to fit them anyway")
    sigs = sigs[:limit]
    if not sigs:
        raise ValueError("transfer_images: no images to fit")
    return sigs


def _transfer_plan(encoder: Any, encoder_dir: str | os.PathLike, depths: Sequence[str | int | None], train: TrainConfig,
                   random_lr: float | None) -> tuple[list[Any], float, float]:
    """The depths to fit (:func:`inrlens.rules.parse_depths`) and the lrs of the transfer fits and of the random-init
    baseline (:func:`inrlens.rules.lr_for`); a bad depth or lr is a one-line ValueError."""
    try:
        regimes = rules.parse_depths(depths, encoder.cfg.depth)  # a bad depth fails before the run folder is touched
    except ValueError as e:
        raise ValueError(f"{e} ({encoder_dir})") from None
    backbone = encoder.cfg.backbone
    lr_transfer = rules.lr_for("transfer", backbone, train.lr)
    try:
        lr_random = rules.lr_for("random", backbone, random_lr)
    except ValueError as e:
        raise ValueError(f"random_lr: {e}") from None
    return regimes, lr_transfer, lr_random


def _transfer_config(encoder_dir: str | os.PathLike, train: TrainConfig, data: DataConfig, seeds: list[int],
                     regimes: Sequence[Any], lr_random: float, reinit: str = "fresh") -> dict[str, Any]:
    """A transfer run's run.json config; ``random_lr`` only when the baseline's lr is not :data:`LEGACY_RANDOM_LR`'s,
    ``reinit`` only when it is not the default 'fresh' (so folders written before either option keep resuming)."""
    conf: dict[str, Any] = {"cmd": "transfer", "encoder": str(encoder_dir), "train": key_dict(train), "data": data,
                            "seeds": seeds}  # key_dict: without checkpoint_every, which changes no result
    legacy = train.lr if train.lr is not None else LEGACY_RANDOM_LR
    if "random" in regimes and lr_random != legacy:
        conf["random_lr"] = lr_random
    if reinit != "fresh":
        conf["reinit"] = reinit
    return conf


def _check_transfer_memory(encoder: Any, sigs: Sequence[Signal], regimes: Sequence[Any], train: TrainConfig) -> None:
    """Refuse (before run.json is written) a fit whose single member does not fit the memory budget, for every
    first trained layer and image shape (:func:`inrlens.memory.members_per_chunk`)."""
    from .memory import members_per_chunk

    for start in {0 if rules.freeze_of(d) is None else rules.freeze_of(d) + 1 for d in regimes}:
        for group in _by_shape(sigs):
            members_per_chunk(encoder.cfg, group[0].shape[0] * group[0].shape[1], group[0].channels, start,
                              device=resolve_device(train.device))


def _fit_at_depth(encoder: Any, group: Sequence[Signal], regime: str, freeze: int | None, train: TrainConfig,
                  seeds: Sequence[int], progress: bool, lpips: bool, reinit: str = "fresh") -> tuple[Any, list[MemberResult]]:
    """Fit one shape group at one depth: the random-init baseline (a single-signal fit of the encoder's
    architecture) or a transfer from the encoder with layers 0..freeze frozen (re-initialised layers drawn by
    ``reinit``, :func:`inrlens.nets.transfer_stack`)."""
    if regime == "random":
        _, fr, res = fit_single(group, encoder.cfg, train, seeds, progress=progress, with_lpips=lpips)
    else:
        _, fr, res = fit_transfer(encoder, group, freeze, train, seeds, progress=progress, with_lpips=lpips, reinit=reinit)
    return fr, res


def transfer_images(
    encoder_dir: str | os.PathLike,
    signals: Sequence[Signal],
    out: str | os.PathLike,
    depths: Sequence[str | int | None] = ("all",),
    *,
    seeds: Sequence[int] = (0,),
    train: TrainConfig = TrainConfig(),
    data: DataConfig = DataConfig(),
    random_lr: float | None = None,
    reinit: str = "fresh",
    include_cohort: bool = False,
    limit: int | None = None,
    lpips: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Log | None = None,
) -> list[dict[str, Any]]:
    """Freeze sweep of one cohort encoder: fit every (image × seed) at every depth of ``depths`` into ``out``.

    ``depths`` as :func:`inrlens.rules.parse_depths` reads them: 'all' (= 'none', 0..L−1, 'random'), 'none'
    (no-freeze: every encoder layer starts from the cohort and trains), k (freeze layers 0..k, re-initialise
    and train the rest), 'random' (the random-init baseline: a single-signal fit of the encoder's architecture).
    Images that were cohort members (same pixels: :attr:`inrlens.data.Signal.digest` against the checkpoint's
    ``member_digests``; by name, with a warning, for an older checkpoint without them) are left out unless
    ``include_cohort``; ``limit`` keeps the first N of the rest. Keys and rows hold the encoder checkpoint's
    digest (``encoder_sha256``): after the encoder is retrained in place, a resume refits every row. lr: transfer
    fits ``train.lr`` else :data:`inrlens.rules.TRANSFER_LR`; the random-init baseline ``random_lr`` else the
    backbone's single-signal lr — the rules of ``inrlens sweep``. ``reinit``: how the re-initialised layers of a
    freeze-k fit are drawn ('fresh' or 'first_layer_rule', :func:`inrlens.nets.transfer_stack`), as the sweep's
    ``reinit``; a value other than 'fresh' is part of the run's config (its rows get their own keys).

    Every bad input (a depth outside 0..L−1, no image left) is refused before ``out`` is touched. Returns one
    row per (depth × image × seed): fresh rows for the stacks fitted now, stored rows for those a resume skipped.
    """
    seeds = rules.check_seeds(seeds, "seeds")
    from .nets import check_reinit

    check_reinit(reinit)
    encoder, meta = load_stack(encoder_dir)
    enc_digest = checkpoint_digest(encoder_dir)
    sigs = _transfer_targets(signals, encoder, meta, encoder_dir, include_cohort, limit)
    regimes, lr_transfer, lr_random = _transfer_plan(encoder, encoder_dir, depths, train, random_lr)
    conf = _transfer_config(encoder_dir, train, data, seeds, regimes, lr_random, reinit)
    _check_transfer_memory(encoder, sigs, regimes, train)
    folder = RunFolder(prepare_fresh(out, conf, resume, overwrite, log=log))
    done = done_keys(folder.results_jsonl)  # keys hold the encoder's digest: rows of an earlier encoder never match
    dev = resolve_device(train.device)
    info = runtime_info(dev, train)
    chash = config_hash(conf)
    rows: list[dict[str, Any]] = []
    for depth in regimes:
        regime = "random" if depth == "random" else "transfer"
        freeze = rules.freeze_of(depth)
        lr = lr_random if regime == "random" else lr_transfer
        for group in _by_shape(sigs):
            keys = [row_key(chash, s.digest, sd, regime, freeze, enc_digest) for s in group for sd in seeds]
            if all(k in done for k in keys):
                rows += _stored(folder.results_jsonl, keys)
                continue
            fr, res = _fit_at_depth(encoder, group, regime, freeze, replace(train, lr=lr), seeds, progress, lpips, reinit)
            base = {"regime": regime, "freeze": freeze, "config": chash, "net": to_dict(encoder.cfg), "train": to_dict(train),
                    "runtime": info, "encoder": str(encoder_dir), "encoder_sha256": enc_digest, "lr": lr}
            if reinit != "fresh" and regime == "transfer":
                base["reinit"] = reinit
            new = _rows(res, base, fr.seconds, group)
            _append_new(folder.results_jsonl, new, done)
            rows += new
    return rows


def _not_members(sigs: Sequence[Signal], meta: dict[str, Any], encoder_dir: str | os.PathLike) -> list[Signal]:
    """The signals that are not members of the cohort whose checkpoint meta is ``meta``: by image digest
    (``meta["member_digests"]``); by name, with a warning, for a checkpoint written before digests were recorded."""
    names = {str(m) for m in meta.get("members", [])}
    digests = meta.get("member_digests")
    if not isinstance(digests, list) or not digests:
        if names:
            warnings.warn(f"{encoder_dir}: this checkpoint records no image digests of its members (written by an earlier "
                          "inrlens); cohort members are excluded by name", stacklevel=4)
        return [s for s in sigs if s.name not in names]
    members = set(digests)
    namesakes = [s.name for s in sigs if s.name in names and s.digest not in members]
    if namesakes:
        warnings.warn(f"{', '.join(namesakes[:5])}{' …' if len(namesakes) > 5 else ''}: named like a member of the cohort "
                      f"{encoder_dir} but with other pixels; fitted as test image(s)", stacklevel=4)
    return [s for s in sigs if s.digest not in members]


def depth_tag(row: dict[str, Any]) -> str:
    """'random', 'none' or 'k=K' for a transfer-run row (the first column of the transfer table)."""
    if row.get("regime") == "random":
        return "random"
    return "none" if row.get("freeze") is None else f"k={row['freeze']}"


def summarise_transfer(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per depth (in first-seen order): n finished fits, PSNR mean and sample std (:func:`inrlens.rules.mean_std`,
    ddof 1; NaN for a single fit) over images × seeds, mean SSIM and LPIPS. Diverged rows are counted out; NaN where nothing is left."""
    order: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        order.setdefault(depth_tag(r), []).append(r)
    out = []
    for tag, rs in order.items():
        ok = [r for r in rs if r.get("status") == "ok"]
        psnr, psnr_std = rules.mean_std(r.get("psnr") for r in ok)
        psnr_std = psnr_std if len(ok) > rules.STD_DDOF else math.nan  # one fit has no sample std: n/a, not 0
        out.append({"depth": tag, "n": len(ok), "psnr": psnr, "psnr_std": psnr_std,
                    "ssim": rules.mean_std(r.get("ssim") for r in ok)[0],
                    "lpips": rules.mean_std(r.get("lpips") for r in ok)[0]})
    return out


# ------------------------------------------------------------------------------------------------ results
RESULT_KINDS = ("fit", "cohort", "sae", "ablation", "all")


def _kind_of(row: dict[str, Any], file: Path) -> str:
    if row.get("kind") in ("fit", "cohort"):  # sweep rows say what they are
        return str(row["kind"])
    if file.name.startswith("ablation"):
        return "ablation"
    if "condition" in row and "layer" in row:
        return "sae"
    if "regime" in row and "psnr" in row:  # rows of fit / cohort / transfer runs: one per fitted member
        return "fit"
    return "other"


def results(run_dir: str | os.PathLike, kind: Literal["fit", "cohort", "sae", "ablation", "all"] = "fit"):
    """The result rows of a run folder as a pandas DataFrame, one row per result line.

    Works on any inrlens run folder: a fit / cohort / transfer folder (``results.jsonl``), a sweep folder
    (``results/*.jsonl``) and a reproduce run root (its sweep, single-signal fits, SAEs and ablations): every
    ``*.jsonl`` under ``run_dir`` is read (torn last lines skipped). ``kind`` selects rows:

    * ``"fit"`` (default): one row per fitted member — single fits, cohort heads, freeze-k / no-freeze /
      random-init fits (every row with a regime and a PSNR),
    * ``"cohort"``: a sweep's per-cohort rows (stable-rank profiles ``sr_w``/``sr_h``, steps, mean PSNR),
    * ``"sae"``: SAE diagnostics (one per condition × layer), ``"ablation"``: single-atom ablations,
    * ``"all"``: everything.

    Stale rows are left out (:func:`inrlens.identity.current_rows`): rows that record the digest of the model
    they came from (``encoder_sha256``, ``cohort_sha256``, ``model_sha256``, ``inr_sha256``, ``sae_sha256``) when
    that model's checkpoint now has another digest, and fit rows written before images were keyed by digest once
    the same folder holds their refit; results files moved aside by ``--overwrite`` (``*.replaced-*``) are not read.

    Flattening: nested tables become dotted columns (``net.width``, ``train.steps``, ``runtime.device``, …);
    lists (``curve``, ``curve_steps``, ``shape``, ``images``) stay as list-valued cells; a missing or non-finite
    number (stored as null) is NaN. Added columns: ``file`` (the JSONL file, relative to ``run_dir``) and, for
    transfer and random-init rows without one, ``depth`` ('none', 'random' or k, as a sweep row has it).
    """
    import pandas as pd

    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such run folder")
    if kind not in RESULT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(RESULT_KINDS)}, got {kind!r}")
    pairs = []
    for f in sorted(root.rglob("*.jsonl")):
        for row in read_rows(f):
            if kind != "all" and _kind_of(row, f) != kind:
                continue
            row = dict(row, file=str(f.relative_to(root)))
            if "depth" not in row and row.get("regime") in ("transfer", "random"):
                row["depth"] = "random" if row["regime"] == "random" else ("none" if row.get("freeze") is None else row["freeze"])
            pairs.append((row, f))
    records = current_rows(pairs)  # without rows of a model since retrained in place (stale) or since refitted
    if not records:
        return pd.DataFrame()
    df = pd.json_normalize(records, sep=".")
    for col in ("psnr", "ssim", "lpips", "train_psnr", "fit_seconds", "lr"):
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


__all__ = ["fit_images", "train_cohort", "transfer_images", "summarise_transfer", "depth_tag", "row_key", "results",
           "COHORT_TRAIN", "LEGACY_RANDOM_LR"]
