"""CPU fit with glibc's default malloc against freed memory kept in the process (inrlens.allocator).

    python benchmarks/bench_allocator.py --height 128 --width-px 192 --width 64 --members 8 --steps 40 --repeats 2

Each run is a fresh process (the allocator setting holds for a whole process): one ``fit_single`` of ``--members``
members (noise images × 2 seeds) at the given size, 1 thread. The two settings alternate, ``--repeats`` times each,
so that a shared machine's load hits both alike; the 1-minute load average is printed before and after. Printed per
setting: median wall seconds, user and system CPU seconds, minor page faults, final PSNR (identical in both: the
arithmetic is the same), and the ratios default / kept. Nothing is asserted: this prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import torch
from inrlens.allocator import keep_freed_memory
from inrlens.config import DataConfig, NetConfig, TrainConfig
from inrlens.data import resolve
from inrlens.fit import fit_single
a = json.loads(sys.argv[1])
kept = keep_freed_memory()
torch.set_num_threads(1)
sigs = resolve(f"noise:uniform:n={a['images']}:size={a['height']}x{a['width_px']}", DataConfig())
t0 = time.perf_counter()
_, _, res = fit_single(sigs, NetConfig(backbone=a["backbone"], width=a["width"], depth=5), TrainConfig(steps=a["steps"], log_every=10**6),
                       tuple(range(a["seeds"])), progress=False, with_lpips=False)
wall = time.perf_counter() - t0
r = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"kept": kept, "wall": wall, "user": r.ru_utime, "sys": r.ru_stime, "minflt": r.ru_minflt,
                  "psnr": [m.psnr for m in res]}))
"""


def run(args: argparse.Namespace, keep: bool) -> dict:
    env = dict(os.environ, INRLENS_KEEP_FREED_MEMORY="1" if keep else "0", OMP_NUM_THREADS="1")
    spec = {"images": max(1, args.members // 2), "seeds": 2 if args.members > 1 else 1, "height": args.height,
            "width_px": args.width_px, "width": args.width, "steps": args.steps, "backbone": args.backbone}
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width-px", type=int, default=192)
    p.add_argument("--width", type=int, default=64, help="hidden width")
    p.add_argument("--members", type=int, default=8, help="members of the stack (images × 2 seeds)")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--backbone", default="siren")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    res: dict[bool, list[dict]] = {False: [], True: []}
    for _ in range(args.repeats):
        for keep in (False, True):
            res[keep].append(run(args, keep))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    med = {k: {f: statistics.median(r[f] for r in v) for f in ("wall", "user", "sys", "minflt")} for k, v in res.items()}
    for keep, name in ((False, "glibc default"), (True, "freed memory kept")):
        m = med[keep]
        print(f"{name:18s} wall {m['wall']:7.1f} s  user {m['user']:6.1f} s  sys {m['sys']:6.1f} s  minor faults {m['minflt']:>10.0f}"
              f"  PSNR {res[keep][0]['psnr'][0]:.4f} dB  (applied: {res[keep][0]['kept']})")
    d, k = med[False], med[True]
    print(f"ratio default / kept: wall {d['wall'] / k['wall']:.2f}x, CPU time {(d['user'] + d['sys']) / (k['user'] + k['sys']):.2f}x, "
          f"page faults {d['minflt'] / max(k['minflt'], 1):.0f}x; same PSNR: {res[False][0]['psnr'] == res[True][0]['psnr']}")


if __name__ == "__main__":
    main()
