"""Built-in real sample images from three domains, installed offline with the package's own dependencies.

The three sets copy the resolution structure of the paper's datasets at half their size, so that one
``DataConfig.scale`` shrinks the whole study and keeps it (docs/datasets.md):

================  ======================================  ==========================  ========  ==================
set               paper's dataset (H×W)                   sample set, native (H×W)    images    source
================  ======================================  ==========================  ========  ==================
``sample:faces``  CelebA-HQ faces, 256×256                128×128, gray               100       scikit-image
``sample:mri``    OASIS axial slices, 160×224             112×80, gray                27        nilearn
``sample:photos`` Kodak, 512×768 and 768×512              256×384 (11), 384×256 (10)  21        scikit-image
================  ======================================  ==========================  ========  ==================

* ``faces`` — the 100 face crops of ``skimage.data.lfw_subset()`` (Labeled Faces in the Wild; its other 100
  images are background patches without faces and are not used). They are 25×25 px; their nominal size is
  128×128, which they reach by Lanczos upsampling, so they carry 25 px of detail at any size.
* ``mri`` — axial slices (every 3rd, z = 60…138) of the MNI152 2009a symmetric 1 mm T1 template shipped in
  nilearn (skull-stripped), cut to a 224×160 mm field of view around the brain (224 rows anterior → posterior,
  160 columns left → right, the field of view of the paper's 160×224 axial OASIS slices, shown upright here)
  at 2 mm per pixel.
* ``photos`` — non-overlapping 3:2 tiles at the photographs' own pixel scale (nothing resampled): landscape
  256×384 (H×W) tiles of astronaut (2), immunohistochemistry (2), chelsea (1) and hubble_deep_field (6), and
  portrait 384×256 tiles of coffee (2), rocket (2) and retina (6, from the middle of the fundus) of
  ``skimage.data``. The tiles of one photograph sit side by side on a grid centred in it.

Licences as the packages state them: astronaut, hubble_deep_field, rocket public domain; coffee, chelsea, retina
CC0; immunohistochemistry "no known copyright restrictions"; lfw_subset none stated; the MNI152 template
"unknown" (nilearn). Load time on a busy 2-core machine: first load in a process faces 0.05 s, mri 0.8 s,
photos 1.4 s (file decoding); later loads 0.03 s, 0.15 s, 0.2 s.

Longer sides 128 : 112 : 384 — the paper's 256 : 224 : 768 — so the photographs have 3× the pixels per side
of the faces and the encoder of a face cohort meets them at 3× its coordinate density. A built-in set is
resampled once, from its stored pixels straight to the size ``DataConfig`` asks for (``scale`` multiplies
the native sizes above). Nothing is downloaded.

Names are stable: ``lfw_000`` … ``lfw_099``, ``mni152_ax060`` … ``mni152_ax138``, ``<photo>_l<i>`` (landscape)
and ``<photo>_p<i>`` (portrait) numbered row by row. Use the sets as ``sample:photos``, ``sample:faces``,
``sample:mri`` wherever a path to images is accepted.

Noise sources ``noise:KIND[:KEY=VALUE…]`` (``noise:uniform``, ``noise:gaussian``, ``noise:pink``) make seeded
cohorts of synthetic images, to compare noise-trained with image-trained encoders; defaults n=30 images,
native 256×256, 1 channel, seed 0 (see :func:`parse_noise`, :data:`NOISES` and docs/datasets.md). Pixels in
[0, 1] before the usual conversion to [-1, 1]: uniform U(0, 1); gaussian N(0.5, σ = 1/6) clipped to [0, 1];
pink power spectral density ∝ 1/|f|^beta (default beta = 2, amplitude ∝ 1/|f|), min–max rescaled per image.
Image i is drawn from a generator seeded by (seed, kind, i), so it does not depend on n.

Every named source is one entry of :data:`SOURCES` ('sample', 'noise'): ``resolve`` sends 'PREFIX:REST' to
``SOURCES[PREFIX](REST, cfg)``; anything else is a file or folder.
"""

from __future__ import annotations

import math
import os
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import DataConfig
from .images import RESIZED_MIN_SIDE, ImageError, Signal, array_to_signal, distinct, harmonise_channels, load_images, target_shape

