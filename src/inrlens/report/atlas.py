"""Atom atlas: one static, offline HTML page to browse condition → layer → atom.

The page (``atlas/index.html``) is a single self-contained file: the CSS and JavaScript of
``report/atlas.css`` and ``report/atlas.js`` are inlined, the data is a JSON block inside the page and every
image is a PNG data URI, so it opens from disk (``file://``) with no server, no network and no CDN.

Data it shows, per condition (one SAE run of ``inrlens sae``, e.g. ``cohort-siren``), per hidden layer, per
atom: the atom map z_j(x) (viridis, scaled to the atom's own maximum, which is printed), its firing rate and
mean magnitude, and — for ablated atoms — the ablation error map |f' − f| (magma, scaled to its maximum), the
PSNR drop, the locality and the firing-region fraction. Atoms can be sorted by magnitude, PSNR drop or firing
rate; the layer's SAE diagnostics (R², alive %, ρ, PSNR with ĥ substituted) are shown above the atoms.
For atoms with steering renders, buttons over the rendered scales α (plus α = 1, the original reconstruction)
swap the steered reconstruction f′ (h′ = h + (α − 1)·z_j·d_j at the layer, :mod:`inrlens.probes.steer`) and its
difference map |f′ − f| (magma, one scale shared by all α of the atom, which is printed).
Atom semantics (:mod:`inrlens.probes.semantics`), when the SAE folder has them: per atom its top correlate
("top: edges −0.71"; for MRI runs also inside the brain mask), per layer a small table of mean |r| and top counts
per feature, with the caveat that spatially smooth maps inflate |r|.

Input layout (written by ``inrlens sae | atoms | ablate``; paths from :class:`inrlens.probes.decompose.SaeRun`,
documented in docs/run-folder.md)::

    <sae run>/context.json                      condition, image, shape
    <sae run>/results.jsonl                     one diagnostics row per (layer, n, k)
    <sae run>/saes/L{ℓ}_n{n}_k{k}/atoms.safetensors     atom ids, maps (m, H, W), firing_rate, mean_act
    <sae run>/saes/L{ℓ}_n{n}_k{k}/ablation.safetensors  atom ids, err_maps, psnr_drop, locality, region_frac
    <sae run>/saes/L{ℓ}_n{n}_k{k}/steer.safetensors     atom ids, scales, images, diffs, psnr_vs_inr/image, original
    <sae run>/saes/L{ℓ}_n{n}_k{k}/semantics.json        per record (all pixels; MRI: also the brain): r, top, summary

:func:`collect` reads that layout into :class:`Condition` objects; :func:`write_atlas` renders any list of
them, so the page can also be built from data computed elsewhere.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

LAYER_STATS = ("r2", "alive_pct", "dead_pct", "rho", "psnr_sub", "psnr_inr")


@dataclass
class Atom:
    """One dictionary atom of one layer's SAE."""

    id: int
    """Atom index j in the dictionary."""
    firing_rate: float
    """Fraction of grid coordinates where z_j > τ."""
    magnitude: float
    """Mean of z_j over the grid (the ranking key)."""
    map: np.ndarray
    """(H, W) atom map z_j(x)."""
    psnr_drop: float | None = None
    """PSNR(f) − PSNR(f') after removing the atom (None: not ablated)."""
    locality: float | None = None
    """Share of the ablation's squared error inside the atom's firing region."""
    region_frac: float | None = None
    """Fraction of the grid where the atom fires (the locality a uniform error would get)."""
    err_map: np.ndarray | None = None
    """(H, W) |f' − f| on [0, 1], channel mean (None: not ablated)."""
    steer: Steering | None = None
    """Renders of the atom steered at a few scales α (None: none stored)."""
    top: dict[str, tuple[str | None, float | None]] = field(default_factory=dict)
    """Top correlate per semantics record ('all' pixels; 'brain' for MRI runs): (feature, signed r); (None, None)
    when no r is defined (constant map). Empty: no semantics.json."""


@dataclass
class Steering:
    """One atom steered alone at S scales: h' = h + (α − 1)·z_j·d_j at its layer (inrlens.probes.steer)."""

    scales: list[float]
    """The S values of α."""
    images: np.ndarray
    """(S, H, W, C) steered reconstructions f' on [0, 1], C ∈ {1, 3}."""
    diffs: np.ndarray
    """(S, H, W) |f' − f| on [0, 1], channel mean."""
    psnr_vs_inr: list[float | None] = field(default_factory=list)
    """PSNR of f' against the unsteered reconstruction f (dB; None: f' = f or not recorded)."""
    psnr_vs_image: list[float | None] = field(default_factory=list)
    """PSNR of f' against the image (dB)."""


