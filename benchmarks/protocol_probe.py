"""Which protocol option moves a reduced-scale freeze sweep toward the paper's per-combination tables?

One small scale (SIREN, CelebA-HQ faces downscaled, a cohort of N, a few test images × seeds), one cohort per
*cohort condition*, and for each the whole freeze sweep (no-freeze, k = 0..L−1, random init) on the same test
images and seeds:

* ``stop30``   — stop at 30 dB of the mean per-image PSNR (the library's default reading of the paper's rule);
* ``sum30``    — stop at 30 dB of the summed-MSE reading 10·log10(4/Σᵢ MSEᵢ) that some STRAINER-derived code logs
                 (≥ 10·log10(N) dB later in per-image terms);
* ``stop40``   — stop at 40 dB of the mean per-image PSNR;
* ``nostop``   — no stop: all ``--cap`` steps, as STRAINER's public code trains its cohort.

With ``--reinit`` every freeze k ≤ L−2 is fitted a second time with ``reinit='first_layer_rule'`` (the first
re-initialised layer drawn by the first-layer rule, as STRAINER's public code builds a decoder).

The paper (CelebA→CelebA, SIREN, width 256) has k = 1 above k = 0 (42.36 vs 41.09 dB) and sr(W₁) ≈ 32.45,
sr(H₁) ≈ 32.26. Printed per condition: cohort steps and final cohort PSNR (both readings), per regime the mean ±
sample std of the test PSNR over (image, seed), the paired difference k1 − k0 with its 95 % t interval
(inrlens.stats.mean_ci), sr(W₁) and sr(H₁) centred (inrlens.probes.rank.profile). Everything runs in this process
on the CPU with ``--threads`` torch threads. docs/results/protocol-options.md holds a run and its reading.

    python benchmarks/protocol_probe.py --data ../shared/data/celeba_hq --reinit --json /tmp/probe.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

from inrlens.config import DataConfig, NetConfig, TrainConfig
from inrlens.data import resolve, split
from inrlens.fit import fit_cohort, fit_single, fit_transfer, stop_psnr
from inrlens.probes import rank
from inrlens.rules import mean_std
from inrlens.stats import fmt_ci, mean_ci

CONDITIONS = {
    "stop30": ("stop at 30 dB, mean per-image PSNR", dict(target_psnr=30.0, stop_metric="mean_psnr")),
    "sum30": ("stop at 30 dB, summed-MSE reading", dict(target_psnr=30.0, stop_metric="summed_mse_psnr")),
    "stop40": ("stop at 40 dB, mean per-image PSNR", dict(target_psnr=40.0, stop_metric="mean_psnr")),
    "nostop": ("no stop (all --cap steps)", dict(target_psnr=None)),
}


def load(loadavg: list) -> None:
    loadavg.append(os.getloadavg()[0])


def per_unit(res) -> dict[tuple[str, int], float]:
    return {(r.image, r.seed): r.psnr for r in res if not r.diverged and math.isfinite(r.psnr)}


def summary(units: dict) -> str:
    m, s = mean_std(units.values())
    return f"{m:.2f} ± {s:.2f}"


def paired(a: dict, b: dict) -> tuple[float, float, float, int]:
    return mean_ci([a[u] - b[u] for u in a if u in b])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(Path.cwd().parent / "shared" / "data" / "celeba_hq"), help="image folder")
    ap.add_argument("--scale", type=float, default=0.125, help="DataConfig.scale (256² faces → 32²)")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--n-cohort", type=int, default=10)
    ap.add_argument("--n-test", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--cohort-seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-4, help="cohort, transfer and random-init lr")
    ap.add_argument("--cohort-steps", type=int, default=5000, help="step limit of the stopping cohorts [paper]")
    ap.add_argument("--cap", type=int, default=3000, help="steps of the no-stop cohort")
    ap.add_argument("--test-steps", type=int, default=300)
    ap.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    ap.add_argument("--reinit", action="store_true", help="also fit k ≤ L−2 with reinit='first_layer_rule'")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="write every number here too")
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    loadavg: list[float] = []
    load(loadavg)
    t_all = time.perf_counter()
    sigs = resolve(a.data, DataConfig(scale=a.scale))
    cohort, test = split(sigs, a.n_cohort, a.n_test, a.split_seed)
    shape = cohort[0].shape
    net = NetConfig(backbone="siren", width=a.width, depth=a.depth)
    L = net.depth
    test_tc = TrainConfig(steps=a.test_steps, lr=a.lr, log_every=max(1, a.test_steps // 10), device="cpu")
    print(f"# {len(sigs)} images at scale {a.scale} → {shape[0]}×{shape[1]}; cohort {len(cohort)}, test {len(test)} × "
          f"seeds {a.seeds}; SIREN width {a.width} depth {L}; lr {a.lr}; test steps {a.test_steps}; threads {a.threads}",
          flush=True)
    print(f"# test images: {', '.join(s.name for s in test)}", flush=True)

    t0 = time.perf_counter()
    _, _, rnd = fit_single(test, net, test_tc, seeds=a.seeds, progress=False, with_lpips=False)
    random_units = per_unit(rnd)
    print(f"# random init: {summary(random_units)} dB ({time.perf_counter() - t0:.0f} s)", flush=True)

    out: dict = {"args": vars(a), "shape": list(shape), "test": [s.name for s in test], "random": summary(random_units),
                 "random_units": {f"{i}@{s}": v for (i, s), v in random_units.items()}, "conditions": {}}
    for name in a.conditions:
        label, kw = CONDITIONS[name]
        steps = a.cap if kw.get("target_psnr") is None else a.cohort_steps
        tc = TrainConfig(steps=steps, lr=a.lr, device="cpu", **kw)
        t0 = time.perf_counter()
        enc, fr, _ = fit_cohort(cohort, net, tc, seed=a.cohort_seed, progress=False)
        t_cohort = time.perf_counter() - t0
        mse_last = 4.0 * 10.0 ** (-fr.curve[-1].double() / 10.0)  # per-member MSE on [-1, 1] at the last logged step
        alive = ~fr.diverged
        c_mean, c_sum = stop_psnr(mse_last, alive), stop_psnr(mse_last, alive, "summed_mse_psnr")
        prof = rank.profile(enc, shape, init_seed=a.cohort_seed)
        units: dict[str, dict] = {}
        t0 = time.perf_counter()
        for depth in ["none", *range(L)]:
            freeze = None if depth == "none" else depth
            _, _, res = fit_transfer(enc, test, freeze, test_tc, seeds=a.seeds, progress=False, with_lpips=False)
            units[str(depth)] = per_unit(res)
        if a.reinit:
            for k in range(L - 1):
                _, _, res = fit_transfer(enc, test, k, test_tc, seeds=a.seeds, progress=False, with_lpips=False,
                                         reinit="first_layer_rule")
                units[f"{k}r"] = per_unit(res)
        units["random"] = random_units
        t_fits = time.perf_counter() - t0
        d10 = paired(units["1"], units["0"])
        row = {
            "label": label, "cohort_steps": fr.steps_run, "cohort_mean_psnr": c_mean, "cohort_summed_psnr": c_sum,
            "regimes": {k: summary(v) for k, v in units.items()},
            "units": {k: {f"{i}@{s}": x for (i, s), x in v.items()} for k, v in units.items()},
            "k1_minus_k0": d10, "sr_w": prof.sr_w, "sr_h_centred": prof.sr_h_centred, "sr_h": prof.sr_h,
            "cohort_seconds": t_cohort, "fit_seconds": t_fits,
        }
        if a.reinit:
            row["k1r_minus_k0r"] = paired(units["1r"], units["0r"])
            row["reinit_minus_fresh"] = {str(k): paired(units[f"{k}r"], units[str(k)]) for k in range(L - 1)}
        out["conditions"][name] = row
        load(loadavg)
        print(f"# {name}: cohort {fr.steps_run} steps ({t_cohort:.0f} s), final cohort PSNR mean {c_mean:.2f} / summed "
              f"{c_sum:.2f} dB; fits {t_fits:.0f} s; k1−k0 {fmt_ci(*d10)}", flush=True)

    # ---------------------------------------------------------------------------------------------- tables
    cols = ["none", *map(str, range(L)), "random"]
    print()
    print("| cohort | steps | cohort PSNR mean / summed | " + " | ".join("k=" + c if c.isdigit() else c for c in cols)
          + " | k1 − k0 [95% CI] | sr(W₁) | sr(H₁) centred |")
    print("|---" * (len(cols) + 6) + "|")
    for name, r in out["conditions"].items():
        print(f"| {name} | {r['cohort_steps']} | {r['cohort_mean_psnr']:.1f} / {r['cohort_summed_psnr']:.1f} | "
              + " | ".join(r["regimes"][c] for c in cols)
              + f" | {fmt_ci(*r['k1_minus_k0'])} | {r['sr_w'][1]:.2f} | {r['sr_h_centred'][1]:.2f} |")
    if a.reinit:
        print()
        print("| cohort | " + " | ".join(f"k={k} first_layer_rule" for k in range(L - 1))
              + " | k1 − k0 (first_layer_rule) | " + " | ".join(f"Δk={k} (rule − fresh)" for k in range(L - 1)) + " |")
        print("|---" * (2 * (L - 1) + 2) + "|")
        for name, r in out["conditions"].items():
            print(f"| {name} | " + " | ".join(r["regimes"][f"{k}r"] for k in range(L - 1))
                  + f" | {fmt_ci(*r['k1r_minus_k0r'])} | "
                  + " | ".join(fmt_ci(*r["reinit_minus_fresh"][str(k)]) for k in range(L - 1)) + " |")
    print()
    print("| cohort | sr(W_ℓ), ℓ = 0..L−1 | sr(H_ℓ) centred | sr(H_ℓ) uncentred |")
    print("|---|---|---|---|")
    for name, r in out["conditions"].items():
        f = lambda v: ", ".join(f"{x:.1f}" for x in v)  # noqa: E731
        print(f"| {name} | {f(r['sr_w'])} | {f(r['sr_h_centred'])} | {f(r['sr_h'])} |")
    total = time.perf_counter() - t_all
    print(f"\n# total {total:.0f} s wall; 1-minute load average at start and after each cohort: "
          + ", ".join(f"{x:.1f}" for x in loadavg))
    out["seconds"], out["loadavg"] = total, loadavg
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
