"""The advice (and its verification) as JSON, terminal lines and markdown; writing them."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import to_dict
from .profile import Advice, init_sentence, profile_rows


# ------------------------------------------------------------------------------------------------ report
def report_dict(adv: Advice, verification: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything advise found, as the JSON it writes (see docs/advise.md for the fields)."""
    m, p = adv.model, adv.profile
    return {
        "model": m.path, "format": m.format, "backbone": m.stack.cfg.backbone, "net": to_dict(m.stack.cfg),
        "out_features": m.stack.out_features, "layers": [dataclasses.asdict(lay) for lay in m.layers],
        "heads": list(m.heads), "head": m.head, "notes": list(m.notes), "grid": list(adv.grid), "init": dict(adv.init),
        "profile": {"sr_w": p.sr_w, "sr_h": p.sr_h, "sr_h_centred": p.sr_h_centred, "sr_w_init": p.sr_w_init,
                    "delta_sr": p.delta_sr, "k_w": p.k_w, "k_h": p.k_h, "k_h_centred": p.k_h_centred, "k_delta": p.k_delta},
        "recommendation": {"k": adv.k, "rule": "argmax sr(W)", "freeze": f"layers 0..{adv.k}", "argmax_sr_h": p.k_h,
                           "argmax_sr_h_centred": p.k_h_centred, "argmax_delta_sr": p.k_delta},
        "verify": None if verification is None else dict(verification),
    }


def _f(v: Any, d: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{d}f}" if isinstance(v, float) else str(v)


def recommendation_lines(adv: Advice) -> list[str]:
    p = adv.profile
    return [f"recommended freeze depth k* = argmax sr(W) = {adv.k}: freeze layers 0..{adv.k}, re-initialise and train the rest",
            f"beside it: argmax sr(H) = {p.k_h} (centred: {p.k_h_centred}), argmax Δsr = {p.k_delta}",
            init_sentence(adv)]


def verification_lines(v: Mapping[str, Any]) -> list[str]:
    from ..stats import fmt_ci

    g = v["gain_vs_none"]
    k = v["recommended"]
    where = "inside" if v["in_best_set"] else "outside"
    lines = [f"best depth {v['best']}; best-k set (depths whose paired 95% interval against the best reaches 0): "
             f"{', '.join(v['best_set'])}",
             f"verdict on k* = {k}: {v['verdict']} (k* = {k} is {where} the best-k set)",
             f"gain of k* = {v['recommended']} over no-freeze: {fmt_ci(g['mean'], g['lo'], g['hi'], g['n'])} dB "
             f"(k* better than no-freeze: {g['verdict']})"]
    for name, pr in v.get("predictors", {}).items():
        lines.append(f"verdict on {name} = {pr['k']}: {pr['verdict']}")
    return lines


def to_markdown(adv: Advice, verification: Mapping[str, Any] | None = None) -> str:
    """The profile and the verification as a markdown page."""
    m = adv.model
    cfg = m.stack.cfg
    out = [f"# inrlens advise: {m.path}", "",
           f"{m.format} model read as a {cfg.backbone} stack: {cfg.depth} hidden layers of width {cfg.width}, "
           f"{m.stack.out_features} output(s); sr(H) on the {adv.grid[0]}×{adv.grid[1]} grid.", ""]
    out += [f"- {n}" for n in m.notes] + ([""] if m.notes else [])
    out += ["| layer | key | in | out | role | sr(W) | sr(H) | sr(H) centred | sr(W⁰) | Δsr | argmax |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in profile_rows(adv):
        out.append(f"| {r['layer']} | `{r['key']}` | {r['in']} | {r['out']} | {r['role']} | {_f(r['sr_w'])} | {_f(r['sr_h'])} | "
                   f"{_f(r['sr_h_centred'])} | {_f(r['sr_w_init'])} | {_f(r['delta_sr'], 3)} | {r['argmax']} |")
    out += ["", "argmax marks: W = argmax sr(W), H = argmax sr(H) (uncentred), Δ = argmax Δsr.", ""]
    out += [f"- {line}" for line in recommendation_lines(adv)]
    if verification is not None:
        v = verification
        out += ["", "## Verification", "",
                f"{len(v['images'])} image(s) × seeds {', '.join(map(str, v['seeds']))}, {v['steps']} Adam steps; "
                f"lr {v['lr']:g} (freeze fits), {v['random_lr']:g} (random init). PSNR in dB, mean ± sample std over (image, seed).", "",
                "| depth | n | PSNR | in best-k set |", "|---|---|---|---|"]
        for d in v["depths"]:
            out.append(f"| {d['depth']} | {d['n']} | {_f(d['psnr_mean'])} ± {_f(d['psnr_std'])} | "
                       f"{'yes' if d['depth'] in v['best_set'] else ''} |")
        out += [""] + [f"- {line}" for line in verification_lines(v)]
    return "\n".join(out) + "\n"


def check_out(out: str | os.PathLike | None) -> None:
    """--out must be a folder (or not exist yet); checked before any work."""
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")


def write_report(out: str | os.PathLike, adv: Advice, verification: Mapping[str, Any] | None = None) -> list[Path]:
    """OUT/advise.json and OUT/advise.md (each written atomically)."""
    from ..store import atomic_write_json, atomic_write_text

    out = Path(out)
    check_out(out)
    return [atomic_write_json(out / "advise.json", report_dict(adv, verification)),
            atomic_write_text(out / "advise.md", to_markdown(adv, verification))]
