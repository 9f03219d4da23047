"""``--plan``: what a study would run, counted from the sweep's own plan (:func:`study_counts`), and an estimate of
its wall time on this machine from a few timed steps (:func:`estimate_time`; docs/presets.md). Nothing is written.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..sweep import make_plan as sweep_plan
from .preset import Resolved


def study_counts(plan: Resolved, run: Path) -> dict[str, Any]:
    """What the preset would run, counted from the sweep's own plan (nothing is written): per dataset its images,
    shapes and test images; cohorts; fits per (backbone, regime); single fits, SAEs, atom maps and ablations."""
    from ..rules import depth_label

    grid_plan = sweep_plan(plan.spec, run / "sweep")
    ds: dict[str, dict[str, Any]] = {}
    for name, path in plan.datasets.items():
        tests = {f.image: f.shape for f in grid_plan.fits if f.target == name}
        co = next((c for c in grid_plan.cohorts if c.source == name), None)
        shapes: dict[str, int] = {}
        for sh in tests.values():
            key = f"{sh[0]}×{sh[1]}"
            shapes[key] = shapes.get(key, 0) + 1
        ds[name] = {"path": path, "test images": len(tests), "test shapes": shapes,
                    "cohort images": len(co.images) if co else 0, "cohort grid": list(co.grid) if co else None,
                    "analogue of": plan.study.analogues.get(name)}
    by: dict[str, int] = {}
    for f in grid_plan.fits:
        k = f"{f.backbone} {('k=' + depth_label(f.depth)) if isinstance(f.depth, int) else depth_label(f.depth)}"
        by[k] = by.get(k, 0) + 1
    L = plan.spec.net.depth
    layers = list(plan.study.layers) or list(range(L))
    conds = len(plan.study.conditions) * len(plan.spec.backbones)
    abl_layers = layers if plan.study.ablate_all_layers else list(plan.study.ablate_layers)
    return {"datasets": ds, "cohorts": len(grid_plan.cohorts), "fits": len(grid_plan.fits), "fits by": by,
            "single fits": len(plan.spec.backbones) if "single" in plan.study.conditions else 0,
            "saes": conds * len(layers), "atom maps": conds * len(layers) * plan.study.atlas_top,
            "ablations": conds * len(abl_layers) * plan.study.ablate_top, "plan": grid_plan}


def _time_steps(stack: Any, shape: tuple[int, int], channels: int, start: int, device: Any, steps: int,
                budget_s: float = 1.0) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) per Adam step of ``stack`` on an H×W grid with random targets
    (inrlens.fit.train, frozen prefix cached as in a real fit). Two untimed warm-up steps, then ``steps`` timed
    steps, fewer (at least 3) when that many would take more than ``budget_s``."""
    import time as _t

    import torch

    from ..data import grid
    from ..fit import Group, train

    h, w = shape
    g = Group(grid(h, w, device=device), torch.rand(stack.members, h * w, channels, device=device) * 2 - 1,
              list(range(stack.members)), shape)
    stack = stack.to(device)

    def run(n: int) -> tuple[float, float, int]:
        for p in stack.parameters():  # train() leaves them frozen
            p.requires_grad_(True)
        t0, c0 = _t.perf_counter(), _t.process_time()
        fr = train(stack, [g], TrainConfig(steps=n, lr=1e-4, log_every=10**9, device=str(device)), start=start, progress=False)
        return _t.perf_counter() - t0, _t.process_time() - c0, max(1, fr.steps_run)

    wall, _, n = run(2)
    n_timed = int(max(3, min(steps, budget_s / max(wall / n, 1e-6))))
    wall, cpu, n = run(n_timed)
    return wall / n, cpu / n


