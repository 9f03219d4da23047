"""The work of a sweep as job functions (top-level, taking task objects, so that submitit can pickle them).

* :func:`train_cohorts_job` trains cohorts one after the other; each cohort is saved atomically to its folder
  and gets one row (stable-rank profiles — sr(W), sr(H) uncentred and centred, sr(W) at initialisation and
  Δsr, with their argmax depths — steps, PSNR) in ``results/cohort-<source>_<backbone>.jsonl``.
* :func:`run_fits_job` fits chunks of :class:`~inrlens.sweep.plan.FitTask` (one stack per chunk) and appends one
  row per fit to its own ``results/fits-*.jsonl`` file, skipping keys already in any results file.

Done means current (:func:`current_keys`): a transfer fit row and a cohort row record the cohort checkpoint's
digest (``cohort_sha256``); after that checkpoint is replaced, they are stale and redone, not skipped.

:func:`chunk_fits` groups fits that can share one stack, :func:`deal` spreads the chunks over jobs. The rows'
fields are listed in docs/run-folder.md.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import DataConfig, to_dict
from ..rules import backbone_spec
from .plan import CohortTask, FitTask, Plan, load_dataset
from .spec import ExecSpec, SweepSpec, key_hash

Chunk = list[FitTask]


# ------------------------------------------------------------------------------------------------ chunks
def chunk_fits(fits: Sequence[FitTask], max_members: int | None, spec: SweepSpec) -> list[Chunk]:
    """Group fits into stacks of ≤ ``max_members`` (None: from the memory budget): one chunk shares source,
    target, backbone, regime, freeze depth, target shape, channels, lr and net."""
    groups: dict[tuple, Chunk] = {}
    for f in fits:
        gk = (f.source, f.target, f.backbone, f.regime, f.freeze, f.shape, f.channels, f.lr, f.net)
        groups.setdefault(gk, []).append(f)
    chunks = []
    for fs in groups.values():
        cap = max_members or _auto_cap(spec, fs[0])
        for i in range(0, len(fs), cap):
            chunks.append(fs[i : i + cap])
    return chunks


def _auto_cap(spec: SweepSpec, f: FitTask, limit: int = 64) -> int:
    """Members per stack that fit the memory budget of a CPU job, at most ``limit``."""
    from ..memory import members_per_chunk

    net = replace(backbone_spec(spec, f.backbone).net, backbone=f.backbone)
    start = 0 if f.freeze is None else f.freeze + 1
    h, w = f.shape
    return max(1, min(limit, members_per_chunk(net, h * w, f.channels, start, device="cpu")))


RANK_HINT = "the sweep takes them on the cohort images' grid: use smaller images (--images.size) or a smaller width"


def check_memory(plan: Plan, ex: ExecSpec, run_dir: str | os.PathLike | None = None) -> None:
    """Refuse, with one line, a sweep whose work cannot fit the memory budget of its jobs, before any of it starts:
    a cohort's training (:func:`inrlens.memory.check_cohort`, on the jobs' device), its activation ranks (on the
    CPU, where the saved cohort is profiled) and one member of each kind of fit (:func:`inrlens.memory.members_per_chunk`).
    With ``run_dir`` (the sweep's folder), work already done there is not checked again. Not checked on SLURM: the
    jobs' machines are not this one."""
    if ex.cluster == "slurm":
        return
    from ..fit import resolve_device
    from ..memory import check_cohort, check_rank, members_per_chunk

    device = resolve_device(ex.device)
    done = current_keys(Path(run_dir) / "results") if run_dir is not None else set()
    nets = {}
    for c in plan.cohorts:
        nets[c.key] = c.net
        ready = run_dir is not None and cohort_ready(c)
        if ready and c.key in done:
            continue
        try:
            if c.shapes and not ready:
                check_cohort(c.net, c.shapes, c.channels or 3, device=device)
            check_rank(c.net, c.grid, c.channels or 3, len(c.images), device="cpu", hint=RANK_HINT)
        except ValueError as e:
            raise ValueError(f"cohort {c.source}_{c.backbone}: {e}") from None
    devices = [device] if ex.max_members is not None or device.type == "cpu" else [device, "cpu"]  # cpu: _auto_cap
    seen = set()
    for f in plan.fits:
        net = f.net if f.net is not None else nets.get(f.cohort_key)
        start = 0 if f.freeze is None else f.freeze + 1
        if net is None or f.key in done or (net, f.shape, f.channels, start) in seen:
            continue
        seen.add((net, f.shape, f.channels, start))
        try:
            for d in devices:
                members_per_chunk(net, f.shape[0] * f.shape[1], f.channels, start, device=d)
        except ValueError as e:
            raise ValueError(f"{f.backbone} fits of {f.target} image {f.image!r} ({f.regime}, depth {f.depth}): {e}") from None


def deal(chunks: Sequence[Chunk], jobs: int, depth: int = 5) -> list[list[Chunk]]:
    """Deal chunks into ≤ jobs lists of roughly equal cost (greedy longest-first on members × pixels × trainable
    layers; a freeze-k fit trains layers k+1..L, the frozen prefix being cached)."""
    def cost(c: Chunk) -> float:
        f = c[0]
        trainable = depth + 1 if f.freeze is None else max(1, depth - f.freeze)
        return len(c) * f.shape[0] * f.shape[1] * trainable

    bins: list[list[Chunk]] = [[] for _ in range(max(1, min(jobs, len(chunks))))]
    load = [0.0] * len(bins)
    for c in sorted(chunks, key=cost, reverse=True):
        i = load.index(min(load))
        bins[i].append(c)
        load[i] += cost(c)
    return [b for b in bins if b]


# ------------------------------------------------------------------------------------------------ helpers
_SIGNALS: dict[tuple[str, DataConfig], dict[str, Any]] = {}


def _signals(path: str, images: DataConfig) -> dict[str, Any]:
    """{image name: Signal} of a dataset, loaded once per process."""
    if (path, images) not in _SIGNALS:
        _SIGNALS[(path, images)] = {s.name: s for s in load_dataset(path, images)}
    return _SIGNALS[(path, images)]


def _set_threads(threads: int) -> None:
    """At the start of a job: its torch thread count, freed memory kept in the process
    (:func:`inrlens.allocator.keep_freed_memory`), and (a local job) the watch that ends it if the command that
    started it is killed outright (:func:`inrlens.interrupts.watch_owner`)."""
    import torch

    from ..allocator import keep_freed_memory
    from ..interrupts import watch_owner

    watch_owner()
    keep_freed_memory()
    torch.set_num_threads(max(1, int(threads)))


def current_keys(results_dir: str | os.PathLike, kind: str | None = None) -> set[str]:
    """Keys of the current rows under a sweep's ``results/`` (``kind``: only rows of that kind): rows whose
    recorded cohort digest is the digest of the cohort checkpoint saved now (:func:`inrlens.identity.sweep_row_current`)."""
    from .. import store
    from ..identity import sweep_cohort_digests, sweep_row_current

    results_dir = Path(results_dir)
    if not results_dir.exists():
        return set()
    cohorts = sweep_cohort_digests(results_dir.parent)
    return {r["key"] for r in store.read_rows(results_dir)
            if "key" in r and (kind is None or r.get("kind", "fit") == kind) and sweep_row_current(r, cohorts)}


def _by_digest(path: str, images: DataConfig, names: Sequence[str], digests: Sequence[str]) -> list[Any]:
    """The signals of ``names``, each checked against the digest the plan recorded for it (when it did)."""
    by_name = _signals(path, images)
    sigs = [by_name[n] for n in names]
    for s, d in zip(sigs, digests):
        if d and s.digest != d:
            raise ValueError(f"{path}: image {s.name!r} changed since the sweep was planned (digest {d[:8]}… ≠ "
                             f"{s.digest[:8]}…); run the sweep again to plan it anew")
    return sigs


def cohort_ready(cohort: CohortTask) -> bool:
    """True when the cohort's folder holds a complete checkpoint (digest matching) saved with this task's key."""
    from ..store import checkpoint_ready

    return checkpoint_ready(cohort.dir, key=cohort.key)


# ------------------------------------------------------------------------------------------------ cohorts
def train_cohorts_job(cohorts: list[CohortTask], results_dir: str, threads: int = 1, device: str = "cpu") -> list[dict[str, Any]]:
    """Train several cohorts one after the other (one job)."""
    return [train_cohort_job(c, results_dir, threads, device) for c in cohorts]


def train_cohort_job(cohort: CohortTask, results_dir: str, threads: int = 1, device: str = "cpu") -> dict[str, Any]:
    """Train one cohort (unless already saved), save it atomically, append its stable-rank row.

    While it trains, a training state in the cohort's folder (:mod:`inrlens.trainstate`, keyed by the cohort's
    key) lets a rerun continue an interrupted cohort from its last state; saving the cohort removes it."""
    from .. import store, trainstate
    from ..fit import fit_cohort, resolve_device, runtime_info
    from ..identity import checkpoint_digest
    from ..memory import check_rank
    from ..probes.rank import profile

    _set_threads(threads)
    final = Path(cohort.dir)
    done = current_keys(results_dir, "cohort")  # a row of a replaced checkpoint is stale: not done
    if cohort_ready(cohort) and cohort.key in done:
        return {"key": cohort.key, "status": "cached"}
    train = replace(cohort.train, device=device)
    check_rank(cohort.net, tuple(cohort.grid), cohort.channels or 3, len(cohort.images), hint=RANK_HINT)  # before training
    if not cohort_ready(cohort):
        sigs = _by_digest(cohort.path, cohort.data, cohort.images, cohort.digests)
        stack, fr, res = fit_cohort(sigs, cohort.net, train, cohort.seed, progress=False,
                                    state=trainstate.path_in(final), run=cohort.key)
        tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
        store.save_stack(stack, tmp, {"regime": "cohort", "key": cohort.key, "members": list(cohort.images),
                                      "member_digests": list(cohort.digests),
                                      "steps_run": fr.steps_run, "seconds": fr.seconds, "psnr": [r.psnr for r in res],
                                      "source": cohort.source, "grid": list(cohort.grid), "seed": cohort.seed})
        if final.exists():  # an incomplete folder left by a killed job (cohort_ready was False), its training state too
            shutil.rmtree(final)
        os.replace(tmp, final)
    stack, meta = store.load_stack(final)
    done = current_keys(results_dir, "cohort")  # again: a row written for the checkpoint saved now counts
    prof = profile(stack, tuple(cohort.grid), init_seed=cohort.seed)  # the encoder was drawn from the cohort seed
    psnrs = [p for p in meta.get("psnr", []) if p is not None]
    row = {"kind": "cohort", "key": cohort.key, "source": cohort.source, "source_path": cohort.path, "backbone": cohort.backbone,
           "sr_w": prof.sr_w, "sr_h": prof.sr_h, "k_w": prof.k_w, "k_h": prof.k_h, "grid": list(prof.grid_shape),
           "sr_h_centred": prof.sr_h_centred, "k_h_centred": prof.k_h_centred, "sr_w_init": prof.sr_w_init,
           "delta_sr": prof.delta_sr, "k_delta": prof.k_delta, "seed": cohort.seed,
           "steps_run": meta.get("steps_run"), "seconds": meta.get("seconds"),
           "psnr_mean": float(sum(psnrs) / len(psnrs)) if psnrs else None, "images": list(cohort.images),
           "net": to_dict(cohort.net), "train": to_dict(cohort.train), "data": to_dict(cohort.data), "res": cohort.res,
           "runtime": runtime_info(resolve_device(device), train), "cohort_sha256": checkpoint_digest(final)}
    if cohort.key not in done:  # each key once among the rows of the checkpoint saved now (a retrained cohort with
        # the same weights keeps its first row; one with other weights gets a new row, the old one being stale)
        store.append_row(Path(results_dir) / f"cohort-{cohort.source}_{cohort.backbone}.jsonl", row)
    return {"key": cohort.key, "status": "trained"}


# ------------------------------------------------------------------------------------------------ fits
_ROW_FIELDS = ("key", "source", "target", "backbone", "regime", "depth", "freeze", "image", "seed", "lr", "shape", "channels",
               "cohort_key", "image_digest")
"""FitTask fields copied into every fit row."""


def _stacks(todo: Chunk) -> list[Chunk]:
    """One stack when the chunk is a full image × seed product (image-major, seed-minor), else one per seed
    (a chunk left ragged by a partial resume)."""
    pairs = [(f.image, f.seed) for f in todo]
    names = list(dict.fromkeys(p[0] for p in pairs))
    seeds = list(dict.fromkeys(p[1] for p in pairs))
    if len(pairs) == len(names) * len(seeds) and set(pairs) == {(n, s) for n in names for s in seeds}:
        return [todo]
    return [[f for f in todo if f.seed == s] for s in seeds]


def run_fits_job(chunks: list[Chunk], results_file: str, spec: SweepSpec, threads: int = 1,
                 device: str = "cpu") -> dict[str, Any]:
    """Fit every chunk (one stack each) and append one row per fit to ``results_file``.

    Keys already present in the run's results are skipped (a job rerun after a crash does not redo them), unless
    their rows are stale (:func:`current_keys`: the cohort they started from has been replaced since). A transfer
    row records the digest of the cohort checkpoint it started from (``cohort_sha256``)."""
    from .. import store
    from ..fit import fit_single, fit_transfer, resolve_device, runtime_info
    from ..identity import checkpoint_digest

    _set_threads(threads)
    results_file = Path(results_file)
    done = current_keys(results_file.parent)
    train = replace(spec.train, device=device)
    images = to_dict(spec.images)
    sweep_hash = key_hash(spec)
    info = runtime_info(resolve_device(device), train)
    n_rows = 0
    encoders: dict[str, Any] = {}
    for chunk in chunks:
        todo = [f for f in chunk if f.key not in done]
        if not todo:
            continue
        f0 = todo[0]
        tr = replace(train, steps=backbone_spec(spec, f0.backbone).train.steps, lr=f0.lr)  # per-backbone steps
        for part in _stacks(todo):
            firsts = list({f.image: f for f in part}.values())
            sigs = _by_digest(f0.target_path, spec.images, [f.image for f in firsts], [f.image_digest for f in firsts])
            seeds = list(dict.fromkeys(f.seed for f in part))
            t0 = time.perf_counter()
            if f0.regime == "random":
                _, fr, res = fit_single(sigs, f0.net, tr, seeds, progress=False, with_lpips=spec.lpips)
                net_d = to_dict(f0.net)
            else:
                if f0.cohort_dir not in encoders:
                    encoders[f0.cohort_dir] = (store.load_stack(f0.cohort_dir)[0], checkpoint_digest(f0.cohort_dir))
                enc, enc_digest = encoders[f0.cohort_dir]
                _, fr, res = fit_transfer(enc, sigs, f0.freeze, tr, seeds, progress=False, with_lpips=spec.lpips,
                                          reinit=spec.reinit)
                net_d = to_dict(enc.cfg)
            wall = time.perf_counter() - t0
            by_pair = {(f.image, f.seed): f for f in part}
            for r in res:
                f = by_pair[(r.image, r.seed)]
                row = {k: getattr(f, k) for k in _ROW_FIELDS}
                row.update(kind="fit", status="diverged" if r.diverged else "ok", psnr=r.psnr, ssim=r.ssim, lpips=r.lpips,
                           train_psnr=r.train_psnr, curve=r.curve, curve_steps=r.curve_steps, net=net_d, train=to_dict(tr),
                           data=images, steps_run=fr.steps_run, fit_seconds=fr.seconds, wall_seconds=wall,
                           chunk_members=len(res), runtime=info, sweep=sweep_hash)
                if f.regime != "random":
                    row["cohort_sha256"] = enc_digest
                store.append_row(results_file, row)
                done.add(f.key)
                n_rows += 1
    return {"rows": n_rows, "file": str(results_file)}


__all__ = ["chunk_fits", "check_memory", "deal", "cohort_ready", "current_keys", "train_cohort_job", "train_cohorts_job", "run_fits_job"]
