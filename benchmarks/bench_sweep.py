"""Cost of a freeze sweep per depth k (frozen-prefix cache on vs off), of a cohort step against a single fit's
step, and an estimate of the paper grid's device-hours from the measured per-step costs.

    python benchmarks/bench_sweep.py --res 32 --width 64 --members 4
    python benchmarks/bench_sweep.py --res 256 --width 256 --members 16 --device cuda --tf32

Per-step costs are medians over interleaved repeats (k and cache on/off alternate inside each repeat) so that a
shared machine's load hits every configuration alike; the load average is printed. The cohort is an untrained
STRAINER stack (timing does not depend on the weights). Nothing is asserted: this prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

from inrlens.config import DataConfig, NetConfig, TrainConfig
from inrlens.data import grid, samples
from inrlens.fit import Group, resolve_device, runtime_info, set_precision, train
from inrlens.nets import Stack, cohort_stack, transfer_stack

# The paper grid (docs/protocol.md): sources/targets with their test-image counts and native pixel counts.
PAPER_TARGETS = {"celeba_hq": (50, 256 * 256), "oasis": (50, 256 * 256), "kodak": (14, 768 * 512)}
"""name → (test images [paper/derived], pixels per image). OASIS slices are taken as 256² (an upper bound of the
native 176×208 / 256×256 slices); Kodak is 768×512."""
PAPER_SOURCES = {"celeba_hq": 256 * 256, "oasis": 256 * 256, "kodak": 768 * 512}
SEEDS, STEPS, COHORT_STEPS, COHORT_N, BACKBONES = 3, 500, 5000, 10, 2


def timed_steps(stack: Stack, group: Group, start: int, steps: int, tcfg: TrainConfig, cache: bool,
                device: torch.device) -> tuple[float, float]:
    """(wall, CPU) seconds per Adam step of layers ≥ start (one train() call, warm-up step excluded)."""
    train(stack, [group], TrainConfig(steps=1, log_every=1, device=tcfg.device, fused_adam=tcfg.fused_adam,
                                      compile=tcfg.compile, tf32=tcfg.tf32),
          start=start, lr=1e-4, progress=False, use_prefix_cache=cache)  # warm-up (allocations, compile)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    c0 = time.process_time()
    fr = train(stack, [group], tcfg, start=start, lr=1e-4, progress=False, use_prefix_cache=cache)
    return fr.seconds / fr.steps_run, (time.process_time() - c0) / fr.steps_run


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--res", type=int, default=32)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--backbone", choices=["siren", "ffmlp"], default="siren")
    ap.add_argument("--members", type=int, default=4, help="(image × seed) members per transfer stack")
    ap.add_argument("--heads", type=int, default=COHORT_N, help="cohort size N")
    ap.add_argument("--steps", type=int, default=20, help="timed Adam steps per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tf32", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", default="", help="also append the figures as one JSON line to this file")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    set_precision(a.tf32)
    net = NetConfig(backbone=a.backbone, width=a.width, depth=a.depth, ff_sigma=10.0 * a.res / 256)
    tcfg = TrainConfig(steps=a.steps, log_every=a.steps, device=str(device), tf32=a.tf32, compile=a.compile)
    sigs = samples.resolve("sample:photos", DataConfig(size=a.res, square=True, channels="rgb"))
    n_img = max(a.members, a.heads)
    if len(sigs) < n_img:
        raise SystemExit(f"bench_sweep: only {len(sigs)} sample tiles, need {n_img}")
    targets = torch.stack([s.targets() for s in sigs[:n_img]]).to(device)  # (n, P, 3)
    coords = grid(a.res, a.res, device=device)
    C, L, M = 3, a.depth, a.members
    encoder = cohort_stack(net, C, a.heads, seed=0)
    depths: list[int | None] = [None] + list(range(L))
    sweep = {(k, c): ([], []) for k in depths for c in (True, False)}
    coh, single = ([], []), ([], [])
    g_members = Group(coords, targets[:M], list(range(M)), (a.res, a.res))
    for _ in range(a.repeats):
        for k in depths:
            for cache in (True, False):
                if k is None and not cache:
                    continue  # nothing is frozen: the cache holds only the coordinates either way
                st = transfer_stack(encoder, k, list(range(M)), C).to(device)
                w, c = timed_steps(st, g_members, 0 if k is None else k + 1, a.steps, tcfg, cache, device)
                sweep[(k, cache)][0].append(w)
                sweep[(k, cache)][1].append(c)
        st = cohort_stack(net, C, a.heads, seed=0).to(device)
        w, c = timed_steps(st, Group(coords, targets[: a.heads], list(range(a.heads)), (a.res, a.res)), 0, a.steps, tcfg, True, device)
        coh[0].append(w)
        coh[1].append(c)
        st = Stack.init(net, C, [0]).to(device)
        w, c = timed_steps(st, Group(coords, targets[:1], [0], (a.res, a.res)), 0, a.steps, tcfg, True, device)
        single[0].append(w)
        single[1].append(c)
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    none_w, none_c = med(sweep[(None, True)][0]), med(sweep[(None, True)][1])
    rows = []
    for k in depths:
        on_w, on_c = med(sweep[(k, True)][0]), med(sweep[(k, True)][1])
        off_w, off_c = (med(sweep[(k, False)][0]), med(sweep[(k, False)][1])) if k is not None else (on_w, on_c)
        rows.append({"k": "none" if k is None else k, "trainable_hidden": L if k is None else L - k - 1,
                     "ms_step_cache": 1e3 * on_w, "ms_step_nocache": 1e3 * off_w,
                     "cpu_ms_step_cache": 1e3 * on_c, "cpu_ms_step_nocache": 1e3 * off_c,
                     "vs_nofreeze": on_w / none_w, "vs_nofreeze_cpu": on_c / none_c})
    res = {"bench": "sweep", "res": a.res, "width": a.width, "depth": L, "backbone": a.backbone, "members": M,
           "heads": a.heads, "steps": a.steps, "repeats": a.repeats, "rows": rows,
           "cohort_ms_step": 1e3 * med(coh[0]), "single_ms_step": 1e3 * med(single[0]),
           "cohort_vs_single": med(coh[0]) / med(single[0]), "cohort_vs_single_cpu": med(coh[1]) / med(single[1]),
           "load_avg_1min": os.getloadavg()[0], "runtime": runtime_info(device, tcfg)}
    res["grid_estimate"] = grid_estimate(rows, res, a.res * a.res, M, L)
    print_summary(res)
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps(res) + "\n")
    return res


def grid_estimate(rows: list[dict], res: dict, pixels: int, members: int, L: int) -> dict:
    """Device-hours of the paper grid from the measured per-step costs, scaled linearly in pixels (compute-bound
    regime; optimistic where the bench size is overhead-bound) and assuming both backbones cost the same.

    Fits: 2 backbones × 3 sources × Σ_targets n_test × 3 seeds × 500 steps × (no freeze + k = 0..L−1), plus
    the random-init baseline (per target, not per source). Cohorts: 2 backbones × 3 sources × ≤ 5000 steps.
    SAEs are not included (they are timed by their own command).
    """
    per_member = {r["k"]: r["ms_step_cache"] / 1e3 / members for r in rows}  # s per model-step at bench size
    fit_s = 0.0
    for _name, (n_test, px) in PAPER_TARGETS.items():
        scale = px / pixels
        for _k, s in per_member.items():
            fit_s += BACKBONES * len(PAPER_SOURCES) * n_test * SEEDS * STEPS * s * scale
        fit_s += BACKBONES * n_test * SEEDS * STEPS * per_member["none"] * scale  # random init ≈ no-freeze cost
    coh_s = sum(BACKBONES * COHORT_STEPS * res["cohort_ms_step"] / 1e3 * px / pixels for px in PAPER_SOURCES.values())
    n_fits = BACKBONES * sum(n for n, _ in PAPER_TARGETS.values()) * SEEDS * (len(PAPER_SOURCES) * (L + 1) + 1)
    return {"fits": n_fits, "fit_hours": fit_s / 3600, "cohort_hours": coh_s / 3600, "total_hours": (fit_s + coh_s) / 3600,
            "assumes": "per-step cost ∝ pixels from the bench size; SAEs excluded; OASIS at 256²"}


def print_summary(r: dict) -> None:
    rt = r["runtime"]
    print(f"bench_sweep  {r['backbone']} {r['res']}px width {r['width']} depth {r['depth']}, {r['members']} members per "
          f"transfer stack, {r['steps']} steps × {r['repeats']} repeats, device {rt['device']} ({rt['device_name']}), "
          f"threads {rt['threads']}, tf32 {rt['tf32']}, compile {rt['compile']}, load avg {r['load_avg_1min']:.2f}")
    print("  k     trainable  ms/step cache  ms/step no-cache  cache speed-up  vs no-freeze (wall / CPU time)")
    for row in r["rows"]:
        ratio = row["ms_step_nocache"] / row["ms_step_cache"]
        print(f"  {str(row['k']):5} {row['trainable_hidden']:9d}  {row['ms_step_cache']:13.2f}  {row['ms_step_nocache']:16.2f}  "
              f"{ratio:13.2f}×  {100 * row['vs_nofreeze']:6.1f} % / {100 * row['vs_nofreeze_cpu']:5.1f} %")
    print(f"  cohort step ({r['heads']} heads, shared encoder): {r['cohort_ms_step']:.2f} ms; single fit step: "
          f"{r['single_ms_step']:.2f} ms; ratio {r['cohort_vs_single']:.2f}× wall, {r['cohort_vs_single_cpu']:.2f}× CPU time")
    g = r["grid_estimate"]
    print(f"  paper grid estimate on this device: {g['fits']} fits → {g['fit_hours']:.2f} h, cohorts {g['cohort_hours']:.2f} h, "
          f"total {g['total_hours']:.2f} h ({g['assumes']})")


if __name__ == "__main__":
    main()
    sys.exit(0)
