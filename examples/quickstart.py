"""inrlens quickstart: the notebook workflow, top to bottom, on the built-in face samples (no downloads).

    python examples/quickstart.py [--out DIR] [--size 24]

1. load ``sample:faces`` (25 px LFW crops) at ``--size`` px,
2. train a small STRAINER cohort (shared encoder + one head per face) into a run folder,
3. freeze sweep on 2 test faces (no freeze, k = 0..L−1, random init),
4. stable-rank profile of the cohort encoder and the freeze depth it predicts,
5. a TopK SAE on one hidden layer and the maps of its strongest atoms,
6. every fit of the run as one pandas DataFrame.

Sizes are small (width 32, depth 3, a few hundred steps), so it runs in well under a minute on one CPU core; the
numbers show the workflow, not the paper's results. Every step prints what it measured.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import inrlens
from inrlens import DataConfig, NetConfig, SAEConfig, TrainConfig


def main(out: Path, size: int) -> None:
    t0 = time.perf_counter()
    data = DataConfig(size=size)
    faces = inrlens.resolve("sample:faces", data)
    print(f"data: {len(faces)} faces at {faces[0].shape[0]}x{faces[0].shape[1]} px, {faces[0].channels} channel(s)")

    # 2. a cohort of 5 faces: one shared encoder (3 hidden layers of width 32), one linear head per face
    net = NetConfig(backbone="siren", width=32, depth=3)
    cohort_rows = inrlens.train_cohort(faces, out / "cohort", net, TrainConfig(steps=300, lr=1e-3, target_psnr=35.0),
                                       n=5, data=data, progress=False)
    psnrs = [r["psnr"] for r in cohort_rows]
    print(f"cohort: {len(cohort_rows)} heads, {cohort_rows[0]['steps_run']} steps, "
          f"mean psnr {sum(psnrs) / len(psnrs):.2f} dB")

    # 3. freeze sweep on 2 faces that are not in the cohort (transfer_images leaves cohort members out)
    # (test-time lr: the protocol's defaults, 1e-4 for transfer fits and SIREN's random init)
    rows = inrlens.transfer_images(out / "cohort", faces, out / "transfer", ("all",), train=TrainConfig(steps=200),
                                   data=data, limit=2, lpips=False, progress=False)
    from inrlens.workflows import summarise_transfer

    print("freeze sweep (2 test faces, 1 seed; ± = sample std):")
    for s in summarise_transfer(rows):
        print(f"  depth {s['depth']:>6}: psnr {s['psnr']:.2f} ± {s['psnr_std']:.2f} dB, ssim {s['ssim']:.3f} (n={s['n']})")

    # 4. stable ranks of the cohort encoder (weights, and activations on the image grid)
    encoder, meta = inrlens.load_stack(out / "cohort")
    prof = inrlens.rank_profile(encoder, faces[0].shape)
    print(f"stable ranks: sr(W) {[round(v, 2) for v in prof.sr_w]}, sr(H) {[round(v, 2) for v in prof.sr_h]}; "
          f"predicted freeze depth k* = {prof.k_w} (from sr(W))")

    # 5. a TopK SAE on hidden layer 1 of head 0 (the encoder is shared, so every head sees the same activations)
    h, w = faces[0].shape
    coords = inrlens.grid(h, w)
    acts = inrlens.layer_acts(encoder, coords, 0)[1]  # (H·W, width)
    sae, log = inrlens.train_sae(acts, SAEConfig(n=64, k=4, steps=300, batch=h * w, lr=1e-3), progress=False)
    codes = sae.codes(acts)
    recon = sae.decode_sparse(codes)
    r2 = 1.0 - float(((acts - recon) ** 2).sum() / ((acts - acts.mean(0)) ** 2).sum())
    firing = (codes.values > sae.cfg.tau)
    alive = len(set(codes.indices[firing].tolist()))
    print(f"sae: layer 1, n={sae.n} atoms, k={sae.cfg.k}: r2 {r2:.3f}, {alive} atoms fire somewhere")
    strength = codes.dense(sae.n).mean(0)  # mean z_j over the grid
    top = strength.argsort(descending=True)[:4].tolist()
    maps = inrlens.atom_maps(codes, top, (h, w))  # (4, H, W)
    for j, m in zip(top, maps):
        print(f"  atom {j:>2}: fires on {100.0 * float((m > sae.cfg.tau).float().mean()):5.1f} % of the pixels, "
              f"peak z {float(m.max()):.3f}")

    # 6. every fit of the run folder (cohort heads and the sweep's fits) as one DataFrame
    df = inrlens.results(out)
    print(f"results: {len(df)} rows, {len(df.columns)} columns")
    table = df[df["regime"].isin(["transfer", "random"])].groupby("depth", sort=False)["psnr"].mean()
    for depth, psnr in table.items():
        print(f"  results depth {depth}: psnr {psnr:.2f} dB")
    finite = all(math.isfinite(v) for v in df["psnr"])
    print(f"done in {time.perf_counter() - t0:.1f} s; all psnr finite: {finite}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="run folder (default: a temporary folder, deleted at the end)")
    ap.add_argument("--size", type=int, default=24, help="image size in px (16–32 keeps it fast)")
    args = ap.parse_args()
    if args.out is None:
        with tempfile.TemporaryDirectory(prefix="inrlens-quickstart-") as tmp:
            main(Path(tmp), args.size)
    else:
        main(args.out, args.size)