@dataclass
class Layer:
    """One hidden layer's SAE and the atoms shown for it."""

    layer: int
    n: int
    k: int
    atoms: list[Atom]
    stats: dict[str, float] = field(default_factory=dict)
    """SAE diagnostics of the layer (keys of LAYER_STATS that were measured)."""
    recon: np.ndarray | None = None
    """(H, W, C) the unsteered reconstruction f on [0, 1], shown at α = 1 (None: no steering renders)."""
    semantics: dict[str, dict[str, dict[str, float | int | None]]] = field(default_factory=dict)
    """Per semantics record ('all', 'brain'): {feature: {'mean_abs_r', 'top_count'}} in the file's feature order,
    '(none)' last (atoms without any r). Empty: no semantics.json."""


@dataclass
class Condition:
    """One INR that was decomposed (regime × backbone, one member image)."""

    name: str
    layers: list[Layer]
    image: str = ""
    shape: tuple[int, int] = (0, 0)


# ------------------------------------------------------------------------------------------- reading
def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _read_semantics(sf: Any) -> tuple[dict[int, dict[str, tuple[str | None, float | None]]], dict[str, Any]]:
    """semantics.json of one SAE folder → ({atom id: {record: (top feature, r)}}, {record: layer summary})."""
    if not sf.semantics.exists():
        return {}, {}
    doc = json.loads(sf.semantics.read_text())
    tops: dict[int, dict[str, tuple[str | None, float | None]]] = {}
    summ: dict[str, Any] = {}
    for where, rec in (doc.get("records") or {}).items():
        for j, name, r in zip(rec.get("atoms", []), rec.get("top", []), rec.get("top_r", [])):
            tops.setdefault(int(j), {})[str(where)] = (None if name is None else str(name), _finite(r))
        s = rec.get("summary") or {}
        order = [f for f in rec.get("features", []) if f in s] + [f for f in s if f not in rec.get("features", [])]
        summ[str(where)] = {f: {"mean_abs_r": _finite(s[f].get("mean_abs_r")), "top_count": int(s[f].get("top_count") or 0)}
                            for f in order}
    return tops, summ


def collect(runs: Sequence[str | Path]) -> list[Condition]:
    """Read SAE run folders (layout in the module docstring) → conditions with their layers and atoms.

    A layer appears once its ``atoms.safetensors`` exists; ablation values are attached to the atoms that have
    them. Runs without any atoms file are refused with a clear message.
    """
    from safetensors.numpy import load_file

    from ..probes.decompose import SaeRun

    out = []
    for run in map(SaeRun, runs):
        if not run.context.exists():
            raise FileNotFoundError(f"{run.root}: not an SAE run folder (no {run.context.name})")
        ctx = json.loads(run.context.read_text())
        rows = {(r.get("layer"), r.get("n"), r.get("k")): r for r in run.read_results()}
        layers = []
        for sf in run.folders():
            if not sf.atoms.exists():
                continue
            ell, n, k = sf.layer, sf.n, sf.k
            a = load_file(str(sf.atoms))
            abl: dict[int, tuple[float | None, float | None, float | None, np.ndarray]] = {}
            if sf.ablation.exists():
                b = load_file(str(sf.ablation))
                for i, j in enumerate(b["atom"].tolist()):
                    abl[int(j)] = (_finite(b["psnr_drop"][i]), _finite(b["locality"][i]), _finite(b["region_frac"][i]),
                                   b["err_maps"][i].astype(np.float32))
            steer: dict[int, Steering] = {}
            recon = None
            if sf.steer.exists():
                t = load_file(str(sf.steer))
                scales = [float(x) for x in t["scales"].tolist()]
                recon = t["original"].astype(np.float32)
                for i, j in enumerate(t["atom"].tolist()):
                    steer[int(j)] = Steering(scales, t["images"][i].astype(np.float32), t["diffs"][i].astype(np.float32),
                                             [_finite(x) for x in t["psnr_vs_inr"][i]], [_finite(x) for x in t["psnr_vs_image"][i]])
            tops, sem = _read_semantics(sf)
            atoms = []
            for i, j in enumerate(a["atom"].tolist()):
                drop, loc, reg, err = abl.get(int(j), (None, None, None, None))
                atoms.append(Atom(int(j), float(a["firing_rate"][i]), float(a["mean_act"][i]), a["maps"][i].astype(np.float32),
                                  drop, loc, reg, err, steer.get(int(j)), tops.get(int(j), {})))
            row = rows.get((ell, n, k), {})
            stats = {s: v for s in LAYER_STATS if (v := _finite(row.get(s))) is not None}
            layers.append(Layer(ell, n, k, atoms, stats, recon, sem))
        if not layers:
            raise FileNotFoundError(f"{run.root}: no atom maps yet (run `inrlens atoms {run.root}` first)")
        shape = tuple(ctx.get("shape") or layers[0].atoms[0].map.shape)
        out.append(Condition(str(ctx.get("condition") or run.root.name), layers, str(ctx.get("image") or ""),
                             (int(shape[0]), int(shape[1]))))
    return out


