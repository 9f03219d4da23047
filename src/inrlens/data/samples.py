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
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Iterable, Sequence, Union

import numpy as np

from ..config import DataConfig
from .images import ImageError, Signal, array_to_signal, harmonise_channels, load_images

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

Sample = Union[tuple[str, np.ndarray], tuple[str, np.ndarray, tuple[int, int]]]
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


def _mri() -> list[Sample]:
    """Axial slices of the bundled MNI152 1 mm T1 template: MRI_FOV mm around the brain, nominally MRI_SHAPE."""
    import nibabel as nib
    import nilearn

    path = Path(nilearn.__file__).parent / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    vol = np.asarray(nib.load(str(path)).get_fdata(), dtype=np.float32)  # (x, y, z) = (197, 233, 189), 1 mm
    vol = vol / max(float(vol.max()), 1e-8)
    # rot90 of an axial slice: rows run anterior → posterior, columns follow x
    brain = np.rot90((vol > 0.05).any(axis=2))
    rows, cols = np.nonzero(brain.any(axis=1))[0], np.nonzero(brain.any(axis=0))[0]
    fh, fw = MRI_FOV
    top = min(max((int(rows.min()) + int(rows.max()) + 1 - fh) // 2, 0), brain.shape[0] - fh)
    left = min(max((int(cols.min()) + int(cols.max()) + 1 - fw) // 2, 0), brain.shape[1] - fw)
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


def resolve(spec: str | os.PathLike | Iterable[str | os.PathLike], cfg: DataConfig | None = None) -> list[Signal]:
    """Paths (files or folders) or ``sample:NAME`` → signals."""
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    cfg = cfg or DataConfig()
    out: list[Signal] = []
    for it in items:
        s = str(it)
        out.extend(load_sample(s[len("sample:"):], cfg) if s.startswith("sample:") else load_images(s, cfg))
    if not out:
        raise ImageError("no images given")
    return harmonise_channels(out, cfg.channels)
