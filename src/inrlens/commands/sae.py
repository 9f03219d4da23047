"""``inrlens sae | atoms | ablate``: TopK SAEs on a saved INR, atom maps and galleries, single-atom ablations.

A run folder (``--out`` of ``inrlens sae``) holds one INR member (= one condition) and its SAEs; the layout is
documented in :mod:`inrlens.probes.atoms`. ``context.json`` records how to rebuild the INR's grid and target, so
``atoms`` and ``ablate`` need only the run folder.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch
import tyro

from ..config import DataConfig, TrainConfig, config_hash, to_dict
from ..data import grid
from ..fit import resolve_device, runtime_info
from ..probes.sae import SAEConfig, diagnostics, layer_acts, load_sae, run_from, save_sae, train_sae
from ..store import append_row, atomic_write_json, done_keys, load_stack, prepare_run, read_rows
from .core import print_table

Positional = tyro.conf.Positional
CONTEXT = "context.json"


def sae_dir(run: Path, layer: int, n: int, k: int) -> Path:
    return run / "saes" / f"L{layer}_n{n}_k{k}"


def _member_names(meta: dict[str, Any]) -> list[str]:
    return [str(m).split("@")[0] for m in meta.get("members", [])]


def _pick_member(member: str, names: Sequence[str], count: int) -> int:
    if member.lstrip("-").isdigit():
        i = int(member)
        if not 0 <= i < count:
            raise ValueError(f"--member {i} is outside 0..{count - 1} for this INR")
        return i
    if member not in names:
        raise ValueError(f"--member {member!r} is not one of this INR's members: {', '.join(names) or '(none recorded)'}")
    return names.index(member)


class Context:
    """A run's INR member, grid and target, rebuilt from context.json."""

    def __init__(self, ctx: dict[str, Any], device: torch.device):
        from ..data import harmonise_channels
        from ..data import resolve

        self.info = ctx
        self.stack, self.meta = load_stack(ctx["inr"], device=device)
        self.member = int(ctx["member"])
        data = DataConfig(**ctx["data"])
        sigs = resolve(tuple(ctx["images"]), data)
        names = [s.name for s in sigs]
        want = ctx.get("image")
        if want in names:
            sig = sigs[names.index(want)]
        elif len(sigs) == 1:
            sig = sigs[0]
        else:
            raise ValueError(f"image {want!r} of member {self.member} is not among the given images ({len(sigs)} found); pass the image the INR was fitted to")
        if sig.channels != self.stack.out_features:
            sig = harmonise_channels([sig], "rgb" if self.stack.out_features == 3 else "gray")[0]
        self.name = sig.name
        self.shape = sig.shape
        self.target = sig.targets().to(device)  # (P, C) in [-1, 1]
        self.coords = grid(*self.shape, device=device)
        self.acts = layer_acts(self.stack, self.coords, self.member)  # L × (P, width)
        self.f = run_from(self.stack, self.acts[-1], self.stack.cfg.depth - 1, self.member)

    @classmethod
    def of_run(cls, run: Path, device: torch.device) -> "Context":
        p = Path(run) / CONTEXT
        if not p.exists():
            raise FileNotFoundError(f"{run}: not an SAE run folder (no {CONTEXT}); create it with `inrlens sae`")
        return cls(json.loads(p.read_text()), device)


def _saes(run: Path, layers: Sequence[int] = ()) -> list[tuple[int, int, int, Path]]:
    """(layer, n, k, folder) of every SAE saved in a run, sorted."""
    out = []
    for d in sorted((Path(run) / "saes").glob("L*_n*_k*")):
        if not (d / "sae.safetensors").exists():
            continue
        ell, n, k = (int(x[1:]) for x in d.name.split("_"))
        if not layers or ell in layers:
            out.append((ell, n, k, d))
    return sorted(out)