# ------------------------------------------------------------------------------------------- rendering
def png_uri(img: np.ndarray, cmap: str = "viridis", vmax: float | None = None) -> str:
    """(H, W) array → 'data:image/png;base64,…', colour-mapped on [0, vmax] (vmax = the array's max)."""
    from matplotlib import colormaps
    from PIL import Image

    a = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0)
    top = float(a.max()) if vmax is None else float(vmax)
    x = np.clip(a / top, 0.0, 1.0) if top > 0 else np.zeros_like(a)
    rgb = (colormaps[cmap](x)[..., :3] * 255.0 + 0.5).astype(np.uint8)  # (H, W, 3)
    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def image_uri(img: np.ndarray) -> str:
    """(H, W, C ∈ {1, 3}) image on [0, 1] → 'data:image/png;base64,…' (gray or RGB, 8 bits, clipped)."""
    from PIL import Image

    a = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    u8 = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8, mode="L" if u8.ndim == 2 else "RGB").save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _steer_data(s: Steering | None) -> dict[str, Any] | None:
    """An atom's steering renders for the page: one image and one difference map per α (the maps on one scale)."""
    if s is None or not s.scales:
        return None
    top = float(np.max(s.diffs)) if s.diffs.size else 0.0
    return {"alphas": [float(a) for a in s.scales], "img": [image_uri(x) for x in s.images],
            "diff": [png_uri(d, "magma", vmax=top) for d in s.diffs], "diff_max": top,
            "psnr_inr": [_finite(v) for v in s.psnr_vs_inr], "psnr_img": [_finite(v) for v in s.psnr_vs_image]}


WHERE_LABEL = {"all": "", "brain": "in brain"}
"""How a semantics record is named in the atlas ('all' pixels unnamed)."""
SEMANTICS_NOTE = ("Pearson r over the pixels of the atom map and each feature map; neighbouring pixels are not independent, "
                  "so spatially smooth maps inflate |r| — compare with a baseline (e.g. an SAE on a random-init INR).")


def signed(r: float | None, d: int = 2) -> str:
    """r with an explicit sign (U+2212 minus): '−0.71', '+0.30'; 'n/a' when undefined."""
    v = _finite(r)
    if v is None:
        return "n/a"
    return ("−" if v < 0 else "+") + f"{abs(v):.{d}f}"


def semantic_caption(top: dict[str, tuple[str | None, float | None]]) -> str:
    """An atom's semantics caption: 'top: edges −0.71' (and '· top in brain: wm +0.55' for MRI); '' when none."""
    parts = []
    for where, (name, r) in top.items():
        label = "top" + (f" {WHERE_LABEL.get(where, where)}" if WHERE_LABEL.get(where, where) else "")
        parts.append(f"{label}: none (the map is constant)" if name is None else f"{label}: {name} {signed(r)}")
    return " · ".join(parts)


def _layer_semantics(sem: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any] | None:
    """A layer's semantics table for the page: one column pair (mean |r|, top count) per record, one row per
    feature (the features of the first record, in its order; '(none)' only when some atom has no r)."""
    if not sem:
        return None
    wheres = list(sem)
    feats = [f for f in sem[wheres[0]] if f != "(none)"]
    rows = [{"feature": f, "cells": [[_finite(sem[w].get(f, {}).get("mean_abs_r")), sem[w].get(f, {}).get("top_count")]
                                     for w in wheres]} for f in feats]
    none = [int(sem[w].get("(none)", {}).get("top_count") or 0) for w in wheres]
    if any(none):
        rows.append({"feature": "(none)", "cells": [[None, c] for c in none]})
    return {"where": [WHERE_LABEL.get(w, w) for w in wheres], "rows": rows, "note": SEMANTICS_NOTE}