FACE_SIDE = 128
"""Nominal side of a ``sample:faces`` image (the paper's CelebA-HQ 256 px, halved)."""
MRI_SHAPE = (112, 80)
"""Nominal (H, W) of a ``sample:mri`` slice (the paper's 224×160 mm axial OASIS slices, upright, halved)."""
PHOTO_TILE = (256, 384)
"""(H, W) of a landscape ``sample:photos`` tile at the photographs' own pixel scale; portrait tiles are (384, 256)
(the paper's 512×768 Kodak images, halved)."""
PHOTO_LAYOUT: tuple[tuple[str, str], ...] = (
    ("astronaut", "l"),
    ("immunohistochemistry", "l"),
    ("chelsea", "l"),
    ("hubble_deep_field", "l"),
    ("coffee", "p"),
    ("rocket", "p"),
    ("retina", "p"),
)
"""(scikit-image photograph, tile orientation 'l' landscape or 'p' portrait), in the order the set lists them."""
RETINA_BOX = 800
"""Side of the centred square of the retina photograph that its tiles are cut from (the fundus, not the black
corners outside it)."""
MRI_SLICES = range(60, 139, 3)
"""Axial slice indices z of the MNI152 1 mm template used by ``sample:mri``."""
MRI_FOV = (224, 160)
"""(rows, columns) in mm of the field of view cut around the brain, shown at 2 mm per pixel."""

Sample = tuple[str, np.ndarray] | tuple[str, np.ndarray, tuple[int, int]]
"""(name, array in [0, 1]) or (name, array, nominal (H, W)); the array has the nominal aspect ratio."""


def _tiles(img: np.ndarray, th: int, tw: int) -> list[np.ndarray]:
    """Non-overlapping th×tw tiles on a grid centred in img, row by row."""
    h, w = img.shape[:2]
    rows, cols = h // th, w // tw
    top, left = (h - rows * th) // 2, (w - cols * tw) // 2
    return [img[top + r * th : top + (r + 1) * th, left + c * tw : left + (c + 1) * tw]
            for r in range(rows) for c in range(cols)]


def _photos() -> list[Sample]:
    """3:2 tiles (landscape and portrait, RGB in [0,1]) of the bundled colour photographs, not resampled."""
    import skimage.data as skd

    out: list[Sample] = []
    for name, orient in PHOTO_LAYOUT:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = np.asarray(getattr(skd, name)(), dtype=np.float32)[:, :, :3] / 255.0
        if name == "retina":
            img = _tiles(img, RETINA_BOX, RETINA_BOX)[0]
        th, tw = PHOTO_TILE if orient == "l" else PHOTO_TILE[::-1]
        for i, t in enumerate(_tiles(img, th, tw)):
            out.append((f"{name}_{orient}{i}", np.ascontiguousarray(t)))
    return out


def _faces() -> list[Sample]:
    """The 100 LFW 25×25 gray face crops of scikit-image (values already in [0,1]), nominally FACE_SIDE²."""
    import skimage.data as skd

    faces = np.asarray(skd.lfw_subset(), dtype=np.float32)[:100]  # (100, 25, 25); images 100… are non-faces
    return [(f"lfw_{i:03d}", faces[i], (FACE_SIDE, FACE_SIDE)) for i in range(faces.shape[0])]


def _mni152(kind: str) -> np.ndarray:
    """The bundled MNI152 2009a 1 mm volume 't1', 'gm' or 'wm' (x, y, z) = (197, 233, 189), divided by its max."""
    import nibabel as nib
    import nilearn

    path = Path(nilearn.__file__).parent / "datasets" / "data" / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz"
    vol = np.asarray(nib.load(str(path)).get_fdata(), dtype=np.float32)
    return vol / max(float(vol.max()), 1e-8)


