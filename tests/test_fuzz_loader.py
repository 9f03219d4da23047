"""Fuzzing the image loader: random bytes, random valid images of random sizes/modes/formats, and
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
    assert c in (1, 3) and min(h, w) >= 3 and h * w <= cfg.max_pixels  # MIN_SIDE = 3
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
    if min(h, w) < 3 or h * w > CFG.max_pixels:
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


# --------------------------------------------------------------------------------------- edge cases of real files
# EXIF orientation → the stored array turned as a viewer shows it (numpy reference, independent of PIL's transpose)
ORIENT = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1, :], 5: lambda a: a.swapaxes(0, 1),
          6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].swapaxes(0, 1), 8: lambda a: np.rot90(a, 1)}


@pytest.mark.parametrize("orientation", sorted(ORIENT))
def test_exif_rotated_jpeg_is_turned_upright(tmp_path, orientation):
    rng = np.random.default_rng(orientation)
    a = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)  # non-square: a 90° turn swaps H and W
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / f"o{orientation}.jpg"
    Image.fromarray(a).save(p, "JPEG", quality=95, exif=exif)
    with Image.open(p) as im:
        assert im.getexif().get(0x0112) == orientation
        stored = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0  # decoded as stored, not turned
    want = ORIENT[orientation](stored)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # turning a photo upright is not worth a warning
        s = load_image(p)
    got = (s.pixels.numpy().astype(np.float64) + 1) / 2
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-6)


@pytest.mark.parametrize("fmt", ["gif", "tif"])
def test_multi_frame_file_uses_frame_0_with_a_warning(tmp_path, fmt):
    frames = [np.full((5, 7), v, np.uint8) for v in (40, 200, 120)]
    frames[0][1, 2] = 90  # frame 0 is not constant: its exact values are checked
    p = tmp_path / f"anim.{fmt}"
    ims = [Image.fromarray(f) for f in frames]
    ims[0].save(p, save_all=True, append_images=ims[1:])
    with Image.open(p) as im:
        assert im.n_frames == 3
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = load_image(p)
    msgs = [str(x.message) for x in w]
    assert msgs == [f"{p}: 3 frames; using frame 0"], msgs
    got = (s.pixels.numpy()[:, :, 0].astype(np.float64) + 1) / 2
    np.testing.assert_allclose(got * 255, frames[0], atol=1e-3)


def test_single_frame_file_gives_no_frame_warning(tmp_path):
    p = tmp_path / "one.gif"
    Image.fromarray(np.full((5, 7), 40, np.uint8)).save(p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image(p)


def _folder_with_broken_links(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(d / "a_good.png")
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "outside.png")
    (d / "b_link_ok.png").symlink_to(tmp_path / "outside.png")  # a working link is an ordinary image
    (d / "c_dangling.png").symlink_to(tmp_path / "gone.png")
    (d / "d_loop1.png").symlink_to(d / "d_loop2.png")
    (d / "d_loop2.png").symlink_to(d / "d_loop1.png")
    return d


def test_symlink_loops_and_dangling_links_error_or_skip(tmp_path):
    d = _folder_with_broken_links(tmp_path)
    with pytest.raises(ImageError) as e:
        load_images(d)
    assert str(e.value) == f"{d / 'c_dangling.png'}: dangling symbolic link (its target {tmp_path / 'gone.png'} does not exist)"
    with pytest.raises(ImageError, match="symbolic link loop"):
        load_image(d / "d_loop1.png")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        sigs = load_images(d, DataConfig(on_bad_file="skip"))
    assert [s.name for s in sigs] == ["a_good", "b_link_ok"]
    msgs = [str(x.message) for x in w]
    assert msgs == [f"skipped: {d / 'c_dangling.png'}: dangling symbolic link (its target {tmp_path / 'gone.png'} does not exist)",
                    f"skipped: {d / 'd_loop1.png'}: symbolic link loop", f"skipped: {d / 'd_loop2.png'}: symbolic link loop"], msgs


def test_broken_links_through_the_cli(tmp_path, capsys):
    from inrlens.cli import main

    d = _folder_with_broken_links(tmp_path)
    tiny = ["--net.width", "8", "--net.depth", "2", "--train.steps", "2", "--no-lpips"]
    capsys.readouterr()
    assert main(["fit", str(d), "--out", str(tmp_path / "err"), *tiny]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"inrlens: error: {d / 'c_dangling.png'}: dangling symbolic link (its target {tmp_path / 'gone.png'} does not exist)"]
    assert not (tmp_path / "err").exists()
    with pytest.warns(UserWarning) as rec:  # (the CLI prints each as one line 'inrlens: warning: …')
        assert main(["fit", str(d), "--out", str(tmp_path / "skip"), "--data.on-bad-file", "skip", *tiny]) == 0
    assert [str(w.message) for w in rec] == [
        f"skipped: {d / 'c_dangling.png'}: dangling symbolic link (its target {tmp_path / 'gone.png'} does not exist)",
        f"skipped: {d / 'd_loop1.png'}: symbolic link loop", f"skipped: {d / 'd_loop2.png'}: symbolic link loop"]
    rows = (tmp_path / "skip" / "results.jsonl").read_text().splitlines()
    assert sorted(__import__("json").loads(r)["image"] for r in rows) == ["a_good", "b_link_ok"]
