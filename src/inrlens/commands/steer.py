"""``inrlens steer``: scale what chosen SAE atoms contribute at one layer and see the image the INR then draws.

h'_ℓ(x) = h_ℓ(x) + Σ_j (α_j − 1)·z_j(x)·d_j, then the rest of the INR (:mod:`inrlens.probes.steer`; the study's
definitions in docs/protocol.md, section "Steering"; the files in docs/run-folder.md).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tyro

Positional = tyro.conf.Positional
Append = tyro.conf.UseAppendAction

STEER_DIR = "steer"


def pair_edits(atoms: tuple[int, ...], scales: tuple[float, ...]) -> list[tuple[int, float]]:
    """--atom/--scale lists → (atom, α) pairs: one scale per atom, or one scale for all atoms (one-line ValueError otherwise)."""
    if not atoms:
        raise ValueError("steer: no --atom given; name at least one atom (e.g. --atom 3 --scale 2)")
    if not scales:
        raise ValueError("steer: no --scale given; give one per --atom, or one for all")
    if len(scales) == 1:
        scales = scales * len(atoms)
    if len(scales) != len(atoms):
        raise ValueError(f"steer: {len(atoms)} --atom but {len(scales)} --scale; give one scale per atom, or one for all")
    return list(zip(atoms, scales))


def edit_stem(layer: int, n: int, k: int, edits: list[tuple[int, float]]) -> str:
    """File name stem of one steering: L{ℓ}_n{n}_k{k}_a{j}x{α}[_a{j2}x{α2}…] (α in %g form)."""
    return f"L{layer}_n{n}_k{k}_" + "_".join(f"a{j}x{a:g}" for j, a in edits)


def _png(arr: np.ndarray) -> bytes:
    """(H, W, C ∈ {1, 3}) on [0, 1] or (H, W, 3) uint8 → PNG bytes."""
    from PIL import Image

    a = np.asarray(arr)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(a, mode="L" if a.ndim == 2 else "RGB").save(buf, format="PNG")
    return buf.getvalue()


def _magma(diff: np.ndarray, vmax: float) -> np.ndarray:
    from matplotlib import colormaps

    x = np.clip(diff / vmax, 0.0, 1.0) if vmax > 0 else np.zeros_like(diff)
    return (colormaps["magma"](x)[..., :3] * 255.0 + 0.5).astype(np.uint8)


def _figure(original: np.ndarray, image: np.ndarray, diff: np.ndarray, title: str, path: Path) -> Path:
    """original | steered | difference (magma, colour bar) side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..store import atomic_write

    gray = original.shape[2] == 1
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.9), layout="constrained")
    for ax, img, name in ((axes[0], original, "original f"), (axes[1], image, "steered f′")):
        ax.imshow(img[:, :, 0] if gray else img, cmap="gray" if gray else None, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=10)
    im = axes[2].imshow(diff, cmap="magma", vmin=0, vmax=max(float(diff.max()), 1e-12), interpolation="nearest")
    axes[2].set_title("|f′ − f| (channel mean, on [0, 1])", fontsize=10)
    fig.colorbar(im, ax=axes[2], fraction=0.046)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def pick_sae(run: Any, layer: int, n: int | None, k: int | None) -> Any:
    """The one saved SAE of ``run`` at ``layer`` matching --n/--k (one-line error when there is none or several)."""
    saes = run.saes()
    if not saes:
        raise FileNotFoundError(f"{run.root}: no SAEs; train them with `inrlens sae`")
    here = [s for s in saes if s.layer == layer]
    if not here:
        have = sorted({s.layer for s in saes})
        raise ValueError(f"no SAE at layer {layer} in {run.root} (SAEs at layer(s) {', '.join(map(str, have))})")
    pick = [s for s in here if (n is None or s.n == n) and (k is None or s.k == k)]
    listed = ", ".join(f"n={s.n} k={s.k}" for s in here)
    if not pick:
        raise ValueError(f"no SAE with{'' if n is None else f' n={n}'}{'' if k is None else f' k={k}'} at layer {layer} (there: {listed})")
    if len(pick) > 1:
        raise ValueError(f"layer {layer} has {len(pick)} SAEs ({', '.join(f'n={s.n} k={s.k}' for s in pick)}); pick one with --n and --k")
    return pick[0]


