"""The freeze study as a resumable grid of fits run through submitit (SPEC §3, DESIGN "Grids").

A sweep expands sources × targets × backbones × {no freeze, k = 0..L−1, random init} × test images × seeds.

Run folder layout::

    RUN/run.json                       the sweep spec (a rerun with another spec is refused)
    RUN/cohorts/<source>_<backbone>/   cohort checkpoints (cfg.json + model.safetensors), trained once, reused
    RUN/results/cohort-*.jsonl         one row per cohort: its stable-rank profile, steps, PSNR
    RUN/results/fits-*.jsonl           one row per finished fit (append-only, one file per job)
    RUN/submitit/                      submitit logs and pickles
    RUN/report/                        tables and figures (``inrlens report RUN``)

Keys: every fit's key is the hash of everything that defines it (source, target, backbone, regime, freeze
depth, image, seed, and the hashes of the cohort, test-time training, net and image-loading configs). A rerun
skips keys present in any results file, so a killed sweep resumes where it stopped; a job that dies in the
middle of a chunk leaves either whole rows or a torn last line, which readers ignore.

Data split: each named dataset is shuffled once with ``split_seed``; its first ``n_cohort`` images are its
cohort, the next ``n_test`` its test images. A dataset's cohort images are therefore never its test images,
whichever source is used.

Jobs are top-level functions taking plain data (paths and dicts), so they pickle for submitit and reload
signals and cohorts from disk themselves.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
import traceback
import uuid
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Sequence

from tyro.conf import UseAppendAction

from .config import DataConfig, NetConfig, TrainConfig, config_hash, default_lr, to_dict

Cluster = Literal["local", "debug", "slurm"]


@dataclass(frozen=True)
class SweepSpec:
    """What a freeze sweep computes (everything that enters the result keys)."""

    data: UseAppendAction[tuple[str, ...]] = ()
    """Named datasets NAME=PATH (a folder, file or sample:NAME); repeat the flag for several."""
    sources: tuple[str, ...] = ()
    """Dataset names that train cohorts (default: every dataset)."""
    targets: tuple[str, ...] = ()
    """Dataset names whose test images are fitted (default: every dataset)."""
    backbones: tuple[Literal["siren", "ffmlp"], ...] = ("siren", "ffmlp")
    """Backbones to sweep."""
    depths: tuple[str, ...] = ("all",)
    """Regimes: 'all' (= none, 0..L−1, random), or any of 'none', 'random' and integers k."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Re-initialisation seeds of the test-time fits [paper: 3]."""
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
    images when images.size is None), recorded in every row; None keeps net.ff_sigma unchanged (SPEC §2)."""
    cohort_train: TrainConfig = TrainConfig(steps=5000, target_psnr=30.0, lr=1e-4)
    """Cohort schedule: ≤ 5000 steps, stop at cohort-mean PSNR ≥ 30 dB [paper], lr 1e-4 [STRAINER]."""
    train: TrainConfig = TrainConfig(steps=500, lr=1e-4)
    """Test-time schedule of the freeze-k and no-freeze fits: 500 steps, lr 1e-4 [paper]."""
    random_lr: float | None = None
    """Learning rate of the random-init baseline; None = the backbone's single-signal lr (default_lr)."""
    images: DataConfig = DataConfig()
    """How images are loaded (size, square crop, channels)."""
    lpips: bool = True
    """Compute LPIPS (NaN when its weights are absent)."""


@dataclass(frozen=True)
class ExecSpec:
    """How a sweep runs (does not change results, so not part of the keys)."""

    cluster: Cluster = "local"
    """'local' (submitit LocalExecutor: real subprocesses), 'debug' (in-process), 'slurm' (job arrays)."""
    jobs: int = 2
    """Number of jobs the fits are dealt into (local: concurrent processes; slurm: array size)."""
    threads: int = 1
    """torch threads per job (fixed so that results do not depend on the machine's core count)."""
    max_members: int | None = None
    """Members per chunk (one stack); None = from the memory budget (memory.members_per_chunk), capped at 64."""
    timeout_min: int = 240
    """Per-job time limit (minutes)."""
    slurm_partition: str | None = None
    """SLURM partition (None = the cluster's default)."""
    slurm_mem_gb: float = 2.0
    """Memory per SLURM job."""
    device: str = "cpu"
    """Device of the jobs: 'cpu', 'cuda' or 'auto'."""