def atlas_data(conditions: Sequence[Condition], title: str = "inrlens atom atlas") -> dict[str, Any]:
    """The JSON document the page renders (images as data URIs)."""
    conds = []
    for c in conditions:
        layers = []
        for lay in c.layers:
            atoms = []
            for a in lay.atoms:
                atoms.append({"id": a.id, "firing_rate": a.firing_rate, "magnitude": a.magnitude, "map": png_uri(a.map, "viridis"),
                              "map_max": float(np.max(a.map)) if a.map.size else 0.0, "psnr_drop": a.psnr_drop, "locality": a.locality,
                              "region_frac": a.region_frac,
                              "err": None if a.err_map is None else png_uri(a.err_map, "magma"),
                              "err_max": None if a.err_map is None else float(np.max(a.err_map)),
                              "steer": _steer_data(a.steer), "sem": semantic_caption(a.top)})
            layers.append({"layer": lay.layer, "n": lay.n, "k": lay.k, "stats": lay.stats, "atoms": atoms,
                           "recon": None if lay.recon is None else image_uri(lay.recon), "sem": _layer_semantics(lay.semantics)})
        conds.append({"name": c.name, "image": c.image, "shape": list(c.shape), "layers": layers})
    return {"title": title, "conditions": conds}


def _asset(name: str) -> str:
    return resources.files("inrlens.report").joinpath(name).read_text(encoding="utf-8")


# characters a JSON text may hold that mean something to the HTML parser or to older JavaScript parsers
_SCRIPT_UNSAFE = {ord(c): f"\\u{ord(c):04x}" for c in "<>&\u2028\u2029"}


def script_json(data: Any) -> str:
    """JSON text that is safe inside ``<script type="application/json">``: every ``<``, ``>``, ``&``, U+2028
    and U+2029 written as a ``\\uXXXX`` escape.

    With no ``<`` in the block, the HTML tokenizer cannot leave the script's text (no ``</script>``, and no
    ``<!--`` that would switch it into the escaped states where the real end tag is missed). Outside
    strings, JSON never holds these characters, so the text parses to the same value (``json.loads`` /
    ``JSON.parse``). Names of images and conditions are data, never markup.
    """
    blob = json.dumps(data, separators=(",", ":"), allow_nan=False)  # ASCII: also lone surrogates of odd file names
    return blob.translate(_SCRIPT_UNSAFE)


def html_text(s: Any) -> str:
    """Text for HTML element content or an attribute value: &, <, >, " and ' as character references."""
    import html

    return html.escape(str(s), quote=True)


def render(data: dict[str, Any]) -> str:
    """The complete HTML page for an atlas_data document (inline CSS, JS and data).

    The placeholders of ``atlas.html`` are filled in one pass, so text that is inserted (a title or a name
    that happens to contain a placeholder) is never substituted again."""
    import re

    values = {"/*ATLAS_CSS*/": _asset("atlas.css"), "/*ATLAS_JS*/": _asset("atlas.js"), "__ATLAS_DATA__": script_json(data),
              "__ATLAS_TITLE__": html_text(data.get("title", ""))}
    pattern = re.compile("|".join(re.escape(k) for k in values))
    return pattern.sub(lambda m: values[m.group(0)], _asset("atlas.html"))


def write_atlas(conditions: Sequence[Condition], out_dir: str | Path, title: str = "inrlens atom atlas") -> Path:
    """Write ``out_dir/index.html`` (atomically) and return its path."""
    from ..store import atomic_write_text

    if not conditions:
        raise ValueError("atlas: nothing to show (no conditions with atom maps)")
    # atomic_write gives the file the umask's mode: a page to open in a browser, not a private temp file
    return atomic_write_text(Path(out_dir) / "index.html", render(atlas_data(conditions, title)))


def build_atlas(runs: Sequence[str | Path], out_dir: str | Path, title: str = "inrlens atom atlas") -> Path:
    """collect + write_atlas: SAE run folders → ``out_dir/index.html``."""
    return write_atlas(collect(runs), out_dir, title)


__all__ = ["Atom", "Steering", "Layer", "Condition", "collect", "png_uri", "image_uri", "atlas_data", "script_json", "html_text",
           "render", "write_atlas", "build_atlas", "semantic_caption", "signed"]