@dataclass(frozen=True)
class Steer:
    """Steer an SAE run's reconstruction through atoms: h' = h + Σ (α_j − 1)·z_j·d_j at one layer, then the
    rest of the INR. α = 1 keeps an atom, 0 removes it, 2 doubles it. Writes the steered image, the difference
    map |f′ − f| and a side-by-side figure; prints the PSNR against the original reconstruction and the image."""

    run_dir: Positional[Path]
    """SAE run folder (from `inrlens sae`)."""
    layer: int
    """Hidden layer ℓ whose activation is steered (an SAE must exist there)."""
    atom: Append[tuple[int, ...]] = ()
    """Atom index j (repeat the flag for several atoms: --atom 3 --scale 0 --atom 7 --scale 2)."""
    scale: Append[tuple[float, ...]] = ()
    """Scale α_j, one per --atom in the same order, or a single one for every atom."""
    n: int | None = None
    """Dictionary size of the SAE to use when the layer has several (an n × k sweep)."""
    k: int | None = None
    """TopK of the SAE to use when the layer has several."""
    out: Path | None = None
    """Output folder; None = RUN/steer/."""
    device: str = "auto"
    """'auto', 'cpu', 'cuda', 'cuda:N'."""

    def run(self) -> None:
        from ..probes.decompose import MemberContext, SaeRun, current_saes, sae_digest
        from ..probes.sae import load_sae
        from ..probes.steer import check_edits, diff_map, steer_output, steer_psnr, to_image
        from ..store import atomic_write, atomic_write_json
        from .core import print_table

        edits = pair_edits(self.atom, self.scale)
        run = SaeRun(self.run_dir)
        run.read_context()  # "not an SAE run folder" before anything else
        files = pick_sae(run, self.layer, self.n, self.k)
        edits = check_edits(edits, files.n)  # atom range, repeats, finite scales: before the member is loaded
        ctx = MemberContext.from_run(run, self.device)  # refused when the INR changed since the SAEs were trained
        current_saes(run, [files], ctx, strict=True)  # and when this SAE was trained on an earlier INR
        sae, _ = load_sae(files.path, ctx.device)
        f2 = steer_output(ctx, sae, files.layer, edits)
        image = to_image(f2, ctx.shape).cpu().numpy()
        diff = diff_map(f2, ctx.f, ctx.shape).cpu().numpy()
        original = to_image(ctx.f, ctx.shape).cpu().numpy()
        p_inr, p_img = steer_psnr(ctx, f2)
        p_base = steer_psnr(ctx, ctx.f)[1]  # the unsteered INR against the image

        out = Path(self.out) if self.out is not None else run.root / STEER_DIR
        stem = edit_stem(files.layer, files.n, files.k, edits)
        dmax = float(diff.max()) if diff.size else 0.0
        paths = {"image": out / f"{stem}.png", "diff": out / f"{stem}_diff.png", "figure": out / f"{stem}_figure.png",
                 "record": out / f"{stem}.json"}
        atomic_write(paths["image"], _png(image))
        atomic_write(paths["diff"], _png(_magma(diff, dmax)))
        edits_txt = ", ".join(f"atom {j} × {a:g}" for j, a in edits)
        _figure(original, image, diff, f"{ctx.condition} · layer {files.layer} (n={files.n}, k={files.k}) · {edits_txt}", paths["figure"])
        atomic_write_json(paths["record"], {"run": str(run.root), "condition": ctx.condition, "image": ctx.image, "layer": files.layer,
                                            "n": files.n, "k": files.k, "edits": [{"atom": j, "scale": a} for j, a in edits],
                                            "psnr_vs_inr": p_inr, "psnr_vs_image": p_img, "psnr_inr": p_base,
                                            "diff_max": dmax, "diff_mean": float(diff.mean()) if diff.size else 0.0,
                                            "inr_sha256": ctx.record.get("inr_sha256"), "sae_sha256": sae_digest(files)})
        print_table([{"layer": files.layer, "n": files.n, "k": files.k, "edits": edits_txt, "psnr_vs_inr": p_inr,  # inf: f′ = f
                      "psnr_vs_image": p_img, "psnr_inr": p_base, "diff_max": dmax}],
                    ["layer", "n", "k", "edits", "psnr_vs_inr", "psnr_vs_image", "psnr_inr", "diff_max"],
                    f"steering {ctx.condition} ({ctx.image}); PSNR in dB of f′ against the original reconstruction f and the image")
        for key in ("image", "diff", "figure", "record"):
            print(f"{key} → {paths[key]}")


__all__ = ["Steer", "pair_edits", "edit_stem", "pick_sae", "STEER_DIR"]
