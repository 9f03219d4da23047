"""Images → signals: loading, resizing, coordinate grids and seeded cohort/test splits.

Conventions
-----------
* A :class:`Signal` holds ``pixels`` of shape (H, W, C) in [-1, 1] (float32), C = 1 (gray) or 3 (RGB).
* The coordinate grid of an H×W signal is ``grid(H, W)`` of shape (H·W, 2): column 0 is x (left → right,
  -1 → 1 over the W columns), column 1 is y (top → bottom, -1 → 1 over the H rows), both with inclusive
  end points; pixels are flattened row-major, so row p = r·W + c holds pixel (r, c). The longer side is not
  stretched differently from the shorter one: both span [-1, 1] (as in STRAINER), one grid per signal.
* Metrics (PSNR/SSIM/LPIPS) are computed on [0, 1] images: ``to_unit(pixels) = (pixels + 1) / 2``.

Identity: ``Signal.digest`` (sha256 of the pixel array the INR is fitted to) is what result keys use; ``name`` is
for display. :func:`distinct` (applied by :func:`load_images` and :func:`inrlens.data.resolve`) keeps one signal
per digest and makes names unique within one load (rules in docs/run-folder.md, "Identities").
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import random
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..config import DataConfig

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".ppm", ".pgm"}
MIN_SIDE = 3  # smallest image side accepted at load time (SSIM's 3x3 window needs it)


class ImageError(ValueError):
    """An input that cannot become a signal. The message is one line and names the file."""


@dataclass(frozen=True)
class Signal:
    """One image as an INR target."""

    name: str
    """Short identifier (file stem or sample name)."""
    pixels: torch.Tensor
    """(H, W, C) float32 in [-1, 1]."""
    source: str = ""
    """Where it came from (path or 'sample:<set>/<id>')."""

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])

    def targets(self) -> torch.Tensor:
        """(H·W, C) row-major flattened pixels in [-1, 1]."""
        h, w, c = self.pixels.shape
        return self.pixels.reshape(h * w, c)

    @cached_property
    def digest(self) -> str:
        """The image's identity: :func:`pixel_digest` of ``pixels`` (16 hex digits), computed once per Signal.

        It covers the pixels as loaded, cropped, resized and channel-harmonised (what the INR is fitted to), not
        the file: the same file loaded at another size is another signal, two files with the same pixels are one."""
        return pixel_digest(self.pixels)


DIGEST_CHARS = 16
"""Hex digits kept of an image's sha256 (64 bits: collisions are not a practical concern for image sets)."""


def pixel_digest(pixels: torch.Tensor | np.ndarray) -> str:
    """sha256 of a pixel array's dtype, shape and bytes (C order), first 16 hex digits."""
    arr = np.ascontiguousarray(pixels.detach().cpu().numpy() if isinstance(pixels, torch.Tensor) else pixels)
    h = hashlib.sha256(f"{arr.dtype.str}|{'x'.join(map(str, arr.shape))}|".encode())
    h.update(arr.tobytes())
    return h.hexdigest()[:DIGEST_CHARS]