@dataclass(frozen=True)
class Sae:
    """Train TopK SAEs on the hidden layers of one member of a saved INR; diagnostics → results.jsonl."""

    inr: Positional[Path]
    """Saved INR folder: a cohort (`inrlens cohort --out`) or a single-fit stack (`inrlens fit --out`/models/HxW)."""
    images: Positional[tuple[str, ...]]
    """The image(s) the INR was fitted to (files, folders or sample:NAME); the member's image gives grid and target."""
    member: str = "0"
    """Which member: index or image name. Cohort: which head produces the output (the encoder is shared)."""
    layers: tuple[int, ...] = ()
    """Hidden layers to train SAEs on; empty = every layer 0..L−1."""
    sae: SAEConfig = SAEConfig()
    sweep_n: tuple[int, ...] = ()
    """n × k sweep (Appendix A.1): dictionary sizes; empty = just sae.n."""
    sweep_k: tuple[int, ...] = ()
    """n × k sweep: TopK values; empty = just sae.k."""
    condition: str = ""
    """Label of this INR in tables and overlaid plots; empty = '<regime>-<backbone>'."""
    data: DataConfig = DataConfig()
    """How to load the images; ignored for a cohort that recorded its own data settings."""
    out: Path = Path("runs/sae")
    """Run folder (layout in inrlens.probes.atoms)."""
    device: str = "auto"
    """'auto', 'cpu', 'cuda', 'cuda:N'."""
    resume: bool = False
    """Continue a run in an existing folder (skips finished (layer, n, k))."""
    overwrite: bool = False
    """Replace the config recorded in an existing folder (results already there are kept)."""

    def run(self) -> None:
        dev = resolve_device(self.device)
        stack, meta = load_stack(self.inr)
        names = _member_names(meta)
        member = _pick_member(self.member, names, stack.members)
        data = DataConfig(**meta["data"]) if "data" in meta else self.data
        regime = meta.get("regime", "single")
        cond = self.condition or f"{regime}-{stack.cfg.backbone}"
        ctx = {"inr": str(Path(self.inr).resolve()), "images": [str(Path(i).resolve()) if not str(i).startswith("sample:") else str(i) for i in self.images],
               "member": member, "image": names[member] if member < len(names) else None, "data": to_dict(data),
               "condition": cond, "regime": regime, "backbone": stack.cfg.backbone}
        for ell in self.layers:
            if not 0 <= ell < stack.cfg.depth:
                raise ValueError(f"layer {ell} is outside 0..{stack.cfg.depth - 1}")
        ns, ks = list(self.sweep_n) or [self.sae.n], list(self.sweep_k) or [self.sae.k]
        combos = [(n, k) for n in ns for k in ks if k <= n]
        if not combos:
            replace(self.sae, n=ns[0], k=ks[0]).validate()  # names the problem (k exceeds n)
            raise ValueError(f"no (n, k) with k <= n among n={ns} k={ks}")
        for n, k in combos:
            replace(self.sae, n=n, k=k).validate()
        context = Context(ctx, dev)  # validates images before anything is written
        ctx["image"], ctx["shape"] = context.name, list(context.shape)
        conf = {"cmd": "sae", "context": ctx, "sae": self.sae}
        out = prepare_run(self.out, conf, self.resume, self.overwrite)
        atomic_write_json(out / CONTEXT, ctx)
        done = done_keys(out / "results.jsonl")
        chash = config_hash(conf)
        layers = list(self.layers) or list(range(stack.cfg.depth))
        if len(combos) < len(ns) * len(ks):
            print(f"note: skipping {len(ns) * len(ks) - len(combos)} (n, k) pair(s) with k > n")
        rows = []
        for ell in layers:
            for n, k in combos:
                key = config_hash({"config": chash, "layer": ell, "n": n, "k": k})
                if key in done:
                    continue
                cfg = replace(self.sae, n=n, k=k)
                h = context.acts[ell]
                sae, log = train_sae(h, cfg, desc=f"sae L{ell} n={n} k={k}")
                diag, stats, _ = diagnostics(context.stack, sae, ell, member, context.coords, context.target, h=h)
                folder = sae_dir(out, ell, n, k)
                save_sae(sae, folder, {"layer": ell, "member": member, "image": context.name, "inr": ctx["inr"],
                                       "condition": cond, "shape": list(context.shape)})
                from ..probes.atoms import save_stats

                save_stats(stats, folder)
                row = {"key": key, "config": chash, "condition": cond, "regime": regime, "backbone": stack.cfg.backbone,
                       "inr": ctx["inr"], "image": context.name, "member": member, "layer": ell, "n": n, "k": k,
                       "width": stack.cfg.width, "sae": to_dict(cfg), **diag, "final_fvu": log.fvu[-1] if log.fvu else math.nan,
                       "train_dead_pct": 100.0 * log.dead_frac[-1] if log.dead_frac else math.nan, "seconds": log.seconds,
                       "runtime": runtime_info(dev, TrainConfig(device=self.device)), "folder": str(folder.relative_to(out))}
                append_row(out / "results.jsonl", row)
                rows.append(row)
        allrows = read_rows(out / "results.jsonl")
        if len({(r["n"], r["k"]) for r in allrows}) > 1:
            from ..report.sae_figures import sweep_heatmaps

            p = sweep_heatmaps(allrows, out / "figures" / "sweep.png", f"{cond}: n × k sweep")
            print(f"heat maps → {p}")
        print_table(rows, ["layer", "n", "k", "psnr_inr", "psnr_sub", "r2", "alive_pct", "dead_pct", "rho", "seconds"],
                    f"SAEs on {cond} member {member} ({context.name}) → {out}")