def estimate_time(plan: Resolved, counts: dict[str, Any], steps: int = 20, log=lambda *a: None,
                  max_pixels: int = 65536) -> dict[str, Any]:
    """Wall-time estimate on this machine. For each distinct (backbone, grid shape, channels, width, trainable
    layers) one representative stack is timed for ``steps`` Adam steps (fewer when they would take over a second)
    with as many members as fit ``max_pixels`` member-pixels at width 32 (× 32 / width for wider nets, at least
    1024; a larger grid is timed at that many pixels and scaled by its pixel count); its time per member and step
    is extrapolated to
    every chunk of fits and every cohort, which are then laid out over the jobs as the sweep deals them; the
    in-process stages (single fits, SAEs) likewise. Two figures: from the CPU time of the timed steps (what idle
    cores would take) and from their wall time (at the machine's current load). It does not see process
    start-up, image loading, early stops, atom maps, ablations, figures or the report."""
    import os
    import time as _t

    import torch

    from ..fit import resolve_device
    from ..nets import Stack, cohort_stack, transfer_stack
    from ..probes.sae import train_sae
    from ..rules import backbone_spec
    from ..sweep import chunk_fits, deal, net_for

    dev = resolve_device(plan.ex.device)
    threads = max(1, int(plan.ex.threads))
    torch.set_num_threads(threads)
    spec, gp = plan.spec, counts["plan"]
    cohorts = {c.key: c for c in gp.cohorts}
    cache: dict[tuple, tuple[float, float]] = {}

    def per_step(kind: str, net: Any, shape: tuple[int, int], channels: int, start: int, members: int) -> tuple[float, float]:
        """(wall, cpu) seconds per step of a stack of ``members``; cohorts are timed with all their heads (one shared
        encoder). A grid larger than ``max_pixels`` is timed on a smaller grid of the same aspect and scaled by the
        pixel count (every layer's cost is linear in it)."""
        h, w = shape
        budget = max(1024, int(max_pixels * 32 / max(32, net.width)))  # fewer pixels for wider nets (time stays short)
        m_t = members if kind == "cohort" else max(1, min(members, budget // (h * w)))
        r = min(1.0, (budget / (h * w)) ** 0.5)
        shape_t = (max(3, round(h * r)), max(3, round(w * r)))
        px = (h * w) / (shape_t[0] * shape_t[1])
        key = (kind, net.backbone, net.width, net.ff_features, net.depth, shape_t, channels, start, m_t)
        if key not in cache:
            if kind == "cohort":
                st = cohort_stack(net, channels, m_t, 0)
            elif kind == "transfer":
                st = transfer_stack(cohort_stack(net, channels, 1, 0), None if start == 0 else start - 1, list(range(m_t)),
                                    channels)
            else:
                st = Stack.init(net, channels, list(range(m_t)))
            cache[key] = _time_steps(st, shape_t, channels, start, dev, steps)
            log(f"timed {kind} {net.backbone} width {net.width} {shape_t[0]}×{shape_t[1]} from layer {start}, {m_t} "
                f"member(s): {cache[key][0] * 1e3:.1f} ms/step")
        wall_s, cpu_s = cache[key]
        k = px * (1.0 if kind == "cohort" else members / m_t)
        return wall_s * k, cpu_s * k

    jobs = max(1, int(plan.ex.jobs))
    # cohorts: dealt round-robin over the jobs, each trained to its step limit (an upper bound: they stop early)
    co_cost = []
    for c in gp.cohorts:
        w, cp = per_step("cohort", c.net, tuple(c.grid), _channels(gp, c), 0, len(c.images))
        co_cost.append((w * c.train.steps, cp * c.train.steps))
    # fits: chunked and dealt as run_sweep does; a chunk costs (time per step of its stack) × its backbone's steps
    chunks = chunk_fits(gp.fits, plan.ex.max_members, spec)
    cost: dict[int, tuple[float, float]] = {}
    for ch in chunks:
        f = ch[0]
        net = cohorts[f.cohort_key].net if f.regime == "transfer" else f.net
        start = 0 if f.freeze is None else f.freeze + 1
        w, cp = per_step(f.regime, net, tuple(f.shape), f.channels, start, len(ch))
        n = backbone_spec(spec, f.backbone).train.steps
        cost[id(ch)] = (w * n, cp * n)
    packs = deal(chunks, jobs, spec.net.depth)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    def wall(items: list[list[float]]) -> float:
        """Wall time of jobs with these per-job costs: one after the other (debug), in parallel (slurm, cuda), or
        as processes sharing the cores (local on a CPU)."""
        bins = [sum(x) for x in items] or [0.0]
        if plan.ex.cluster == "debug":
            return sum(bins)
        if plan.ex.cluster == "local" and dev.type == "cpu":
            return max(max(bins), sum(bins) * threads / cores)
        return max(bins)

    out: dict[str, dict[str, float]] = {"cpu": {}, "now": {}}
    for i, mode in ((1, "cpu"), (0, "now")):
        out[mode]["cohorts"] = wall([[c[i] for c in co_cost[j::jobs]] for j in range(min(jobs, len(co_cost)))])
        out[mode]["fits"] = wall([[cost[id(c)][i] for c in p] for p in packs])
        out[mode]["single"] = out[mode]["sae"] = 0.0
    # in-process stages: single fits and SAEs on the decomposed image's grid
    co_src = next((c for c in gp.cohorts if c.source == plan.study.source), None)
    if co_src is not None:
        shape, ch = tuple(co_src.grid), _channels(gp, co_src)
        n_layers = len(plan.study.layers) or spec.net.depth
        for b in spec.backbones:
            if "single" in plan.study.conditions:
                w, cp = per_step("single", net_for(spec, b, max(shape)), shape, ch, 0, 1)
                out["now"]["single"] += w * plan.study.single_steps
                out["cpu"]["single"] += cp * plan.study.single_steps
            width = backbone_spec(spec, b).net.width
            key = ("sae", width, shape)
            if key not in cache:
                h = torch.randn(shape[0] * shape[1], width, device=dev)
                n_t = max(3, min(steps, plan.sae.steps))
                t0, c0 = _t.perf_counter(), _t.process_time()
                train_sae(h, replace(plan.sae, steps=n_t), progress=False)
                cache[key] = ((_t.perf_counter() - t0) / n_t, (_t.process_time() - c0) / n_t)
                log(f"timed SAE n={plan.sae.n} k={plan.sae.k} on {shape[0]}×{shape[1]}×{width}: {cache[key][0] * 1e3:.1f} ms/step")
            k = plan.sae.steps * n_layers * len(plan.study.conditions)
            out["now"]["sae"] += cache[key][0] * k
            out["cpu"]["sae"] += cache[key][1] * k
    for mode in out.values():
        mode["total"] = sum(mode.values())
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {**out["now"], "idle": out["cpu"], "device": str(dev), "threads": threads, "jobs": jobs, "cluster": plan.ex.cluster,
            "cores": cores, "load": load, "timed_stacks": len(cache), "steps": steps,
            "cohorts_serial": sum(c[0] for c in co_cost), "fits_serial": sum(v[0] for v in cost.values())}


def _channels(gp: Any, cohort: Any) -> int:
    """Channels of a cohort's images (those of its source's test images; a dataset has one channel count)."""
    return next((f.channels for f in gp.fits if f.target == cohort.source), 3 if cohort.data.channels == "rgb" else 1)