# ------------------------------------------------------------------------------------------------ plan
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


def depth_list(depths: Sequence[str], L: int) -> list[int | str]:
    """Regimes in sweep order: 'none', k..., 'random' (as 'none' | int | 'random')."""
    out: list[int | str] = []
    for d in depths:
        items: list[int | str] = ["none", *range(L), "random"] if d == "all" else [d if d in ("none", "random") else _int_depth(d, L)]
        for k in items:
            if k not in out:
                out.append(k)
    return out


def _int_depth(d: str, L: int) -> int:
    try:
        k = int(d)
    except ValueError:
        raise ValueError(f"depth {d!r}: use 'all', 'none', 'random' or an integer 0..{L - 1}") from None
    if not 0 <= k < L:
        raise ValueError(f"freeze depth {k} is outside 0..{L - 1} for a {L}-layer encoder")
    return k


def load_dataset(path: str, images: DataConfig) -> list:
    from .data import resolve

    sigs = resolve(path, images)
    names = [s.name for s in sigs]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: image names are not unique")
    return sigs


def split_names(sigs: Sequence, spec: SweepSpec, dataset: str) -> tuple[list[str], list[str]]:
    """(cohort names, test names) of one dataset (see module docstring)."""
    from .data import split

    if len(sigs) <= spec.n_cohort:
        raise ValueError(f"dataset {dataset!r} has {len(sigs)} images; a cohort of {spec.n_cohort} leaves none for testing")
    cohort, test = split(sigs, spec.n_cohort, spec.n_test, spec.split_seed)
    return [s.name for s in cohort], [s.name for s in test]


def net_for(spec: SweepSpec, backbone: str, res: int) -> NetConfig:
    """The swept architecture for a backbone, with FFMLP's σ scaled to the resolution (SPEC §2)."""
    net = replace(spec.net, backbone=backbone)
    if backbone == "ffmlp" and spec.sigma_at_256 is not None:
        net = replace(net, ff_sigma=spec.sigma_at_256 * res / 256.0)
    return net


@dataclass
class Plan:
    """Everything a sweep will compute, as plain data."""

    cohorts: list[dict[str, Any]] = field(default_factory=list)
    fits: list[dict[str, Any]] = field(default_factory=list)


