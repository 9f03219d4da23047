"""Atom semantics: what an SAE atom's map z_j(x) correlates with, pixel by pixel.

Each atom map (``inrlens.probes.atoms.atom_maps`` → (m, H, W)) is compared with a small set of feature maps of
the same image on the same H×W grid, by the Pearson correlation over the pixels. Everything here is a pure
function of numpy arrays (torch tensors are accepted and converted); results are float64 numpy arrays.

Feature maps of an image I (H, W, C) in [0, 1] (:func:`feature_maps`):

* ``luminance`` Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601 luma weights, the ones ``inrlens.data`` uses to
  turn colour into gray); a gray image's single channel is its luminance.
* ``red``, ``green``, ``blue``: the colour channels (colour images only).
* ``edges``: the Sobel gradient magnitude of Y, √(G_x² + G_y²), with
  G_x = [1, 2, 1]ᵀ ⊗ [−1, 0, 1] (smoothing down the rows, central difference along the columns) and G_y its
  transpose, applied as correlations with reflect padding (the edge pixel repeated: d c b a | a b c d; scipy's
  ``mode='reflect'``, numpy's ``'symmetric'``). Unnormalised, like ``scipy.ndimage.sobel``.
* ``frequency``: local high-frequency energy, the local RMS of the 5-point Laplacian,
  F = √(G_σ * (ΔY)²), ΔY(i, j) = Y(i−1, j) + Y(i+1, j) + Y(i, j−1) + Y(i, j+1) − 4 Y(i, j) (reflect padding),
  G_σ a normalised Gaussian window of σ = ``window`` px (default 2, truncated at 3σ). For a sinusoid of
  amplitude a and frequency f cycles/px along one axis, ΔY has amplitude 4a sin²(πf), which rises monotonically
  from f = 0 to the Nyquist frequency 0.5, and the window averages out the phase once it spans a period, so F
  ≈ 2√2 a sin²(πf): higher where the image is more finely detailed (it grows with contrast as well as with
  frequency, and a step edge also gives a ridge of F beside it).

Optional extras: :func:`coordinate_maps` (x, y, distance from the centre — atoms of an INR are functions of the
coordinates, so an atom that is a smooth ramp shows up here), and, for the built-in MRI set, :func:`tissue_maps`
(grey matter, white matter, CSF of the same MNI152 slice, aligned pixel for pixel with ``sample:mri``).

Correlation (:func:`correlate`): for an atom map a and a feature map b, flattened over the pixels (optionally
only those inside a mask), r = Σ (a − ā)(b − b̄) / √(Σ (a − ā)² · Σ (b − b̄)²). A map with zero variance (a dead
atom, or a feature such as ``blue`` of an image without blue) has no correlation: r = NaN, and it is never
anyone's top correlate. Pixels are not independent samples (maps are spatially smooth), so |r| is a descriptive
measure, not a test; compare it with the same measure on a baseline (e.g. the atoms of an SAE on a random-init
INR) rather than with a p-value. See docs/protocol.md, "Atom semantics".

In SAE runs: ``inrlens.probes.decompose.atom_maps_for`` builds :func:`member_features` once per run and writes
:func:`semantics_for` of each SAE's top atoms to ``semantics.json`` beside ``atoms.safetensors`` (layout in
docs/run-folder.md); :func:`read_semantics` reads them back as summary rows for the report.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

LUMA_601 = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights of R, G, B (the same weights ``inrlens.data.harmonise_channels`` uses)."""
COLOUR_NAMES = ("red", "green", "blue")
TISSUES = ("gm", "wm", "csf")
"""Keys of :func:`tissue_maps`: grey matter, white matter, cerebrospinal fluid (probabilities in [0, 1])."""
BRAIN_THRESHOLD = 0.05
"""Brain mask of the MNI152 template: T1 / max(T1) > this (the rule ``sample:mri`` uses to find the brain)."""
CONSTANT_RTOL = 1e-9
"""A map counts as constant (r = NaN) when ‖a − ā‖ ≤ CONSTANT_RTOL · ‖a‖ (an all-zero map included)."""