def _mri(kind: str = "t1") -> list[Sample]:
    """Axial slices of the bundled MNI152 1 mm T1 template: MRI_FOV mm around the brain, nominally MRI_SHAPE.
    ``kind`` 'gm' / 'wm' cuts the same slices and field of view from the template's grey / white-matter
    probability maps (same grid; used by inrlens.probes.semantics)."""
    vol = _mni152("t1")
    # rot90 of an axial slice: rows run anterior → posterior, columns follow x
    brain = np.rot90((vol > 0.05).any(axis=2))
    rows, cols = np.nonzero(brain.any(axis=1))[0], np.nonzero(brain.any(axis=0))[0]
    fh, fw = MRI_FOV
    top = min(max((int(rows.min()) + int(rows.max()) + 1 - fh) // 2, 0), brain.shape[0] - fh)
    left = min(max((int(cols.min()) + int(cols.max()) + 1 - fw) // 2, 0), brain.shape[1] - fw)
    if kind != "t1":
        vol = _mni152(kind)
    out: list[Sample] = []
    for z in MRI_SLICES:
        sl = np.rot90(vol[:, :, z])
        out.append((f"mni152_ax{z:03d}", np.ascontiguousarray(sl[top : top + fh, left : left + fw]), MRI_SHAPE))
    return out


SAMPLES: dict[str, Callable[[], Sequence[Sample]]] = {"photos": _photos, "faces": _faces, "mri": _mri}
"""Built-in sets: name → function returning its images (see docs/extending.md to add one)."""


def load_sample(name: str, cfg: DataConfig | None = None) -> list[Signal]:
    """All signals of a built-in sample set ('photos', 'faces' or 'mri'), sized per cfg from their native size."""
    if name not in SAMPLES:
        raise ImageError(f"sample:{name}: unknown sample set; choose one of {', '.join(SAMPLES)}")
    cfg = cfg or DataConfig()
    sigs = []
    for item in SAMPLES[name]():
        n, a = item[0], item[1]
        native = tuple(item[2]) if len(item) > 2 else None  # type: ignore[misc]
        sigs.append(array_to_signal(a, n, source=f"sample:{name}/{n}", cfg=cfg, native=native))
    return harmonise_channels(sigs, cfg.channels)


# ------------------------------------------------------------------------------------------------ noise
NOISE_N = 30
"""Default number of images of a ``noise:`` source."""
NOISE_SHAPE = (256, 256)
"""Default native (H, W) of a ``noise:`` image (the paper's CelebA-HQ size)."""
NOISE_SIGMA = 1.0 / 6.0
"""Standard deviation of ``noise:gaussian`` before clipping: N(0.5, (1/6)²), so [0, 1] is the mean ± 3σ."""
PINK_BETA = 2.0
"""Default exponent of ``noise:pink``: power spectral density ∝ 1/|f|^beta, i.e. amplitude ∝ 1/|f| (the
spectrum of natural images)."""
NOISE_COMMON = ("n", "size", "seed", "channels")
"""Parameters every noise kind takes (kinds add their own, e.g. ``beta`` for pink)."""


def _uniform(rng: np.random.Generator, shape: tuple[int, int, int], p: dict[str, float]) -> np.ndarray:
    """I.i.d. U(0, 1) pixels."""
    return rng.random(shape)


def _gaussian(rng: np.random.Generator, shape: tuple[int, int, int], p: dict[str, float]) -> np.ndarray:
    """I.i.d. N(0.5, NOISE_SIGMA²) pixels, clipped to [0, 1] (a fraction 2·Φ(−3) ≈ 0.27 % lands on 0 or 1)."""
    return np.clip(rng.normal(0.5, NOISE_SIGMA, shape), 0.0, 1.0)


def pink_field(rng: np.random.Generator, shape: tuple[int, int, int], beta: float = PINK_BETA) -> np.ndarray:
    """(H, W, C) power-law noise in [0, 1]: power spectral density ∝ 1/|f|^beta, channels independent.

    White Gaussian noise is multiplied in the Fourier domain by |f|^(−beta/2) (|f| = the radial frequency in
    cycles per pixel, ``hypot`` of the two FFT frequencies; the DC term set to 0, so the field has mean 0), and
    transformed back; the field is periodic, so there are no edge effects. The whole image (all channels
    together) is then min–max rescaled to [0, 1]: an affine map, which leaves the spectrum's shape unchanged.
    beta = 0 is white noise, 1 the 1/f ("pink") noise of the one-dimensional convention, 2 natural-image-like
    noise (amplitude ∝ 1/|f|), negative values blue noise."""
    h, w, c = shape
    spec = np.fft.rfft2(rng.standard_normal((c, h, w)))
    f = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :])
    amp = np.zeros_like(f)
    amp[f > 0] = f[f > 0] ** (-beta / 2.0)
    out = np.moveaxis(np.fft.irfft2(spec * amp, s=(h, w)), 0, -1)
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / (hi - lo) if hi > lo else np.full(out.shape, 0.5)


def _pink(rng: np.random.Generator, shape: tuple[int, int, int], p: dict[str, float]) -> np.ndarray:
    return pink_field(rng, shape, p["beta"])


@dataclass(frozen=True)
class NoiseKind:
    """One kind of ``noise:`` source: how to draw an image, and the parameters it adds to NOISE_COMMON."""

    draw: Callable[[np.random.Generator, tuple[int, int, int], dict[str, float]], np.ndarray]
    """(generator, (H, W, C), its parameters) → array in [0, 1]."""
    params: dict[str, float] = field(default_factory=dict)
    """Extra numeric parameters and their defaults (e.g. {'beta': 2.0})."""


NOISES: dict[str, NoiseKind] = {
    "uniform": NoiseKind(_uniform),
    "gaussian": NoiseKind(_gaussian),
    "pink": NoiseKind(_pink, {"beta": PINK_BETA}),
}
"""Noise kinds: name → how to draw it (see docs/extending.md to add one)."""


@dataclass(frozen=True)
class NoiseSpec:
    """A parsed ``noise:KIND[:KEY=VALUE…]`` source."""

    kind: str
    n: int = NOISE_N
    shape: tuple[int, int] = NOISE_SHAPE
    """Native (H, W): the size that ``DataConfig.size`` / ``scale`` / ``square`` start from."""
    seed: int = 0
    channels: int = 1
    params: tuple[tuple[str, float], ...] = ()
    """The kind's own parameters, all of them (defaults filled in), sorted by name."""

    def __str__(self) -> str:
        extra = "".join(f":{k}={v:g}" for k, v in self.params)
        return (f"noise:{self.kind}:n={self.n}:size={self.shape[0]}x{self.shape[1]}:seed={self.seed}"
                f":channels={self.channels}{extra}")


def _int_param(spec: str, key: str, v: str, lo: int) -> int:
    try:
        x = int(v)
    except ValueError:
        x = lo - 1
    if x < lo:
        raise ImageError(f"{spec}: {key} must be an integer >= {lo}, got {v!r}")
    return x


def parse_noise(spec: str) -> NoiseSpec:
    """'noise:KIND[:KEY=VALUE…]' (the 'noise:' prefix optional) → NoiseSpec; one-line ImageError if malformed.

    Keys: ``n`` (images, default 30), ``size`` (native ``HxW`` or ``N`` for N×N, each side >= 3; default
    256x256), ``seed`` (integer >= 0, default 0), ``channels`` (1 or 3, also 'gray' / 'rgb'; default 1), and the
    kind's own (``beta`` for pink, default 2). Separators are ':' and '=' only, so a spec needs no shell quoting
    and survives ``--data NAME=noise:…`` (which splits at the first '=')."""
    full = spec if spec.startswith("noise:") else f"noise:{spec}"
    kind, *items = full[len("noise:"):].split(":")
    if kind not in NOISES:
        raise ImageError(f"{full}: unknown noise kind {kind!r}; choose one of {', '.join(NOISES)}")
    nk = NOISES[kind]
    valid = NOISE_COMMON + tuple(nk.params)
    vals: dict[str, str] = {}
    for it in items:
        key, sep, v = it.partition("=")
        if key not in valid or not sep:
            what = f"unknown parameter {key!r}" if key not in valid else f"parameter {key!r} needs a value ({key}=…)"
            raise ImageError(f"{full}: {what}; valid parameters of noise:{kind}: {', '.join(valid)} (as KEY=VALUE, ':'-separated)")
        if key in vals:
            raise ImageError(f"{full}: parameter {key!r} given twice")
        vals[key] = v.strip()
    n = _int_param(full, "n", vals["n"], 1) if "n" in vals else NOISE_N
    seed = _int_param(full, "seed", vals["seed"], 0) if "seed" in vals else 0
    shape = NOISE_SHAPE
    if "size" in vals:
        parts = vals["size"].lower().split("x")
        try:
            sides = [int(s) for s in parts]
        except ValueError:
            sides = []
        if len(sides) not in (1, 2) or min(sides) < RESIZED_MIN_SIDE:
            raise ImageError(f"{full}: size must be HxW (height x width) or N (N x N), each side an integer >= "
                             f"{RESIZED_MIN_SIDE}, got {vals['size']!r}")
        shape = (sides[0], sides[-1])
    channels = 1
    if "channels" in vals:
        channels = {"1": 1, "gray": 1, "3": 3, "rgb": 3}.get(vals["channels"].lower(), 0)
        if not channels:
            raise ImageError(f"{full}: channels must be 1 (or gray) or 3 (or rgb), got {vals['channels']!r}")
    params = dict(nk.params)
    for key in nk.params:
        if key in vals:
            try:
                params[key] = float(vals[key])
            except ValueError:
                params[key] = math.nan
            if not math.isfinite(params[key]):
                raise ImageError(f"{full}: {key} must be a finite number, got {vals[key]!r}")
    return NoiseSpec(kind, n, shape, seed, channels, tuple(sorted(params.items())))


def noise_rng(spec: NoiseSpec, i: int) -> np.random.Generator:
    """The generator of image i: seeded from (seed, kind, i) alone, so image i is the same whatever n is."""
    return np.random.default_rng(np.random.SeedSequence([spec.seed, zlib.crc32(spec.kind.encode()), i]))


def noise_image(spec: NoiseSpec | str, i: int, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Image i of a noise source: float32 (H, W, C) in [0, 1], drawn at ``shape`` (default: the native size)."""
    spec = parse_noise(spec) if isinstance(spec, str) else spec
    h, w = shape or spec.shape
    arr = NOISES[spec.kind].draw(noise_rng(spec, i), (h, w, spec.channels), dict(spec.params))
    return np.asarray(arr, dtype=np.float32)


def load_noise(spec: str, cfg: DataConfig | None = None) -> list[Signal]:
    """The signals of a ``noise:`` source (spec with or without the 'noise:' prefix), sized per cfg.

    Sizes follow ``cfg`` from the native size exactly as for any image (``target_shape``), but each image is
    drawn directly at its final size instead of being resampled: Lanczos downsampling averages i.i.d. noise
    towards flat gray (uniform noise resampled to scale 1/8 keeps 11 % of its standard deviation: 0.032, not 0.29), while a
    fresh draw keeps the stated distribution and spectrum at every size. Names ``noise-<kind>-000`` …"""
    ns = parse_noise(spec)
    cfg = cfg or DataConfig()
    h, w = target_shape(*ns.shape, cfg)
    if h * w > cfg.max_pixels:
        raise ImageError(f"{ns}: {w}x{h} px exceeds the limit of {cfg.max_pixels} pixels (DataConfig.max_pixels)")
    sigs = []
    for i in range(ns.n):
        name = f"noise-{ns.kind}-{i:03d}"
        sigs.append(array_to_signal(noise_image(ns, i, (h, w)), name, source=f"{ns}/{name}", cfg=cfg, native=ns.shape))
    return harmonise_channels(sigs, cfg.channels)


# ------------------------------------------------------------------------------------------------ registry
SOURCES: dict[str, Callable[[str, DataConfig], list[Signal]]] = {"sample": load_sample, "noise": load_noise}
"""Named sources usable wherever a path is: 'PREFIX:REST' → SOURCES[PREFIX](REST, cfg) (see docs/extending.md)."""


def is_source(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names a registered source ('sample:…', 'noise:…') rather than a file or folder."""
    prefix, sep, _ = str(spec).partition(":")
    return bool(sep) and prefix in SOURCES


def resolve(spec: str | os.PathLike | Iterable[str | os.PathLike], cfg: DataConfig | None = None) -> list[Signal]:
    """Paths (files or folders) or named sources (``sample:NAME``, ``noise:KIND[:KEY=VALUE…]``) → signals."""
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    cfg = cfg or DataConfig()
    out: list[Signal] = []
    for it in items:
        s = str(it)
        prefix, _, rest = s.partition(":")
        out.extend(SOURCES[prefix](rest, cfg) if is_source(s) else load_images(s, cfg))
    if not out:
        raise ImageError("no images given")
    return distinct(harmonise_channels(out, cfg.channels))  # one signal per image digest, unique names