def make_plan(spec: SweepSpec, run_dir: Path) -> Plan:
    """Expand the spec into cohort tasks and fit tasks (with keys); loads images to split and group them."""
    datasets = parse_data(spec.data)
    sources = list(spec.sources) or list(datasets)
    targets = list(spec.targets) or list(datasets)
    for n in sources + targets:
        if n not in datasets:
            raise ValueError(f"dataset {n!r} is not defined; define it with --data {n}=PATH")
    if not spec.backbones:
        raise ValueError("no backbones to sweep")
    if not spec.seeds:
        raise ValueError("no seeds given")
    L = spec.net.depth
    regimes = depth_list(spec.depths, L)
    sigs = {n: load_dataset(p, spec.images) for n, p in datasets.items() if n in sources or n in targets}
    splits = {n: split_names(s, spec, n) for n, s in sigs.items()}
    shapes = {n: {s.name: s.shape for s in ss} for n, ss in sigs.items()}
    chans = {n: {s.name: s.channels for s in ss} for n, ss in sigs.items()}
    train_h = config_hash(spec.train)
    img_h = config_hash(spec.images)
    plan = Plan()
    cohort_of: dict[tuple[str, str], dict[str, Any]] = {}
    for src in sources:
        names = splits[src][0]
        res = spec.images.size or max(max(shapes[src][n]) for n in names)
        for bb in spec.backbones:
            net = net_for(spec, bb, res)
            shape_count: dict[tuple[int, int], int] = {}
            for n in names:
                shape_count[shapes[src][n]] = shape_count.get(shapes[src][n], 0) + 1
            grid_shape = max(shape_count, key=lambda s: (shape_count[s], s))  # the cohort's most common grid
            cdef = {"source": src, "path": datasets[src], "backbone": bb, "images": names, "net": to_dict(net),
                    "train": to_dict(spec.cohort_train), "seed": spec.cohort_seed, "data": to_dict(spec.images),
                    "res": res}
            ckey = config_hash(cdef)
            c = dict(cdef, key=ckey, dir=str(run_dir / "cohorts" / f"{src}_{bb}"), grid=list(grid_shape), kind="cohort")
            plan.cohorts.append(c)
            cohort_of[(src, bb)] = c
    for bb in spec.backbones:
        for tgt in targets:
            for img in splits[tgt][1]:
                for seed in spec.seeds:
                    for reg in regimes:
                        srcs = [None] if reg == "random" else sources
                        for src in srcs:
                            if reg == "random":
                                res = spec.images.size or max(shapes[tgt][img])
                                net = net_for(spec, bb, res)
                                lr = spec.random_lr if spec.random_lr is not None else default_lr(bb)
                                ident = {"regime": "random", "net": config_hash(net), "lr": lr}
                                cohort = None
                            else:
                                cohort = cohort_of[(src, bb)]
                                net = None
                                lr = spec.train.lr if spec.train.lr is not None else 1e-4
                                ident = {"regime": "transfer", "cohort": cohort["key"], "lr": lr}
                            freeze = reg if isinstance(reg, int) else None
                            ident.update(source=src, target=tgt, backbone=bb, freeze=freeze, image=img, seed=seed,
                                         train=train_h, data=img_h, lpips=spec.lpips)
                            plan.fits.append({
                                "key": config_hash(ident), "source": src, "target": tgt, "target_path": datasets[tgt],
                                "backbone": bb, "regime": "random" if reg == "random" else "transfer",
                                "depth": "random" if reg == "random" else ("none" if freeze is None else freeze),
                                "freeze": freeze, "image": img, "seed": seed, "lr": lr,
                                "shape": list(shapes[tgt][img]), "channels": chans[tgt][img],
                                "cohort_key": None if cohort is None else cohort["key"],
                                "cohort_dir": None if cohort is None else cohort["dir"],
                                "net": to_dict(net) if net is not None else None,
                            })
    return plan


