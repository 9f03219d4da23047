"""Fit throughput: a plain per-image loop (one nn.Module + one Adam per image) against the inrlens engine.

Both fit the same images from the same initial weights (member i draws from seed + i in both) for the same
number of full-batch Adam steps. Timings are interleaved in one process (reference, engine, reference, …) and
the median of the repeats is reported, because the machine may be shared; the 1-minute load average is
printed beside them. Nothing is asserted on time: this prints figures.

    python benchmarks/bench_fit.py --res 16 --width 32 --batch 16
    python benchmarks/bench_fit.py --res 256 --width 256 --batch 16 --device cuda --tf32 --compile

Output: model-steps/s of each side, their ratio, achieved TFLOP/s against a stated peak, peak memory and the
final-PSNR difference (engine − reference, dB, max over images).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import replace

import torch
from torch import nn

from inrlens import nets, samples
from inrlens.config import DataConfig, NetConfig, TrainConfig
from inrlens.data import grid
from inrlens.fit import Group, resolve_device, runtime_info, set_precision, train
from inrlens.metrics import psnr_from_pm1_mse
from inrlens.nets import Stack, draw_init, layer_dims

VARIANTS = {"fold_omega off": {"FOLD_OMEGA": False}, "fused_bias off": {"FUSED_BIAS": False},
            "fused_adam off": {"fused_adam": False},
            "all off": {"FOLD_OMEGA": False, "FUSED_BIAS": False, "fused_adam": False}, "compile toggled": {"compile": None}}
"""Engine variants timed with --variants: each speed-up of nets/fit switched off (one at a time, then all), and
torch.compile switched to the opposite of --compile."""


@contextmanager
def switched(switches: dict):
    """Temporarily set the nets module switches named in ``switches`` (upper-case keys)."""
    old = {k: getattr(nets, k) for k in switches if k.isupper()}
    try:
        for k in old:
            setattr(nets, k, switches[k])
        yield
    finally:
        for k, v in old.items():
            setattr(nets, k, v)

# Stated peaks (dense, TFLOP/s) used for the utilisation figure; override with --peak-tflops.
PEAKS = {"H100": (67.0, 495.0), "H200": (67.0, 495.0), "A100": (19.5, 156.0), "L40S": (91.6, 183.0)}
CPU_PEAK = 0.16  # 2 cores × 32 fp32 FLOP/cycle (AVX2, 2 FMA units) × 2.5 GHz, an assumed nominal figure


class PlainINR(nn.Module):
    """The reference: SIREN or FFMLP written the usual way (nn.Linear layers, sin(ω₀·) / ReLU)."""

    def __init__(self, cfg: NetConfig, out_features: int, seed: int):
        super().__init__()
        self.cfg = cfg
        init = draw_init(cfg, out_features, seed)  # same numbers as the engine's member
        self.layers = nn.ModuleList()
        for (fan_in, fan_out), w, b in zip(layer_dims(cfg, out_features), init.weights, init.biases):
            lin = nn.Linear(fan_in, fan_out)
            with torch.no_grad():
                lin.weight.copy_(w.T)
                lin.bias.copy_(b[0])
            self.layers.append(lin)
        if cfg.backbone == "ffmlp":
            self.register_buffer("B", init.encoding["fourier"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.backbone == "ffmlp":
            p = 2 * math.pi * x @ self.B
            x = torch.cat([torch.sin(p), torch.cos(p)], -1)
        for i, lin in enumerate(self.layers[:-1]):
            x = lin(x)
            if self.cfg.backbone == "siren":
                x = torch.sin((self.cfg.omega0_first if i == 0 else self.cfg.omega0) * x)
            else:
                x = torch.relu(x)
        return self.layers[-1](x)


def reference_fit(cfg: NetConfig, coords: torch.Tensor, targets: torch.Tensor, seeds: list[int], steps: int, lr: float,
                  device: torch.device) -> tuple[float, float, list[float]]:
    """One model and one Adam per image, images one after another. Returns (wall s, process CPU s, final PSNR per image)."""
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    models = []
    for i, seed in enumerate(seeds):
        model = PlainINR(cfg, targets.shape[-1], seed).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        y = targets[i]
        for _ in range(steps):
            loss = ((model(coords) - y) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        models.append(model)
    sync(device)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    with torch.no_grad():
        psnr = [float(psnr_from_pm1_mse(((m(coords).clamp(-1, 1) - targets[i]) ** 2).mean())) for i, m in enumerate(models)]
    return seconds, cpu, psnr


def engine_fit(cfg: NetConfig, coords: torch.Tensor, targets: torch.Tensor, seeds: list[int], steps: int, lr: float,
               device: torch.device, tcfg: TrainConfig, chunk: int) -> tuple[float, float, list[float]]:
    """The inrlens engine: stacks of ``chunk`` members through fit.train. Returns (wall s, CPU s, final PSNR)."""
    seconds, cpu, psnr = 0.0, 0.0, []
    for lo in range(0, len(seeds), chunk):
        ids = list(range(lo, min(lo + chunk, len(seeds))))
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        stack = Stack.init(cfg, targets.shape[-1], [seeds[i] for i in ids]).to(device)
        group = Group(coords, targets[ids], list(range(len(ids))), (0, 0))
        train(stack, [group], replace(tcfg, steps=steps, log_every=steps), start=0, lr=lr, progress=False)
        sync(device)
        seconds += time.perf_counter() - t0
        cpu += time.process_time() - c0
        with torch.no_grad():
            mse = ((stack(coords).clamp(-1, 1) - targets[ids]) ** 2).mean(dim=(1, 2))
        psnr += psnr_from_pm1_mse(mse).tolist()
    return seconds, cpu, psnr


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_per_model_step(cfg: NetConfig, pixels: int, out_features: int, start: int = 0) -> float:
    """Matmul FLOPs of one Adam step of one member, layers ≥ start trained: forward 2·P·in·out per layer, backward
    2·P·in·out for the weight gradient plus 2·P·in·out for the input gradient (not needed by layer ``start``)."""
    total = 0.0
    for ell, (i, o) in enumerate(layer_dims(cfg, out_features)):
        if ell < start:
            continue
        total += 2 * pixels * i * o * (2 if ell == start else 3)
    return total


def load_targets(res: int, n: int, channels: int) -> torch.Tensor:
    """n real photo tiles (built-in sample set) at res×res → (n, P, C) in [-1, 1]."""
    sigs = samples.resolve("sample:photos", DataConfig(size=res, square=True, channels="gray" if channels == 1 else "rgb"))
    if len(sigs) < n:
        raise SystemExit(f"bench_fit: only {len(sigs)} sample tiles available, asked for {n}")
    return torch.stack([s.targets() for s in sigs[:n]])


def peak_tflops(device: torch.device, tf32: bool, given: float | None) -> float:
    if given is not None:
        return given
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, (fp32, t32) in PEAKS.items():
            if key in name:
                return t32 if tf32 else fp32
        return math.nan
    return CPU_PEAK


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--res", type=int, default=16, help="image side in pixels")
    ap.add_argument("--batch", type=int, default=16, help="number of images (members)")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--backbone", choices=["siren", "ffmlp"], default="siren")
    ap.add_argument("--channels", type=int, choices=[1, 3], default=3)
    ap.add_argument("--steps", type=int, default=100, help="Adam steps per image")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved timing repeats (median reported)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tf32", action="store_true", help="TF32 matmuls on CUDA (both sides)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the engine's step")
    ap.add_argument("--no-fused-adam", action="store_true")
    ap.add_argument("--chunk", type=int, default=0, help="members per stack; 0 = from the memory budget")
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = leave as is")
    ap.add_argument("--peak-tflops", type=float, default=None, help="stated peak for the utilisation figure")
    ap.add_argument("--no-reference", action="store_true", help="time the engine only (large sizes)")
    ap.add_argument("--variants", action="store_true",
                    help="also time the engine with each speed-up switched off (fold_omega, fused_bias, fused_adam, all)")
    ap.add_argument("--json", default="", help="also append the figures as one JSON line to this file")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    set_precision(a.tf32)
    sigma = 10.0 * a.res / 256
    cfg = NetConfig(backbone=a.backbone, width=a.width, depth=a.depth, ff_sigma=sigma)
    tcfg = TrainConfig(steps=a.steps, log_every=max(a.steps, 1), tf32=a.tf32, compile=a.compile,
                       fused_adam=not a.no_fused_adam, device=str(device))
    lr = 1e-4 if a.backbone == "siren" else 1e-3
    targets = load_targets(a.res, a.batch, a.channels).to(device)
    coords = grid(a.res, a.res, device=device)
    seeds = list(range(a.batch))
    from inrlens.memory import members_per_chunk

    chunk = a.chunk or min(a.batch, members_per_chunk(cfg, coords.shape[0], a.channels, 0, device))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ref_t, eng_t, ref_c, eng_c, ref_p, eng_p = [], [], [], [], None, None
    var_t: dict[str, list[float]] = {}
    var_c: dict[str, list[float]] = {}
    var_p: dict[str, float] = {}
    # warm-up at the timed chunk shape (allocator, kernels, and torch.compile's static-shape compile)
    engine_fit(cfg, coords, targets[:chunk], seeds[:chunk], 2, lr, device, tcfg, chunk)
    if a.variants:  # the compile-toggled variant compiles (or not) on its own first call
        engine_fit(cfg, coords, targets[:chunk], seeds[:chunk], 2, lr, device, replace(tcfg, compile=not tcfg.compile), chunk)
    for _ in range(a.repeats):
        if not a.no_reference:
            s, c, ref_p = reference_fit(cfg, coords, targets, seeds, a.steps, lr, device)
            ref_t.append(s)
            ref_c.append(c)
        s, c, eng_p = engine_fit(cfg, coords, targets, seeds, a.steps, lr, device, tcfg, chunk)
        eng_t.append(s)
        eng_c.append(c)
        if a.variants:
            for name, switches in VARIANTS.items():
                with switched(switches):
                    s, c, p = engine_fit(cfg, coords, targets, seeds, a.steps, lr, device,
                                         replace(tcfg, fused_adam=switches.get("fused_adam", tcfg.fused_adam),
                                                 compile=(not tcfg.compile) if "compile" in switches else tcfg.compile), chunk)
                var_t.setdefault(name, []).append(s)
                var_c.setdefault(name, []).append(c)
                var_p[name] = max(abs(x - y) for x, y in zip(p, eng_p))
    model_steps = a.batch * a.steps
    flops = flops_per_model_step(cfg, coords.shape[0], a.channels) * model_steps
    peak = peak_tflops(device, a.tf32, a.peak_tflops)
    eng_med = statistics.median(eng_t)
    res = {
        "bench": "fit", "res": a.res, "batch": a.batch, "width": a.width, "depth": a.depth, "backbone": a.backbone,
        "steps": a.steps, "repeats": a.repeats, "chunk": chunk,
        "engine_model_steps_per_s": model_steps / eng_med, "engine_seconds": eng_t, "engine_cpu_seconds": eng_c,
        "engine_tflops": flops / eng_med / 1e12, "peak_tflops": peak,
        "engine_utilisation": flops / eng_med / 1e12 / peak if peak == peak else math.nan,
        "engine_psnr_mean": statistics.fmean(eng_p),
        "load_avg_1min": os.getloadavg()[0],
        "runtime": runtime_info(device, tcfg),
    }
    if ref_t:
        ref_med = statistics.median(ref_t)
        res.update({"reference_model_steps_per_s": model_steps / ref_med, "reference_seconds": ref_t, "reference_cpu_seconds": ref_c,
                    "speedup_cpu_time": statistics.median(ref_c) / statistics.median(eng_c),
                    "reference_tflops": flops / ref_med / 1e12, "speedup": ref_med / eng_med,
                    "reference_psnr_mean": statistics.fmean(ref_p),
                    "psnr_diff_max_db": max(abs(x - y) for x, y in zip(eng_p, ref_p))})
    if var_t:
        res["variants"] = {n: {"seconds": var_t[n], "cpu_seconds": var_c[n],
                               "slowdown_wall": statistics.median(var_t[n]) / eng_med,
                               "slowdown_cpu": statistics.median(var_c[n]) / statistics.median(eng_c),
                               "psnr_diff_max_db": var_p[n]} for n in var_t}
    res["peak_memory_mib"] = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                              else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    res["peak_memory_kind"] = "cuda max_memory_allocated" if device.type == "cuda" else "process max RSS"
    print_summary(res)
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps(res) + "\n")
    return res


def print_summary(r: dict) -> None:
    rt = r["runtime"]
    print(f"bench_fit  {r['backbone']} {r['res']}px width {r['width']} depth {r['depth']}, {r['batch']} images × "
          f"{r['steps']} steps, chunk {r['chunk']}, device {rt['device']} ({rt['device_name']}), threads {rt['threads']}, "
          f"tf32 {rt['tf32']}, compile {rt['compile']}, fused_adam {rt.get('fused_adam')}, load avg {r['load_avg_1min']:.2f}")
    if "speedup" in r:
        print(f"  reference loop : {r['reference_model_steps_per_s']:10.1f} model-steps/s  "
              f"(median of {r['repeats']}: {', '.join(f'{s:.2f}' for s in r['reference_seconds'])} s)")
    print(f"  inrlens engine : {r['engine_model_steps_per_s']:10.1f} model-steps/s  "
          f"(median of {r['repeats']}: {', '.join(f'{s:.2f}' for s in r['engine_seconds'])} s)")
    if "speedup" in r:
        print(f"  speed-up       : {r['speedup']:.2f}× wall-clock, {r['speedup_cpu_time']:.2f}× process CPU time "
              f"(CPU s, median: reference {statistics.median(r['reference_cpu_seconds']):.2f}, "
              f"engine {statistics.median(r['engine_cpu_seconds']):.2f})")
    print(f"  engine         : {r['engine_tflops'] * 1e3:.2f} GFLOP/s matmul = {100 * r['engine_utilisation']:.1f} % of "
          f"a stated {r['peak_tflops']} TFLOP/s peak;  peak memory {r['peak_memory_mib']:.0f} MiB ({r['peak_memory_kind']})")
    for n, v in r.get("variants", {}).items():
        print(f"  engine, {n:15}: {v['slowdown_wall']:.2f}× the engine's wall time, {v['slowdown_cpu']:.2f}× its CPU time; "
              f"final PSNR max |diff| {v['psnr_diff_max_db']:.4f} dB")
    if "speedup" in r:
        print(f"  final PSNR     : engine {r['engine_psnr_mean']:.3f} dB, reference {r['reference_psnr_mean']:.3f} dB, "
              f"max |diff| {r['psnr_diff_max_db']:.4f} dB")


if __name__ == "__main__":
    main()
    sys.exit(0)