@dataclass(frozen=True)
class Atoms:
    """Atom maps of every SAE in one or more runs: top atoms by mean magnitude, galleries, health plots."""

    runs: Positional[tuple[Path, ...]]
    """SAE run folders (from `inrlens sae`), e.g. the four conditions."""
    top: int = 16
    """Atoms per gallery (by mean magnitude) and maps stored for the atlas."""
    layers: tuple[int, ...] = ()
    """Layers to process; empty = all that have SAEs."""
    figures: Path | None = None
    """Folder of the overlaid health and SAE-statistics plots; None = <first run>/figures."""
    device: str = "auto"
    """'auto', 'cpu', 'cuda', 'cuda:N'."""

    def run(self) -> None:
        from ..probes.atoms import ATOMS_NAME, atom_maps, load_stats, save_tensors
        from ..report import sae_figures as F

        dev = resolve_device(self.device)
        if self.top < 1:
            raise ValueError("--top must be >= 1")
        figdir = self.figures or Path(self.runs[0]) / "figures"
        curves: dict[int, dict[str, tuple[Any, Any]]] = {}
        table, stat_rows = [], []
        for run in self.runs:
            ctx = Context.of_run(run, dev)
            cond = ctx.info["condition"]
            saes = _saes(run, self.layers)
            if not saes:
                raise FileNotFoundError(f"{run}: no SAEs{' for the requested layers' if self.layers else ''}")
            for ell, n, k, folder in saes:
                sae, _ = load_sae(folder, dev)
                stats, order = load_stats(folder)
                codes = sae.codes(ctx.acts[ell])
                top = order[: min(self.top, n)]
                maps = atom_maps(codes, top, ctx.shape)  # (m, H, W)
                save_tensors({"atom": top, "maps": maps.half(), "firing_rate": stats.firing_rate[top], "mean_act": stats.mean_act[top],
                              "mean_top": maps.mean(0).float()}, folder / ATOMS_NAME)
                g = F.gallery(maps.cpu().numpy(), top.tolist(), folder / "gallery.png", f"{cond} layer {ell} (n={n}, k={k})",
                              rates=stats.firing_rate[top].tolist())
                curves.setdefault(ell, {}).setdefault(f"{cond} n={n} k={k}", (stats.firing_rate.numpy(), stats.mean_act.numpy()))
                table.append({"condition": cond, "layer": ell, "n": n, "k": k, "gallery": str(g)})
            stat_rows += [r for r in read_rows(Path(run) / "results.jsonl") if not self.layers or r["layer"] in self.layers]
        for ell, c in curves.items():
            p = F.health(c, figdir / f"health_L{ell}.png", f"layer {ell}: atom health")
            print(f"health plot → {p}")
        print(f"SAE statistics → {F.sae_stats(stat_rows, figdir / 'sae_stats.png', 'SAE statistics per layer')}")
        print_table(table, ["condition", "layer", "n", "k", "gallery"], "atom galleries")
        stat_rows.sort(key=lambda r: (r["layer"], r["condition"], r["n"], r["k"]))
        print_table(stat_rows, ["layer", "condition", "n", "k", "psnr_inr", "psnr_sub", "r2", "alive_pct", "dead_pct", "rho"],
                    "SAE diagnostics per layer and condition")