def _np(x: Any) -> np.ndarray:
    """numpy float64 copy of an array or a torch tensor (detached, on the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _as_image(image: Any) -> np.ndarray:
    """(H, W) or (H, W, C) with C ∈ {1, 3} → (H, W, C) float64; ValueError otherwise."""
    a = _np(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ValueError(f"image must be (H, W), (H, W, 1) or (H, W, 3), got shape {tuple(a.shape)}")
    return a


def correlate1d(a: np.ndarray, kernel: Sequence[float], axis: int) -> np.ndarray:
    """out[i] = Σ_t kernel[t] · a[i + t − r] along ``axis`` (a correlation, r = len(kernel) // 2, odd length),
    with reflect padding (edge pixel repeated: d c b a | a b c d)."""
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 1 or len(k) % 2 != 1:
        raise ValueError(f"kernel must be 1-D of odd length, got shape {k.shape}")
    r = len(k) // 2
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r, r)
    p = np.pad(a, pad, mode="symmetric")  # numpy 'symmetric' repeats the edge, scipy calls it 'reflect'
    n = a.shape[axis]
    out = np.zeros(a.shape, dtype=np.float64)
    for t, w in enumerate(k):
        if w != 0.0:
            out += w * np.take(p, np.arange(t, t + n), axis=axis)
    return out


def sobel(y: Any) -> tuple[np.ndarray, np.ndarray]:
    """(G_x, G_y) of an (H, W) map: G_x = column derivative [−1, 0, 1] smoothed down the rows by [1, 2, 1],
    G_y = row derivative smoothed along the columns (module docstring); reflect padding."""
    a = _np(y)
    gx = correlate1d(correlate1d(a, (-1.0, 0.0, 1.0), axis=1), (1.0, 2.0, 1.0), axis=0)
    gy = correlate1d(correlate1d(a, (-1.0, 0.0, 1.0), axis=0), (1.0, 2.0, 1.0), axis=1)
    return gx, gy


def sobel_magnitude(y: Any) -> np.ndarray:
    """√(G_x² + G_y²) of an (H, W) map (:func:`sobel`)."""
    gx, gy = sobel(y)
    return np.hypot(gx, gy)


def laplacian(y: Any) -> np.ndarray:
    """5-point Laplacian ΔY(i, j) = Y(i±1, j) + Y(i, j±1) − 4 Y(i, j) of an (H, W) map, reflect padding."""
    a = _np(y)
    return correlate1d(a, (1.0, -2.0, 1.0), axis=0) + correlate1d(a, (1.0, -2.0, 1.0), axis=1)


def gaussian_window(y: Any, sigma: float) -> np.ndarray:
    """Separable normalised Gaussian smoothing of an (H, W) map (σ px, truncated at 3σ, reflect padding)."""
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"window must be a finite number of pixels > 0, got {sigma!r}")
    r = max(1, int(math.ceil(3.0 * sigma)))
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    return correlate1d(correlate1d(_np(y), k, axis=0), k, axis=1)


def local_frequency(y: Any, window: float = 2.0) -> np.ndarray:
    """Local high-frequency energy F = √(G_σ * (ΔY)²) of an (H, W) map (module docstring)."""
    return np.sqrt(np.maximum(gaussian_window(laplacian(y) ** 2, window), 0.0))


def luminance(image: Any) -> np.ndarray:
    """(H, W) BT.601 luma of an (H, W, 3) image; the channel itself for (H, W) / (H, W, 1)."""
    a = _as_image(image)
    if a.shape[2] == 1:
        return a[:, :, 0].copy()
    return a @ np.asarray(LUMA_601)


def feature_maps(image: Any, window: float = 2.0) -> dict[str, np.ndarray]:
    """Feature maps of an image (H, W[, C]) in [0, 1] → {name: (H, W) float64}, in this order:
    luminance, [red, green, blue for C = 3], edges, frequency (formulas: module docstring)."""
    a = _as_image(image)
    y = luminance(a)
    out = {"luminance": y}
    if a.shape[2] == 3:
        for c, name in enumerate(COLOUR_NAMES):
            out[name] = a[:, :, c].copy()
    out["edges"] = sobel_magnitude(y)
    out["frequency"] = local_frequency(y, window)
    return out


def signal_image(signal: Any) -> np.ndarray:
    """A ``Signal``'s pixels ([-1, 1], (H, W, C)) → (H, W, C) float64 on [0, 1] (clamped, like the metrics)."""
    return np.clip((_np(signal.pixels) + 1.0) * 0.5, 0.0, 1.0)


def coordinate_maps(shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """{'x', 'y', 'radius'} on the INR's grid: x = column coordinate, y = row coordinate (both −1 … 1, as
    ``inrlens.data.grid`` lays them out), radius = √(x² + y²)."""
    h, w = shape
    ys = np.linspace(-1.0, 1.0, h)
    xs = np.linspace(-1.0, 1.0, w)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return {"x": xx, "y": yy, "radius": np.hypot(xx, yy)}


# --- MRI tissue maps ---------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _mri_crops() -> dict[str, dict[int, np.ndarray]]:
    """Native 224×160 crops of every ``sample:mri`` slice z of the MNI152 T1, GM, WM and derived CSF volumes."""
    from ..data.samples import MRI_SLICES, _mri

    crops: dict[str, dict[int, np.ndarray]] = {}
    for kind in ("t1", "gm", "wm"):
        items = _mri(kind)
        crops[kind] = {z: np.asarray(it[1], dtype=np.float32) for z, it in zip(MRI_SLICES, items)}
    crops["csf"] = {}
    for z in MRI_SLICES:
        brain = crops["t1"][z] > BRAIN_THRESHOLD
        rest = np.clip(1.0 - crops["gm"][z] - crops["wm"][z], 0.0, 1.0)
        crops["csf"][z] = (rest * brain).astype(np.float32)
    return crops


def _slice_index(slice: int | str) -> int:
    """Axial index z from z itself or a sample name 'mni152_axZZZ'; ValueError when not a ``sample:mri`` slice."""
    from ..data.samples import MRI_SLICES

    z: int | None
    if isinstance(slice, str):
        m = re.fullmatch(r"(?:sample:mri/)?mni152_ax(\d{3})", slice)
        z = int(m.group(1)) if m else None
    elif isinstance(slice, (int, np.integer)) and not isinstance(slice, bool):
        z = int(slice)
    else:
        z = None
    if z is None or z not in MRI_SLICES:
        raise ValueError(f"{slice!r} is not a sample:mri slice; choose z in {MRI_SLICES.start}…{MRI_SLICES.stop - 1} "
                         f"step {MRI_SLICES.step} or a name mni152_axZZZ")
    return z


def _mri_maps(kinds: Sequence[str], slice: int | str, shape: Any = None, square: bool = False) -> dict[str, np.ndarray]:
    """Maps of ``kinds`` (any of t1, gm, wm, csf) for one slice, cropped and resampled as ``sample:mri`` is."""
    from ..config import DataConfig
    from ..data.images import _centre_square, _resample, target_shape
    from ..data.samples import MRI_SHAPE

    z = _slice_index(slice)
    if shape is None:
        shape = DataConfig()
    if isinstance(shape, DataConfig):
        square = shape.square
        shape = target_shape(*MRI_SHAPE, shape)
    h, w = (int(s) for s in shape)
    if min(h, w) < 1:
        raise ValueError(f"shape must be two positive sides (H, W), got {shape!r}")
    crops = _mri_crops()
    out = {}
    for kind in kinds:
        a = crops[kind][z][:, :, None]
        if square and a.shape[0] != a.shape[1]:
            a = _centre_square(a)
        out[kind] = _resample(a, h, w)[:, :, 0].astype(np.float64)
    return out


def tissue_maps(slice: int | str, shape: Any = None, square: bool = False) -> dict[str, np.ndarray]:
    """Grey matter, white matter and CSF maps {'gm', 'wm', 'csf'} → (H, W) in [0, 1] of one ``sample:mri`` slice.

    ``slice``: the axial index z (60, 63, …, 138) or the sample's name ``mni152_axZZZ``. ``shape``: a
    ``DataConfig`` (the one ``sample:mri`` was loaded with; its ``square`` is used), an (H, W) of the loaded
    signal (then pass ``square`` as it was loaded), or None for the nominal 112×80.

    GM and WM are the tissue probability maps that nilearn ships with the MNI152 2009a template (on the T1's
    own 1 mm grid); no CSF map is shipped, so CSF is derived: clip(1 − GM − WM, 0, 1) inside the brain mask
    (T1 / max > ``BRAIN_THRESHOLD``), 0 outside. All three are cut from the same slice and field of view as the
    T1 and resampled once to (H, W) with the same Lanczos resize as the image, so they align pixel for pixel.
    Raises FileNotFoundError when nilearn's template files are missing.
    """
    try:
        return _mri_maps(TISSUES, slice, shape, square)
    except (FileNotFoundError, ImportError) as e:
        raise FileNotFoundError(f"MNI152 tissue maps unavailable (nilearn's bundled template): {e}") from None


def signal_features(signal: Any, window: float = 2.0, square: bool = False, coordinates: bool = False) -> dict[str, np.ndarray]:
    """:func:`feature_maps` of a ``Signal``, plus :func:`tissue_maps` when it is a ``sample:mri`` slice (its
    source is ``sample:mri/mni152_axZZZ``; ``square`` as it was loaded) and :func:`coordinate_maps` on request."""
    out = feature_maps(signal_image(signal), window)
    src = str(getattr(signal, "source", ""))
    if src.startswith("sample:mri/"):
        out.update(tissue_maps(src, tuple(signal.pixels.shape[:2]), square))
    if coordinates:
        out.update(coordinate_maps(tuple(signal.pixels.shape[:2])))
    return out


# --- correlation -------------------------------------------------------------------------------------------


def _centred_unit(x: np.ndarray) -> np.ndarray:
    """Rows of (n, P) centred and scaled to unit norm; constant rows (module docstring) → NaN."""
    c = x - x.mean(axis=1, keepdims=True)
    nc = np.linalg.norm(c, axis=1)
    nx = np.linalg.norm(x, axis=1)
    const = nc <= CONSTANT_RTOL * nx
    with np.errstate(invalid="ignore", divide="ignore"):
        u = c / nc[:, None]
    u[const] = np.nan
    return u


def correlate(atom_maps: Any, features: Mapping[str, Any], mask: Any = None) -> tuple[list[str], np.ndarray]:
    """Pearson r of every atom map with every feature map → (names, R), R (m, F) float64, R[i, f] = r(atom i,
    feature names[f]) over the pixels (those where ``mask`` (H, W) is true, when given). NaN where either map is
    constant there. ``atom_maps`` (m, H, W) or one (H, W) map; each feature map (H, W)."""
    a = _np(atom_maps)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"atom maps must be (m, H, W), got shape {tuple(a.shape)}")
    hw = a.shape[1:]
    names = list(features)
    if not names:
        raise ValueError("no feature maps given")
    feats = []
    for n in names:
        f = _np(features[n])
        if f.shape != hw:
            raise ValueError(f"feature {n!r} has shape {tuple(f.shape)}, the atom maps are {tuple(hw)}")
        feats.append(f)
    sel = np.ones(hw, dtype=bool) if mask is None else _np(mask).astype(bool)
    if sel.shape != hw:
        raise ValueError(f"mask has shape {tuple(sel.shape)}, the atom maps are {tuple(hw)}")
    if sel.sum() < 2:
        raise ValueError("a correlation needs at least 2 pixels (the mask selects fewer)")
    ua = _centred_unit(a[:, sel])  # (m, P)
    uf = _centred_unit(np.stack(feats)[:, sel])  # (F, P)
    r = ua @ uf.T  # NaN rows / columns propagate
    return names, np.clip(r, -1.0, 1.0)


class Top(NamedTuple):
    """Per atom its top correlate: the feature with the largest |r| (first in feature order on ties)."""

    index: np.ndarray
    """(m,) int: index into the feature names, −1 when every r of the atom is NaN."""
    name: list[str | None]
    """(m,) feature names (None where index is −1)."""
    r: np.ndarray
    """(m,) signed r of that feature (NaN where index is −1)."""


def top_correlate(names: Sequence[str], R: Any) -> Top:
    """The top correlate of each atom (row of R (m, F), columns named by ``names``); NaN entries never win."""
    r = _np(R)
    if r.ndim != 2 or r.shape[1] != len(names):
        raise ValueError(f"R must be (m, {len(names)}), got shape {tuple(r.shape)}")
    absr = np.where(np.isnan(r), -np.inf, np.abs(r))
    idx = np.argmax(absr, axis=1) if r.shape[1] else np.zeros(r.shape[0], dtype=int)
    none = ~np.isfinite(absr[np.arange(r.shape[0]), idx]) if r.shape[1] else np.ones(r.shape[0], dtype=bool)
    idx = np.where(none, -1, idx).astype(np.int64)
    vals = np.array([r[i, j] if j >= 0 else np.nan for i, j in enumerate(idx)], dtype=np.float64)
    return Top(idx, [names[j] if j >= 0 else None for j in idx], vals)


def layer_summary(R: Any, names: Sequence[str]) -> dict[str, dict[str, float | int]]:
    """Per feature: ``mean_abs_r`` = mean over atoms of |r| (NaN entries left out; NaN when all are),
    ``top_count`` = atoms whose top correlate it is; plus ``'(none)'`` → the count of atoms without any r."""
    r = _np(R)
    top = top_correlate(names, r)
    out: dict[str, dict[str, float | int]] = {}
    for f, n in enumerate(names):
        col = np.abs(r[:, f])
        col = col[~np.isnan(col)]
        out[n] = {"mean_abs_r": float(col.mean()) if col.size else float("nan"), "top_count": int((top.index == f).sum())}
    out["(none)"] = {"mean_abs_r": float("nan"), "top_count": int((top.index < 0).sum())}
    return out


def semantics_record(atom_ids: Sequence[int], names: Sequence[str], R: Any) -> dict[str, Any]:
    """JSON-able record of one layer: {'features', 'atoms', 'r' (m × F, None for NaN), 'top', 'top_r', 'summary'}."""
    r = _np(R)
    top = top_correlate(names, r)
    clean = lambda v: None if not math.isfinite(v) else round(float(v), 6)  # noqa: E731
    summ = {k: {kk: (clean(vv) if isinstance(vv, float) else vv) for kk, vv in d.items()}
            for k, d in layer_summary(r, names).items()}
    return {"features": list(names), "atoms": [int(j) for j in atom_ids],
            "r": [[clean(v) for v in row] for row in r], "top": top.name, "top_r": [clean(v) for v in top.r],
            "summary": summ}


# --- SAE runs: semantics.json beside atoms.safetensors ------------------------------------------------------

SEMANTICS_NAME = "semantics.json"
"""File of one SAE folder (``<run>/saes/L{ℓ}_n{n}_k{k}/``) written by ``inrlens.probes.decompose.atom_maps_for``."""
WINDOW = 2.0
"""σ (px) of the ``frequency`` feature's Gaussian window in semantics.json."""
FEATURE_ORDER = ("luminance", *COLOUR_NAMES, "edges", "frequency", "x", "y", "radius", *TISSUES)
"""Order of the feature names in tables (names not listed here follow, in first-seen order)."""


def is_mri_spec(images: Sequence[Any]) -> bool:
    """True when an image spec, as a run records it (``context.json`` ``images``), is the built-in MRI set:
    ``sample:mri`` or one of its slices ``sample:mri/…``. The spec decides, never a file's name."""
    return any(str(i) == "sample:mri" or str(i).startswith("sample:mri/") for i in images)


class MemberFeatures(NamedTuple):
    """The feature maps one member's atoms are correlated with (built once per SAE run)."""

    maps: dict[str, np.ndarray]
    """{name: (H, W)}: :func:`feature_maps` of the image, then :func:`coordinate_maps`, then (MRI) :func:`tissue_maps`."""
    brain: np.ndarray | None
    """(H, W) bool brain mask, luminance > ``BRAIN_THRESHOLD`` (MRI runs only; None otherwise)."""
    window: float


def member_features(target: Any, shape: Sequence[int], record: Mapping[str, Any], window: float = WINDOW) -> MemberFeatures:
    """Feature maps of one decomposed member: its image I = clamp((target + 1) / 2, 0, 1) reshaped (H, W, C)
    (``target`` (P, C) in [-1, 1], row-major), the coordinate maps, and — when the run's recorded image spec
    ``record['images']`` is ``sample:mri`` — the GM / WM / CSF maps of the member's slice ``record['image']``,
    cut as the image was loaded (``record['data']['square']``), plus the brain mask."""
    h, w = (int(s) for s in shape)
    t = _np(target)
    if t.ndim != 2 or t.shape[0] != h * w:
        raise ValueError(f"target must be (H·W, C) = ({h * w}, C), got shape {tuple(t.shape)}")
    image = np.clip((t + 1.0) * 0.5, 0.0, 1.0).reshape(h, w, t.shape[1])
    maps = feature_maps(image, window)
    maps.update(coordinate_maps((h, w)))
    brain = None
    if is_mri_spec(record.get("images") or ()):
        square = bool((record.get("data") or {}).get("square", False))
        maps.update(tissue_maps(str(record.get("image", "")), (h, w), square))
        brain = luminance(image) > BRAIN_THRESHOLD
    return MemberFeatures(maps, brain, float(window))


def semantics_for(features: MemberFeatures, atom_ids: Sequence[int], atom_maps: Any,
                  meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What semantics.json holds for one SAE: ``meta`` (condition, layer, n, k, image, …) plus
    ``records = {'all': semantics_record over every pixel}`` and, for MRI runs, ``'brain'`` (the same inside the
    brain mask), ``brain_pixels``, ``brain_rule``; ``window`` and ``mri``. ``atom_maps`` (m, H, W)."""
    names, R = correlate(atom_maps, features.maps)
    out: dict[str, Any] = dict(meta or {})
    out.update({"window": features.window, "mri": features.brain is not None,
                "records": {"all": semantics_record(atom_ids, names, R)}})
    if features.brain is not None:
        _, Rb = correlate(atom_maps, features.maps, mask=features.brain)
        out["records"]["brain"] = semantics_record(atom_ids, names, Rb)
        out["brain_pixels"] = int(features.brain.sum())
        out["brain_rule"] = f"luminance > {BRAIN_THRESHOLD}"
    return out


def feature_order(names: Sequence[str]) -> list[str]:
    """Feature names in table order (:data:`FEATURE_ORDER`, then the rest as first seen), each once."""
    seen = list(dict.fromkeys(names))
    return [n for n in FEATURE_ORDER if n in seen] + [n for n in seen if n not in FEATURE_ORDER]


def read_semantics(runs: Sequence[Any]) -> list[dict[str, Any]]:
    """Summary rows of the semantics.json files of SAE run folders, one per (SAE, record): condition, regime,
    backbone, image (from context.json, else the file), layer, n, k, where ('all' | 'brain'), atoms (m),
    features (names in the file's order), summary ({feature: {mean_abs_r, top_count}}, '(none)' included).
    Runs or SAEs without the file are skipped."""
    import json

    from .decompose import SaeRun

    rows = []
    for run in (r if isinstance(r, SaeRun) else SaeRun(r) for r in runs):
        ctx = json.loads(run.context.read_text()) if run.context.exists() else {}
        for sf in run.folders():
            if not sf.semantics.exists():
                continue
            doc = json.loads(sf.semantics.read_text())
            for where, rec in (doc.get("records") or {}).items():
                rows.append({"condition": str(ctx.get("condition") or doc.get("condition") or run.root.name),
                             "regime": ctx.get("regime"), "backbone": ctx.get("backbone"),
                             "image": ctx.get("image") or doc.get("image"), "layer": sf.layer, "n": sf.n, "k": sf.k,
                             "where": where, "atoms": len(rec.get("atoms", [])), "features": list(rec.get("features", [])),
                             "summary": rec.get("summary", {})})
    return rows