def chunk_fits(fits: Sequence[dict[str, Any]], max_members: int | None, spec: SweepSpec) -> list[list[dict[str, Any]]]:
    """Group fits into stacks: same (source, backbone, regime, depth, target shape, channels, lr), ≤ cap members."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for f in fits:
        gk = (f["source"], f["target"], f["backbone"], f["regime"], str(f["freeze"]), tuple(f["shape"]), f["channels"], f["lr"],
              json.dumps(f["net"], sort_keys=True))
        groups.setdefault(gk, []).append(f)
    chunks = []
    for gk, fs in groups.items():
        cap = max_members or _auto_cap(spec, fs[0])
        for i in range(0, len(fs), cap):
            chunks.append(fs[i : i + cap])
    return chunks


def _auto_cap(spec: SweepSpec, f: dict[str, Any], limit: int = 64) -> int:
    try:
        from .memory import members_per_chunk
    except ImportError:  # pragma: no cover - memory.py is part of the package
        return 16
    net = replace(spec.net, backbone=f["backbone"])
    start = 0 if f["freeze"] is None else f["freeze"] + 1
    h, w = f["shape"]
    return max(1, min(limit, members_per_chunk(net, h * w, f["channels"], start, device="cpu")))


def deal(chunks: Sequence[list[dict[str, Any]]], jobs: int, depth: int = 5) -> list[list[list[dict[str, Any]]]]:
    """Deal chunks into ≤ jobs lists of roughly equal cost (greedy longest-first on members × pixels × trainable
    layers; a freeze-k fit trains layers k+1..L, the frozen prefix being cached)."""
    def cost(c: list[dict[str, Any]]) -> float:
        f = c[0]
        trainable = depth + 1 if f["freeze"] is None else max(1, depth - f["freeze"])
        return len(c) * f["shape"][0] * f["shape"][1] * trainable

    bins: list[list[list[dict[str, Any]]]] = [[] for _ in range(max(1, min(jobs, len(chunks))))]
    load = [0.0] * len(bins)
    for c in sorted(chunks, key=cost, reverse=True):
        i = load.index(min(load))
        bins[i].append(c)
        load[i] += cost(c)
    return [b for b in bins if b]


# ------------------------------------------------------------------------------------------------ jobs
_SIG_CACHE: dict[tuple[str, str], dict[str, Any]] = {}


def _signals(path: str, images: dict[str, Any]) -> dict[str, Any]:
    ck = (path, json.dumps(images, sort_keys=True))
    if ck not in _SIG_CACHE:
        _SIG_CACHE[ck] = {s.name: s for s in load_dataset(path, DataConfig(**images))}
    return _SIG_CACHE[ck]


def _setup_job(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(threads)))


def train_cohorts_job(cohorts: list[dict[str, Any]], results_dir: str, threads: int = 1, device: str = "cpu") -> list[dict[str, Any]]:
    """Train several cohorts one after the other (one job)."""
    return [train_cohort_job(c, results_dir, threads, device) for c in cohorts]


def train_cohort_job(cohort: dict[str, Any], results_dir: str, threads: int = 1, device: str = "cpu") -> dict[str, Any]:
    """Train one cohort (if not already saved), save it atomically, append its stable-rank row."""
    from .fit import fit_cohort, resolve_device, runtime_info
    from .probes.rank import profile
    from .store import append_row, load_stack, read_rows, save_stack

    _setup_job(threads)
    final = Path(cohort["dir"])
    done = {r.get("key") for r in read_rows(Path(results_dir)) if r.get("kind") == "cohort"}
    if cohort_ready(cohort) and cohort["key"] in done:
        return {"key": cohort["key"], "status": "cached"}
    train = TrainConfig(**dict(cohort["train"], device=device))
    if not cohort_ready(cohort):
        sigs_by = _signals(cohort["path"], cohort["data"])
        sigs = [sigs_by[n] for n in cohort["images"]]
        net = NetConfig(**cohort["net"])
        stack, fr, res = fit_cohort(sigs, net, train, cohort["seed"], progress=False)
        tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
        save_stack(stack, tmp, {"regime": "cohort", "key": cohort["key"], "members": cohort["images"], "steps_run": fr.steps_run,
                                "seconds": fr.seconds, "psnr": [r.psnr for r in res], "source": cohort["source"],
                                "grid": cohort["grid"]})
        if final.exists():  # an incomplete folder from a killed job (cohort_ready was False)
            shutil.rmtree(final)
        os.replace(tmp, final)
    stack, meta = load_stack(final)
    prof = profile(stack, tuple(cohort["grid"]))
    dev = resolve_device(device)
    psnrs = [p for p in meta.get("psnr", []) if p is not None]
    row = {"kind": "cohort", "key": cohort["key"], "source": cohort["source"], "backbone": cohort["backbone"],
           "sr_w": prof.sr_w, "sr_h": prof.sr_h, "k_w": prof.k_w, "k_h": prof.k_h, "grid": list(prof.grid_shape),
           "steps_run": meta.get("steps_run"), "seconds": meta.get("seconds"),
           "psnr_mean": float(sum(psnrs) / len(psnrs)) if psnrs else None, "images": cohort["images"],
           "net": cohort["net"], "train": cohort["train"], "data": cohort["data"], "res": cohort["res"],
           "runtime": runtime_info(dev, train)}
    append_row(Path(results_dir) / f"cohort-{cohort['source']}_{cohort['backbone']}.jsonl", row)
    return {"key": cohort["key"], "status": "trained"}


def cohort_ready(cohort: dict[str, Any]) -> bool:
    d = Path(cohort["dir"])
    if not ((d / "cfg.json").exists() and (d / "model.safetensors").exists()):
        return False
    try:
        return json.loads((d / "cfg.json").read_text()).get("meta", {}).get("key") == cohort["key"]
    except (OSError, json.JSONDecodeError):
        return False


def run_fits_job(chunks: list[list[dict[str, Any]]], results_file: str, spec: dict[str, Any], threads: int = 1,
                 device: str = "cpu") -> dict[str, Any]:
    """Fit every chunk (one stack each) and append one row per member to ``results_file``.

    Keys already present in the run's results are skipped (a job rescheduled after a crash does not redo them).
    """
    from .fit import fit_single, fit_transfer, resolve_device, runtime_info
    from .store import append_row, done_keys, load_stack

    _setup_job(threads)
    results_file = Path(results_file)
    done = done_keys(results_file.parent)
    train = TrainConfig(**dict(spec["train"], device=device))
    images = spec["images"]
    dev = resolve_device(device)
    info = runtime_info(dev, train)
    n_rows = 0
    encoders: dict[str, Any] = {}
    for chunk in chunks:
        todo = [f for f in chunk if f["key"] not in done]
        if not todo:
            continue
        f0 = todo[0]
        by_name = _signals(f0["target_path"], images)
        # members: image-major, seed-minor; a chunk may mix seeds per image (after a partial resume)
        pairs = [(f["image"], f["seed"]) for f in todo]
        names = list(dict.fromkeys(p[0] for p in pairs))
        seeds = list(dict.fromkeys(p[1] for p in pairs))
        if len(pairs) != len(names) * len(seeds) or set(pairs) != {(n, s) for n in names for s in seeds}:
            sub = [[f for f in todo if f["seed"] == s] for s in seeds]  # ragged: one stack per seed
        else:
            sub = [todo]
        for part in sub:
            pn = list(dict.fromkeys(f["image"] for f in part))
            ps = list(dict.fromkeys(f["seed"] for f in part))
            sigs = [by_name[n] for n in pn]
            t0 = time.perf_counter()
            if f0["regime"] == "random":
                tr = replace(train, lr=f0["lr"])
                _, fr, res = fit_single(sigs, NetConfig(**f0["net"]), tr, ps, progress=False, with_lpips=spec["lpips"])
                net_d = f0["net"]
            else:
                if f0["cohort_dir"] not in encoders:
                    encoders[f0["cohort_dir"]] = load_stack(f0["cohort_dir"])[0]
                enc = encoders[f0["cohort_dir"]]
                tr = replace(train, lr=f0["lr"])
                _, fr, res = fit_transfer(enc, sigs, f0["freeze"], tr, ps, progress=False, with_lpips=spec["lpips"])
                net_d = to_dict(enc.cfg)
            wall = time.perf_counter() - t0
            by_pair = {(f["image"], f["seed"]): f for f in part}
            for r in res:
                f = by_pair[(r.image, r.seed)]
                row = {k: f[k] for k in ("key", "source", "target", "backbone", "regime", "depth", "freeze", "image", "seed",
                                         "lr", "shape", "channels", "cohort_key")}
                row.update(kind="fit", status="diverged" if r.diverged else "ok", psnr=r.psnr, ssim=r.ssim, lpips=r.lpips,
                           train_psnr=r.train_psnr, curve=r.curve, curve_steps=r.curve_steps, net=net_d, train=to_dict(tr),
                           data=images, steps_run=fr.steps_run, fit_seconds=fr.seconds, wall_seconds=wall,
                           chunk_members=len(res), runtime=info, sweep=spec["hash"])
                append_row(results_file, row)
                done.add(f["key"])
                n_rows += 1
    return {"rows": n_rows, "file": str(results_file)}


# ------------------------------------------------------------------------------------------------ driver
def make_executor(ex: ExecSpec, folder: Path, name: str):
    import submitit

    folder.mkdir(parents=True, exist_ok=True)
    if ex.cluster == "debug":
        return submitit.DebugExecutor(folder=str(folder))
    if ex.cluster == "local":
        e = submitit.LocalExecutor(folder=str(folder))
        e.update_parameters(timeout_min=ex.timeout_min)
        return e
    if ex.cluster == "slurm":
        if shutil.which("sbatch") is None:
            raise ValueError("--cluster slurm: sbatch is not on PATH (no SLURM client here); use --cluster local")
        e = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        params: dict[str, Any] = dict(timeout_min=ex.timeout_min, cpus_per_task=max(1, ex.threads), name=name,
                                      slurm_array_parallelism=max(1, ex.jobs), mem_gb=ex.slurm_mem_gb)
        if ex.slurm_partition:
            params["slurm_partition"] = ex.slurm_partition
        e.update_parameters(**params)
        return e
    raise ValueError(f"unknown cluster {ex.cluster!r}; use local, debug or slurm")


def _wait(jobs: Sequence[Any], what: str, log=print) -> list[str]:
    """Wait for every job; return one error line per failed job (never raises for a job failure)."""
    errors = []
    for j in jobs:
        try:
            j.result()
        except Exception as e:  # a failed job: report it, let the others finish
            msg = str(e).strip().splitlines()
            last = [m for m in msg if m.strip()][-1] if msg else type(e).__name__
            errors.append(f"{what} job {getattr(j, 'job_id', '?')} failed: {last}")
    return errors


def spec_dict(spec: SweepSpec) -> dict[str, Any]:
    d = to_dict(spec)
    d["hash"] = config_hash(spec)
    return d


def run_sweep(spec: SweepSpec, ex: ExecSpec, run_dir: Path, log=print) -> dict[str, Any]:
    """Plan, train missing cohorts, run missing fits; returns a summary. Assumes run_dir was prepared."""
    from .store import done_keys

    t0 = time.time()
    plan = make_plan(spec, run_dir)
    results = run_dir / "results"
    results.mkdir(parents=True, exist_ok=True)
    sd = spec_dict(spec)
    errors: list[str] = []
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"

    cohort_keys = {r.get("key") for r in _rows(results) if r.get("kind") == "cohort"}
    todo_c = [c for c in plan.cohorts if not (cohort_ready(c) and c["key"] in cohort_keys)]
    log(f"sweep: {len(plan.cohorts)} cohorts ({len(todo_c)} to train), {len(plan.fits)} fits")
    if todo_c:
        exe = make_executor(ex, run_dir / "submitit", "inrlens-cohort")
        groups = [todo_c[i :: ex.jobs] for i in range(min(ex.jobs, len(todo_c)))]
        n = len(groups)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)  # submitit's debug executor leaves log files open
            jobs = exe.map_array(train_cohorts_job, groups, [str(results)] * n, [ex.threads] * n, [ex.device] * n)
            errors += _wait(jobs, "cohort", log)
        if errors:
            return {"errors": errors, "fits": len(plan.fits), "done": len(done_keys(results) & {f["key"] for f in plan.fits})}
    done = done_keys(results)
    todo = [f for f in plan.fits if f["key"] not in done]
    chunks = chunk_fits(todo, ex.max_members, spec)
    packs = deal(chunks, ex.jobs, spec.net.depth)
    log(f"sweep: {len(plan.fits) - len(todo)} fits already done, {len(todo)} to run in {len(chunks)} chunks over {len(packs)} jobs ({ex.cluster})")
    if packs:
        exe = make_executor(ex, run_dir / "submitit", "inrlens-sweep")
        files = [str(results / f"fits-{stamp}-{i:03d}.jsonl") for i in range(len(packs))]
        n = len(packs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            jobs = exe.map_array(run_fits_job, packs, files, [sd] * n, [ex.threads] * n, [ex.device] * n)
            errors += _wait(jobs, "fit", log)
    keys = {f["key"] for f in plan.fits}
    got = done_keys(results) & keys
    return {"errors": errors, "fits": len(keys), "done": len(got), "seconds": time.time() - t0}


def _rows(results: Path) -> list[dict[str, Any]]:
    from .store import read_rows

    return read_rows(results) if results.exists() else []


# ------------------------------------------------------------------------------------------------ spec files
def load_spec_file(path: Path) -> dict[str, Any]:
    """A sweep definition from TOML, YAML or Python (a dict ``SWEEP`` or a SweepSpec ``SPEC``) → plain dict."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such sweep definition")
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
    elif suf == ".py":
        import runpy

        ns = runpy.run_path(str(path))
        obj = ns.get("SPEC", ns.get("SWEEP"))
        if obj is None:
            raise ValueError(f"{path}: define SWEEP = dict(...) or SPEC = SweepSpec(...)")
        d = to_dict(obj)
    else:
        raise ValueError(f"{path}: sweep definitions are .toml, .yaml/.yml or .py files")
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a table/mapping at the top level")
    return d