def grid(h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Coordinate grid (H·W, 2) on [-1, 1]²: [:, 0] = x (columns), [:, 1] = y (rows); row-major."""
    ys = torch.linspace(-1.0, 1.0, h, device=device)
    xs = torch.linspace(-1.0, 1.0, w, device=device)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] → [0, 1], clamped."""
    return ((x + 1.0) * 0.5).clamp(0.0, 1.0)


def _array_from_pil(img: Image.Image, name: str) -> np.ndarray:
    """PIL image of any common mode → float32 (H, W, C) in [0, 1], C ∈ {1, 3}."""
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA"):
        warnings.warn(f"{name}: alpha channel dropped", stacklevel=3)
        img = img.convert("RGB" if mode != "LA" else "L")
        mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.float64) / 65535.0
    elif mode == "I":  # Pillow reads 16-bit PGM/PPM (any maxval, rescaled) and 16-bit TIFF/PNG variants as 'I'
        raw = np.asarray(img, dtype=np.float64)
        lo, hi = float(raw.min()), float(raw.max())
        if lo >= 0 and hi <= 65535:
            arr = raw / 65535.0  # never guessed from the values: a dark 16-bit image must stay dark
        else:  # signed or 32-bit integers have no standard white level
            warnings.warn(f"{name}: 32-bit integer pixels in [{lo:g}, {hi:g}] rescaled to [0, 1] by min/max", stacklevel=3)
            arr = (raw - lo) / (hi - lo) if hi > lo else np.zeros_like(raw)
    elif mode == "F":
        raw = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(raw)), float(np.nanmax(raw))
        arr = (raw - lo) / (hi - lo) if hi > lo else np.zeros_like(raw)
    elif mode in ("1", "L"):
        arr = np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    else:  # RGB, CMYK, YCbCr, HSV, ...
        arr = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[2] == 4:  # 16-bit RGBA arrays from exotic decoders
        arr = arr[:, :, :3]
    if not np.isfinite(arr).all():
        raise ImageError(f"{name}: image contains non-finite values")
    return arr.astype(np.float32)


RESIZED_MIN_SIDE = 3
"""Every side of a resized image (``size`` or ``scale``) is at least this many pixels (SSIM needs 3)."""


def _round_half_up(x: float) -> int:
    """Nearest integer, halves rounded up (36.5 → 37); a 1e-9 margin absorbs float error in products like 45·0.1."""
    return int(math.floor(x + 0.5 + 1e-9))


def _check_scale(scale: float) -> float:
    try:
        ok = not isinstance(scale, bool) and math.isfinite(scale) and scale > 0
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    return float(scale)


def sizes_after_scale(shapes: Iterable[tuple[int, int]], scale: float) -> list[tuple[int, int]]:
    """Each (H, W) multiplied by ``scale``, as ``DataConfig(scale=...)`` resizes images (pure; for planning).

    Every side becomes ``max(3, round_half_up(side · scale))``: the nearest integer with halves rounded up
    (75 · 1/2 = 37.5 → 38), and never under 3 px. Height and width are scaled separately, so the aspect
    ratio is kept up to that rounding and a portrait image stays portrait: (512, 768) · 1/4 → (128, 192).
    """
    scale = _check_scale(scale)
    return [(max(RESIZED_MIN_SIDE, _round_half_up(int(h) * scale)), max(RESIZED_MIN_SIDE, _round_half_up(int(w) * scale)))
            for h, w in shapes]


def target_shape(h: int, w: int, cfg: DataConfig) -> tuple[int, int]:
    """(H, W) that an H×W image has after ``cfg``'s optional square crop and its resize (``size`` or ``scale``)."""
    if cfg.square:
        h = w = min(h, w)
    if cfg.scale is not None:
        return sizes_after_scale([(h, w)], cfg.scale)[0]
    if cfg.size is None or max(h, w) == cfg.size:
        return h, w
    f = cfg.size / max(h, w)
    if h >= w:  # the longer side is exactly cfg.size; the other follows the aspect ratio
        return cfg.size, max(RESIZED_MIN_SIDE, _round_half_up(w * f))
    return max(RESIZED_MIN_SIDE, _round_half_up(h * f)), cfg.size


