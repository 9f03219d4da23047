"""Fuzzing the image loader (issue 6): random bytes, random valid images of random sizes/modes/formats, and
damaged copies of them. The loader either returns a well-formed Signal or raises ImageError with one line
that names the file; nothing else may escape. Valid lossless images must load exactly (checked against the
array they were written from). Budget: a few hundred examples, well under 30 s.
"""

from __future__ import annotations

import io
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from inrlens.config import DataConfig
from inrlens.data import ImageError, Signal, load_image, load_images

MAGIC = {
    "png": b"\x89PNG\r\n\x1a\n",
    "gif": b"GIF89a",
    "bmp": b"BM",
    "jpg": b"\xff\xd8\xff\xe0",
    "tif": b"II*\x00",
    "ppm": b"P6\n",
    "pgm": b"P5\n",
    "webp": b"RIFF\x00\x00\x00\x00WEBPVP8 ",
}
# (mode, formats that can store it)
MODES = {
    "1": ["png", "bmp", "tif", "gif"],
    "L": ["png", "bmp", "tif", "gif", "jpg", "pgm", "webp"],
    "P": ["png", "bmp", "tif", "gif"],
    "RGB": ["png", "bmp", "tif", "gif", "jpg", "ppm", "webp"],
    "RGBA": ["png", "tif", "webp"],
    "LA": ["png"],
    "I;16": ["png", "tif"],
    "I": ["tif"],
    "F": ["tif"],
    "CMYK": ["jpg", "tif"],
}
LOSSLESS = {"png", "bmp", "tif", "ppm", "pgm"}
CFG = DataConfig(max_pixels=64 * 64)
SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def check_outcome(path: Path, cfg: DataConfig = CFG) -> Signal | None:
    """Load; a Signal must be well formed, any failure must be a one-line ImageError naming the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            s = load_image(path, cfg)
        except ImageError as e:
            msg = str(e)
            assert msg.startswith(str(path)) and "\n" not in msg, msg
            return None
    h, w, c = s.pixels.shape
    assert c in (1, 3) and min(h, w) >= 2 and h * w <= cfg.max_pixels
    assert s.pixels.dtype.is_floating_point and bool(s.pixels.isfinite().all())
    assert float(s.pixels.min()) >= -1.0 and float(s.pixels.max()) <= 1.0
    return s


def make_image(mode: str, h: int, w: int, seed: int) -> tuple[Image.Image, np.ndarray | None]:
    """A random image in `mode` and, for modes with an exact reference, the expected (H, W, C) values in [0, 1]."""
    rng = np.random.default_rng(seed)
    if mode == "1":
        a = rng.random((h, w)) > 0.5
        return Image.fromarray(a), a.astype(np.float64)[:, :, None]
    if mode == "L":
        a = rng.integers(0, 256, (h, w), dtype=np.uint8)
        return Image.fromarray(a), a[:, :, None] / 255.0
    if mode == "RGB":
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        return Image.fromarray(a), a / 255.0
    if mode == "RGBA":
        a = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        return Image.fromarray(a), a[:, :, :3] / 255.0
    if mode == "LA":
        a = rng.integers(0, 256, (h, w, 2), dtype=np.uint8)
        return Image.fromarray(a, mode="LA"), a[:, :, :1] / 255.0
    if mode == "P":
        pal = rng.integers(0, 256, (256, 3), dtype=np.uint8)
        idx = rng.integers(0, 8, (h, w), dtype=np.uint8)
        im = Image.fromarray(idx, mode="P")
        im.putpalette(pal.reshape(-1).tolist())
        return im, pal[idx] / 255.0
    if mode == "I;16":
        a = rng.integers(0, 65536, (h, w)).astype(np.uint16)
        return Image.fromarray(a), a[:, :, None] / 65535.0
    if mode == "I":
        a = rng.integers(0, 65536, (h, w)).astype(np.int32)
        return Image.fromarray(a), a[:, :, None] / 65535.0
    if mode == "F":
        a = rng.normal(size=(h, w)).astype(np.float32)
        ref = (a - a.min()) / (a.max() - a.min()) if a.max() > a.min() else np.zeros_like(a)
        return Image.fromarray(a), ref[:, :, None]
    if mode == "CMYK":
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        return Image.fromarray(a).convert("CMYK"), None
    raise AssertionError(mode)


def encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    name = {"jpg": "JPEG", "tif": "TIFF", "ppm": "PPM", "pgm": "PPM", "webp": "WEBP"}.get(fmt, fmt.upper())
    kw = {"lossless": True} if fmt == "webp" else {}
    im.save(buf, name, **kw)
    return buf.getvalue()


_TMP = tempfile.TemporaryDirectory(prefix="inrlens-fuzz-")  # one folder, removed at exit; files overwritten


def write(data: bytes, suffix: str) -> Path:
    p = Path(_TMP.name) / f"x.{suffix}"
    p.write_bytes(data)
    return p


@SETTINGS
@given(fmt=st.sampled_from(sorted(MAGIC)), body=st.binary(max_size=600), with_magic=st.booleans())
def test_random_bytes_only_raise_image_error(fmt, body, with_magic):
    p = write((MAGIC[fmt] if with_magic else b"") + body, fmt)
    check_outcome(p)


@st.composite
def valid_images(draw):
    mode = draw(st.sampled_from(sorted(MODES)))
    fmt = draw(st.sampled_from(MODES[mode]))
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**16))
    return mode, fmt, h, w, seed


@SETTINGS
@given(spec=valid_images())
def test_random_valid_images_load_correctly(spec):
    mode, fmt, h, w, seed = spec
    im, ref = make_image(mode, h, w, seed)
    try:
        data = encode(im, fmt)
    except (OSError, ValueError, KeyError):  # this Pillow build cannot write that mode in that format
        return
    p = write(data, fmt)
    s = check_outcome(p)
    if min(h, w) < 2 or h * w > CFG.max_pixels:
        assert s is None  # too small / too large: refused with ImageError
        return
    assert s is not None and s.shape == (h, w)
    if ref is not None and fmt in LOSSLESS:
        got = (s.pixels.numpy().astype(np.float64) + 1) / 2
        assert got.shape[2] == ref.shape[2]
        np.testing.assert_allclose(got, ref, atol=2e-6)


@SETTINGS
@given(spec=valid_images(), cut=st.floats(0.0, 1.0), flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=6))
def test_damaged_images_only_raise_image_error(spec, cut, flips):
    """Valid files truncated at a random point and/or with random bytes overwritten."""
    mode, fmt, h, w, seed = spec
    im, _ = make_image(mode, h, w, seed)
    try:
        data = bytearray(encode(im, fmt))
    except (OSError, ValueError, KeyError):
        return
    for pos, val in flips:
        data[min(len(data) - 1, int(pos * len(data)))] = val
    data = bytes(data[: max(1, int(cut * len(data)))] if cut < 1.0 else data)
    check_outcome(write(data, fmt))


def test_folder_of_fuzzed_files_skip_mode(tmp_path):
    """A folder mixing good, damaged and foreign files: 'error' raises ImageError, 'skip' keeps exactly the good."""
    rng = np.random.default_rng(0)
    good = []
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"good{i}.png")
        good.append(f"good{i}")
    raw = encode(make_image("RGB", 8, 8, 1)[0], "png")
    (tmp_path / "cut.png").write_bytes(raw[: len(raw) // 3])
    (tmp_path / "noise.jpg").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ImageError):
        load_images(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sigs = load_images(tmp_path, DataConfig(on_bad_file="skip"))
    assert sorted(s.name for s in sigs) == good