_NESTED = {"net": NetConfig, "cohort_train": TrainConfig, "train": TrainConfig, "images": DataConfig}


def spec_from_dict(d: dict[str, Any], base: SweepSpec | None = None) -> tuple[SweepSpec, ExecSpec | None]:
    """Build (SweepSpec, ExecSpec or None) from a dict; a nested 'exec' table sets execution options.
    ``data`` may be a table {name: path} or a list of 'name=path'. Unknown keys are refused."""
    base = base or SweepSpec()
    d = dict(d)
    exd = d.pop("exec", None)
    names = {f.name for f in dataclasses.fields(SweepSpec)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown sweep field(s): {', '.join(sorted(unknown))}")
    kw: dict[str, Any] = {}
    for k, v in d.items():
        if k in _NESTED:
            if not isinstance(v, dict):
                raise ValueError(f"sweep field {k!r} must be a table")
            cls = _NESTED[k]
            fnames = {f.name for f in dataclasses.fields(cls)}
            bad = set(v) - fnames
            if bad:
                raise ValueError(f"unknown {k} field(s): {', '.join(sorted(bad))}")
            kw[k] = replace(getattr(base, k), **v)
        elif k == "data" and isinstance(v, dict):
            kw[k] = tuple(f"{n}={p}" for n, p in v.items())
        elif isinstance(v, list):
            kw[k] = tuple(str(x) if k == "depths" else x for x in v)
        else:
            kw[k] = v
    if "depths" in kw:
        kw["depths"] = tuple(str(x) for x in kw["depths"])
    ex = None
    if exd is not None:
        ex = ExecSpec(**exd) if isinstance(exd, dict) else None
    return replace(base, **kw), ex


def merge_flags(file_spec: SweepSpec, flags: SweepSpec) -> SweepSpec:
    """Flags that differ from the defaults override the file (nested configs field by field)."""
    default = SweepSpec()
    kw = {}
    for f in dataclasses.fields(SweepSpec):
        fv, dv = getattr(flags, f.name), getattr(default, f.name)
        if f.name in _NESTED:
            sub = {g.name: getattr(fv, g.name) for g in dataclasses.fields(fv) if getattr(fv, g.name) != getattr(dv, g.name)}
            if sub:
                kw[f.name] = replace(getattr(file_spec, f.name), **sub)
        elif fv != dv:
            kw[f.name] = fv
    return replace(file_spec, **kw)


__all__ = ["SweepSpec", "ExecSpec", "Plan", "make_plan", "chunk_fits", "deal", "run_sweep", "train_cohort_job", "run_fits_job",
           "load_spec_file", "spec_from_dict", "merge_flags", "parse_data", "depth_list", "net_for"]