def _centre_square(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return arr[top : top + s, left : left + s]


def _resample(arr: np.ndarray, nh: int, nw: int) -> np.ndarray:
    """(H, W, C) in [0, 1] → (nh, nw, C) with Lanczos (antialiased when shrinking), clipped to [0, 1]."""
    if arr.shape[:2] == (nh, nw):
        return arr
    chans = []
    for ch in range(arr.shape[2]):  # per channel in float mode keeps 16-bit precision
        im = Image.fromarray(np.ascontiguousarray(arr[:, :, ch], dtype=np.float32), mode="F")
        chans.append(np.asarray(im.resize((nw, nh), Image.Resampling.LANCZOS), dtype=np.float32))
    return np.clip(np.stack(chans, axis=2), 0.0, 1.0)


def _resize(arr: np.ndarray, cfg: DataConfig, native: tuple[int, int] | None = None) -> np.ndarray:
    """Centre-crop to square (optional), then resize with Lanczos to ``cfg.size`` (longer side) or by ``cfg.scale``.

    ``native`` is the size the array stands for when it differs from ``arr``'s own (a built-in sample stored
    smaller than its nominal size, same aspect ratio): the size rule is applied to ``native`` and ``arr`` is
    resampled once, straight to the result."""
    h, w = native or arr.shape[:2]
    if cfg.square and arr.shape[0] != arr.shape[1]:
        arr = _centre_square(arr)
    return _resample(arr, *target_shape(h, w, cfg))


def array_to_signal(arr: np.ndarray, name: str, source: str = "", cfg: DataConfig | None = None,
                    native: tuple[int, int] | None = None) -> Signal:
    """(H, W[, C]) array in [0, 1] → Signal (cropped and resized per cfg; ``native`` as in ``_resize``)."""
    cfg = cfg or DataConfig()
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ImageError(f"{name}: expected (H, W), (H, W, 1) or (H, W, 3), got shape {arr.shape}")
    nh, nw = target_shape(*(native or arr.shape[:2]), cfg)
    if nh * nw > cfg.max_pixels:
        raise ImageError(f"{name}: resized to {nw}x{nh} px it exceeds the limit of {cfg.max_pixels} pixels (DataConfig.max_pixels)")
    arr = _resize(arr, cfg, native)
    if min(arr.shape[:2]) < MIN_SIDE:
        raise ImageError(f"{name}: image is {arr.shape[1]}x{arr.shape[0]} px; at least {MIN_SIDE}x{MIN_SIDE} needed")
    pixels = torch.from_numpy(np.ascontiguousarray(arr)) * 2.0 - 1.0
    return Signal(name=name, pixels=pixels, source=source or name)


def _link_problem(p: Path) -> str | None:
    """Why a path that is a symbolic link cannot be read ('symbolic link loop' / 'dangling …'), else None."""
    if not p.is_symlink():
        return None
    try:
        os.stat(p)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop"
        try:
            target = os.readlink(p)
        except OSError:
            target = "?"
        return f"dangling symbolic link (its target {target} does not exist)"
    return None


def load_image(path: str | os.PathLike, cfg: DataConfig | None = None) -> Signal:
    """Read one image file → Signal. Raises ImageError (one line, naming the file) on any problem.

    * A JPEG/TIFF/WebP/PNG with an EXIF orientation tag is rotated/flipped as that tag says
      (``PIL.ImageOps.exif_transpose``), so the signal is the image as a viewer shows it, not as stored.
    * A file with several frames (animated GIF, multi-page TIFF, APNG) gives its first frame, with a warning
      naming the file and saying "using frame 0".
    * A symbolic link loop or a dangling link is an ImageError like any unreadable file.
    * Sides under ``MIN_SIDE`` (3) px are refused.
    """
    cfg = cfg or DataConfig()
    p = Path(path)
    link = _link_problem(p)
    if link is not None:
        raise ImageError(f"{p}: {link}")
    if not p.exists():
        raise ImageError(f"{p}: no such file")
    if p.is_dir():
        raise ImageError(f"{p}: is a directory, expected an image file")
    if p.stat().st_size == 0:
        raise ImageError(f"{p}: empty file (0 bytes)")
    try:
        with Image.open(p) as img:
            w, h = img.size
            if w * h > cfg.max_pixels:
                raise ImageError(f"{p}: {w}x{h} px exceeds the limit of {cfg.max_pixels} pixels (DataConfig.max_pixels)")
            img.load()
            frames = int(getattr(img, "n_frames", 1) or 1)
            if frames > 1:
                warnings.warn(f"{p}: {frames} frames; using frame 0", stacklevel=2)
            img = _exif_upright(img, p)
            arr = _array_from_pil(img, str(p))
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt file can make a decoder raise almost anything
        # (UnidentifiedImageError/OSError for unknown or truncated files, but also EOFError, struct.error,
        # zlib.error, IndexError, ... from damaged headers); each is "not a readable image" for the user.
        msg = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
        raise ImageError(f"{p}: not a readable image ({msg})") from None
    if min(arr.shape[:2]) < MIN_SIDE:
        raise ImageError(f"{p}: image is {arr.shape[1]}x{arr.shape[0]} px; at least {MIN_SIDE}x{MIN_SIDE} needed")
    return array_to_signal(arr, name=p.stem, source=str(p), cfg=cfg)


def _exif_upright(img: Image.Image, p: Path) -> Image.Image:
    """The image turned upright per its EXIF orientation tag (unchanged without one; a warning if unreadable)."""
    from PIL import ImageOps

    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - damaged EXIF block: the pixels are still fine
        warnings.warn(f"{p}: EXIF block unreadable; orientation tag ignored", stacklevel=3)
        return img
    if orientation in (None, 1):
        return img
    try:
        return ImageOps.exif_transpose(img)
    except Exception as e:  # noqa: BLE001
        warnings.warn(f"{p}: EXIF orientation {orientation} not applied ({type(e).__name__})", stacklevel=3)
        return img


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Files in a folder (sorted by name; not recursive; hidden files left out), broken symbolic links
    (loops, dangling) included so that the loader reports them instead of dropping them silently."""
    d = Path(folder)
    if not d.exists():
        raise ImageError(f"{d}: no such file or folder")
    if not d.is_dir():
        raise ImageError(f"{d}: not a folder")
    return sorted(p for p in d.iterdir() if not p.name.startswith(".") and (p.is_file() or _link_problem(p) is not None))


def harmonise_channels(signals: Sequence[Signal], mode: str = "auto") -> list[Signal]:
    """Give every signal the same channel count: 'gray' → 1, 'rgb' → 3, 'auto' → 3 if any is RGB."""
    if not signals:
        return []
    want = {"gray": 1, "rgb": 3}.get(mode) or max(s.channels for s in signals)
    out = []
    for s in signals:
        if s.channels == want:
            out.append(s)
        elif want == 3:
            out.append(replace(s, pixels=s.pixels.expand(-1, -1, 3).contiguous()))
        else:  # RGB → luma (ITU-R 601)
            wts = torch.tensor([0.299, 0.587, 0.114])
            out.append(replace(s, pixels=(s.pixels * wts).sum(-1, keepdim=True)))
    return out


def _parts(s: Signal) -> list[str]:
    """Components of where a signal came from ('dirA/x.png' → ['dirA', 'x.png'], 'sample:faces/f01' → ['sample:faces', 'f01'])."""
    return [p for p in (s.source or s.name).replace(os.sep, "/").split("/") if p not in ("", ".")] or [s.name]


def _candidate(s: Signal, level: int) -> str:
    """The ``level``-th longer name of a signal: 0 = its file name (``y.png``), 1 = ``parent/stem``, 2 =
    ``parent/file``, 3 = ``grandparent/parent/stem``, … up to its whole source path."""
    parts = _parts(s)
    m = min((level + 1) // 2, len(parts) - 1)  # parent folders shown
    stem = s.name if parts[-1].startswith(s.name) else parts[-1]  # the name is the file's stem (or the sample's id)
    return "/".join(parts[len(parts) - 1 - m : -1] + [parts[-1] if level % 2 == 0 else stem])


def distinct(signals: Sequence[Signal]) -> list[Signal]:
    """One signal per identity, each with a name unique among them (the rules are in docs/run-folder.md, "Identities").

    * Two signals with the same pixels (same :attr:`Signal.digest`) are one image: the first is kept, each other
      one is dropped with a warning naming both sources ("fitted once").
    * Different images that share a name (``dirA/x.png`` and ``dirB/x.png``; ``y.png`` and ``y.jpg``) are renamed
      by the shortest distinguishing end of their source path, the same length for the whole group: the file
      name when the suffixes differ (``y.png``, ``y.jpg``), else ``parent/stem`` (``dirA/x``, ``dirB/x``), then
      ``parent/file``, then more parent folders. Names that are already unique are left alone.
    """
    kept: list[Signal] = []
    first: dict[str, int] = {}
    dropped: list[tuple[Signal, int]] = []
    for s in signals:
        if s.digest in first:
            dropped.append((s, first[s.digest]))
            continue
        first[s.digest] = len(kept)
        kept.append(s)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(kept):
        groups.setdefault(s.name, []).append(i)
    names = [s.name for s in kept]
    for name, idx in groups.items():
        if len(idx) == 1:
            continue
        others = {n for j, n in enumerate(names) if j not in idx}
        depth = max(len(_parts(kept[i])) for i in idx)
        for level in range(2 * depth + 1):
            cand = [_candidate(kept[i], level) for i in idx]
            if len(set(cand)) == len(cand) and not others & set(cand):
                break
        else:  # the same source path with other pixels (impossible from one load): keep them apart by digest
            cand = [f"{name}~{kept[i].digest[:8]}" for i in idx]
        for i, c in zip(idx, cand):
            names[i] = c
    for s, i in dropped:
        o = kept[i]
        warnings.warn(f"{s.source or s.name}: same pixels as {o.source or o.name} (image digest {o.digest}); "
                      f"fitted once, as {names[i]!r}", stacklevel=2)
    return [s if s.name == n else _renamed(s, n) for s, n in zip(kept, names)]


def _renamed(s: Signal, name: str) -> Signal:
    """``s`` under another name, its digest carried over (same pixels)."""
    out = replace(s, name=name)
    out.__dict__["digest"] = s.digest  # what cached_property would compute again
    return out


def load_images(paths: str | os.PathLike | Iterable[str | os.PathLike], cfg: DataConfig | None = None) -> list[Signal]:
    """Load a file, a folder or a list of files/folders → list of Signals with harmonised channels.

    Files in a folder that are not readable images (broken symbolic links included) raise ImageError, or are
    skipped with a warning when ``cfg.on_bad_file == 'skip'``. An empty result is an error. Images with the same
    pixels are kept once and names made unique (:func:`distinct`).
    """
    cfg = cfg or DataConfig()
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    signals: list[Signal] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files = list_images(p)
            if not files:
                raise ImageError(f"{p}: folder holds no files")
            for f in files:
                if f.suffix.lower() not in IMAGE_SUFFIXES and cfg.on_bad_file == "skip":
                    warnings.warn(f"{f}: skipped (not an image suffix)", stacklevel=2)
                    continue
                try:
                    signals.append(load_image(f, cfg))
                except ImageError as e:
                    if cfg.on_bad_file == "skip":
                        warnings.warn(f"skipped: {e}", stacklevel=2)
                        continue
                    raise
        else:
            signals.append(load_image(p, cfg))
    if not signals:
        raise ImageError(f"no readable images in {', '.join(str(i) for i in items)}")
    return distinct(harmonise_channels(signals, cfg.channels))


def _where(signals: Sequence[Signal]) -> str:
    """' in FOLDER[, FOLDER…]': where the signals came from, for error messages."""
    places = []
    for s in signals:
        src = s.source or s.name
        place = src.rsplit("/", 1)[0] if src.startswith("sample:") else str(Path(src).parent)
        if place not in places:
            places.append(place)
    return f" in {', '.join(places[:3])}{' …' if len(places) > 3 else ''}" if places else ""


def split(signals: Sequence[Signal], n_cohort: int, n_test: int | None, seed: int = 0) -> tuple[list[Signal], list[Signal]]:
    """Seeded random cohort/test split: n_cohort for the cohort, then up to n_test of the rest (None = all)."""
    n = len(signals)
    if n_cohort > n:
        raise ValueError(f"cohort of {n_cohort} requested but only {n} images are available{_where(signals)}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    cohort = [signals[i] for i in order[:n_cohort]]
    rest = [signals[i] for i in order[n_cohort:]]
    if n_test is not None:
        rest = rest[:n_test]
    return cohort, rest


def group_by_shape(signals: Sequence[Signal]) -> dict[tuple[int, int], list[int]]:
    """Indices of signals grouped by (H, W): signals of one group share one coordinate grid."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, s in enumerate(signals):
        groups.setdefault(s.shape, []).append(i)
    return groups
