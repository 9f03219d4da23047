"""Built-in real sample images from three domains, installed offline with the package's own dependencies.

* ``photos`` — natural colour photographs bundled in the scikit-image wheel (astronaut, coffee, chelsea,
  rocket, immunohistochemistry, hubble_deep_field, retina, colorwheel…), each cut into non-overlapping
  square tiles so that a cohort and a test split can both be drawn.
* ``faces`` — the 200 LFW face crops (25×25, gray) bundled in scikit-image (``skimage.data.lfw_subset``).
* ``mri`` — axial slices of the MNI152 (2009a, 1 mm) T1 template bundled in the nilearn wheel.

Nothing is downloaded. Use them as ``sample:photos``, ``sample:faces``, ``sample:mri`` wherever a path to
images is accepted.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..config import DataConfig
from .images import ImageError, Signal, array_to_signal, harmonise_channels, load_images

PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "colorwheel")


def _photos(tile: int = 256) -> list[tuple[str, np.ndarray]]:
    """Square tiles (tile×tile px, RGB in [0,1]) of the bundled colour photographs."""
    import skimage.data as skd

    out = []
    for name in PHOTO_NAMES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = np.asarray(getattr(skd, name)(), dtype=np.float32)
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[:, :, :3]
        img = img / 255.0
        h, w = img.shape[:2]
        t = min(tile, h, w)
        for r in range(h // t):
            for c in range(w // t):
                out.append((f"{name}_r{r}c{c}", img[r * t : (r + 1) * t, c * t : (c + 1) * t]))
    return out


def _faces() -> list[tuple[str, np.ndarray]]:
    """The 200 LFW 25×25 gray face crops of scikit-image (values already in [0,1])."""
    import skimage.data as skd

    faces = np.asarray(skd.lfw_subset(), dtype=np.float32)  # (200, 25, 25)
    return [(f"lfw_{i:03d}", faces[i]) for i in range(faces.shape[0])]


def _mri(step: int = 3) -> list[tuple[str, np.ndarray]]:
    """Axial slices of the bundled MNI152 1 mm T1 template (brain region, every ``step``-th slice)."""
    import nibabel as nib
    import nilearn

    path = Path(nilearn.__file__).parent / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    vol = np.asarray(nib.load(str(path)).get_fdata(), dtype=np.float32)  # (x, y, z) = (197, 233, 189)
    vol = vol / max(float(vol.max()), 1e-8)
    out = []
    for z in range(60, 140, step):  # slices through the cerebrum
        sl = np.rot90(vol[:, :, z])  # (y, x): anterior at the top, as an axial view is usually shown
        out.append((f"mni152_ax{z:03d}", np.ascontiguousarray(sl)))
    return out


SAMPLES: dict[str, Callable[[], list[tuple[str, np.ndarray]]]] = {"photos": _photos, "faces": _faces, "mri": _mri}


def load_sample(name: str, cfg: DataConfig | None = None) -> list[Signal]:
    """All signals of a built-in sample set ('photos', 'faces' or 'mri')."""
    if name not in SAMPLES:
        raise ImageError(f"sample:{name}: unknown sample set; choose one of {', '.join(SAMPLES)}")
    cfg = cfg or DataConfig()
    sigs = [array_to_signal(a, n, source=f"sample:{name}/{n}", cfg=cfg) for n, a in SAMPLES[name]()]
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