@dataclass(frozen=True)
class Ablate:
    """Remove single atoms (h − z_j·d_j) at a layer, propagate, and measure the PSNR drop and its locality."""

    run_dir: Positional[Path]
    """SAE run folder (from `inrlens sae`)."""
    layers: tuple[int, ...] = (2,)
    """Layers to ablate at [guess: 2]; see --all-layers."""
    all_layers: bool = False
    """Ablate at every layer that has an SAE."""
    top: int = 10
    """Atoms per SAE, by mean magnitude [guess: 10]."""
    device: str = "auto"
    """'auto', 'cpu', 'cuda', 'cuda:N'."""

    def run(self) -> None:
        from ..probes.atoms import ABLATION_NAME, ablate, atom_maps, load_stats, save_tensors
        from ..report import sae_figures as F

        dev = resolve_device(self.device)
        if self.top < 1:
            raise ValueError("--top must be >= 1")
        ctx = Context.of_run(self.run_dir, dev)
        saes = _saes(self.run_dir, () if self.all_layers else self.layers)
        if not saes:
            raise FileNotFoundError(f"{self.run_dir}: no SAEs at layer(s) {', '.join(map(str, self.layers))}; use --all-layers or train them")
        cond = ctx.info["condition"]
        done = done_keys(Path(self.run_dir) / "ablations.jsonl")
        rows = []
        for ell, n, k, folder in saes:
            sae, _ = load_sae(folder, dev)
            _, order = load_stats(folder)
            h = ctx.acts[ell]
            codes = sae.codes(h)
            atoms = order[: min(self.top, n)].tolist()
            res = [ablate(ctx.stack, sae, ell, ctx.member, h, codes, [j], ctx.target, ctx.f) for j in atoms]
            H, W = ctx.shape
            err = torch.stack([r.err_map.reshape(H, W) for r in res])
            vec = lambda a: torch.tensor([getattr(r, a) for r in res], dtype=torch.float32)  # noqa: E731
            save_tensors({"atom": torch.tensor(atoms), "err_maps": err.half(), "psnr_drop": vec("psnr_drop"), "locality": vec("locality"),
                          "region_frac": vec("region_frac"), "psnr_after": vec("psnr_after")}, folder / ABLATION_NAME)
            maps = atom_maps(codes, atoms, ctx.shape)
            F.ablation_maps(maps.cpu().numpy(), err.cpu().numpy(), atoms, vec("psnr_drop").tolist(), vec("locality").tolist(),
                            folder / "ablation.png", f"{cond} layer {ell}")
            for j, r in zip(atoms, res):
                row = {"condition": cond, "layer": ell, "n": n, "k": k, "atom": j, "psnr_drop": r.psnr_drop, "psnr_after": r.psnr_after,
                       "locality": r.locality, "region_frac": r.region_frac, "image": ctx.name, "inr": ctx.info["inr"],
                       "figure": str(folder / "ablation.png")}
                row["key"] = config_hash({k2: row[k2] for k2 in ("inr", "image", "layer", "n", "k", "atom")})
                if row["key"] not in done:  # a rerun recomputes (deterministic) but does not duplicate rows
                    append_row(Path(self.run_dir) / "ablations.jsonl", row)
                rows.append(row)
        rows.sort(key=lambda r: -(r["psnr_drop"] if r["psnr_drop"] == r["psnr_drop"] else -math.inf))
        print_table(rows, ["layer", "n", "k", "atom", "psnr_drop", "locality", "region_frac"], f"single-atom ablations on {cond} (largest drop first)")
