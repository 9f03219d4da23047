"""DataConfig.scale: one factor for every image (aspect and relative resolution kept), the built-in sets'
resolution structure, and FFMLP's σ following the scaled resolution."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data as skd
from PIL import Image

from inrlens.cli import main
from inrlens.config import DataConfig, NetConfig, TrainConfig, from_dict
from inrlens.data import load_images, load_sample, sizes_after_scale, target_shape
from inrlens.rules import ff_sigma_for
from inrlens.sweep import SweepSpec, make_plan


def half_up(n: int, p: int, q: int) -> int:
    """Exact reference: n·p/q rounded to the nearest integer, halves up, floored at 3 (integer arithmetic)."""
    return max(3, (2 * n * p + q) // (2 * q))


# ---------------------------------------------------------------------------------------------- sizes_after_scale


def test_sizes_after_scale_paper_sizes():
    assert sizes_after_scale([(256, 256)], 1 / 4) == [(64, 64)]  # CelebA-HQ
    # Kodak: 768×512 landscape and 512×768 portrait (W×H) are (512, 768) and (768, 512) as (H, W); portrait stays portrait
    assert sizes_after_scale([(512, 768), (768, 512)], 1 / 4) == [(128, 192), (192, 128)]
    assert sizes_after_scale([(192, 160)], 1 / 8) == [(24, 20)]  # OASIS 160×192 (W×H)
    assert sizes_after_scale([(160, 224)], 1 / 8) == [(20, 28)]  # OASIS axial 224×160 (W×H)


def test_sizes_after_scale_rounding_and_floor():
    assert sizes_after_scale([(75, 101)], 1 / 3) == [(25, 34)]  # 101/3 = 33.67 → 34, 75/3 = 25
    # halves go up (round-half-even would give 36 for 36.5 and 2 for 2.5)
    assert sizes_after_scale([(75, 73)], 0.5) == [(38, 37)]
    assert sizes_after_scale([(45, 25)], 0.1) == [(5, 3)]  # 4.5 → 5 despite 45·0.1 in floats; 2.5 → 3
    # the 3 px floor
    assert sizes_after_scale([(10, 40), (5, 5), (2, 1000)], 0.1) == [(3, 4), (3, 3), (3, 100)]
    assert sizes_after_scale([], 0.5) == []
    # against exact integer arithmetic over many sides and factors
    for p, q in [(1, 2), (1, 3), (2, 3), (1, 4), (3, 4), (1, 8), (3, 2), (5, 4), (1, 10), (3, 10), (7, 16)]:
        got = sizes_after_scale([(n, n + 1) for n in range(1, 400)], p / q)
        assert got == [(half_up(n, p, q), half_up(n + 1, p, q)) for n in range(1, 400)], (p, q)


@pytest.mark.parametrize("bad", [0, -0.5, float("nan"), float("inf"), -float("inf")])
def test_sizes_after_scale_rejects_bad_factors(bad):
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        sizes_after_scale([(10, 10)], bad)


def test_target_shape_size_and_square():
    cfg = DataConfig(size=48)
    assert target_shape(512, 768, cfg) == (32, 48) and target_shape(768, 512, cfg) == (48, 32)
    assert target_shape(75, 101, DataConfig(size=10)) == (7, 10)  # 75·10/101 = 7.43 → 7
    assert target_shape(3, 200, DataConfig(size=20)) == (3, 20)  # 0.3 → 3 px floor
    assert target_shape(51, 33, DataConfig(scale=1 / 3, square=True)) == (11, 11)
    assert target_shape(51, 33, DataConfig()) == (51, 33)


# ------------------------------------------------------------------------------------------------- validation


def test_dataconfig_validation():
    with pytest.raises(ValueError, match="not both"):
        DataConfig(size=32, scale=0.25)
    for bad in (0, 0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="scale must be a finite number > 0"):
            DataConfig(scale=bad)
    for bad in (0, 1, 2, -5):
        with pytest.raises(ValueError, match="size must be an integer >= 3"):
            DataConfig(size=bad)
    assert DataConfig(size=3).size == 3 and DataConfig(scale=2).scale == 2
    # config files: one line naming the table
    with pytest.raises(ValueError, match=r"^images: give the image size or the scale, not both") as e:
        from_dict(DataConfig, {"size": 32, "scale": 0.5}, "images")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="scale must be"):
        from_dict(DataConfig, {"scale": -1}, "images")
    assert from_dict(DataConfig, {"scale": 1}, "images").scale == 1.0


def test_cli_scale_errors_are_one_line(capsys):
    for argv, word in ((["--data.scale", "0"], "scale"), (["--data.scale", "nan"], "scale"),
                       (["--data.size", "32", "--data.scale", "0.5"], "not both"), (["--data.size", "2"], "size")):
        assert main(["fit", "sample:faces", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("inrlens: error:") and word in err[0], err


# ---------------------------------------------------------------------------------------------- files on disk


def _write(path, h, w, seed, mode="RGB"):
    rng = np.random.default_rng(seed)
    # smooth ramps plus noise: real structure, every value inside [0, 255]
    yy, xx = np.mgrid[0:h, 0:w]
    base = (yy / max(h - 1, 1) * 120 + xx / max(w - 1, 1) * 100)[:, :, None] + rng.integers(0, 30, (h, w, 3))
    arr = base.clip(0, 255).astype(np.uint8)
    Image.fromarray(arr if mode == "RGB" else arr[:, :, 0]).save(path)
    return arr if mode == "RGB" else arr[:, :, :1]


def test_scale_on_files_keeps_each_aspect(tmp_path):
    shapes = {"land": (33, 51), "port": (51, 33), "odd": (75, 101), "thin": (7, 40)}
    arrs = {n: _write(tmp_path / f"{n}.png", h, w, i) for i, (n, (h, w)) in enumerate(shapes.items())}
    sigs = {s.name: s for s in load_images(tmp_path, DataConfig(scale=1 / 3))}
    assert {n: s.shape for n, s in sigs.items()} == {"land": (11, 17), "port": (17, 11), "odd": (25, 34), "thin": (3, 13)}
    # the pixels are a Lanczos resampling of the file: PIL's own 8-bit Lanczos path agrees within rounding
    for n, s in sigs.items():
        h, w = s.shape
        ref = np.asarray(Image.fromarray(arrs[n]).resize((w, h), Image.Resampling.LANCZOS), dtype=np.float64) / 255
        got = (s.pixels.numpy().astype(np.float64) + 1) / 2
        assert np.abs(got - ref).max() < 1.5 / 255, n
        assert abs(got.mean() - arrs[n].mean() / 255) < 0.01  # the mean level survives
    # scale 1 is the file itself, bit for bit
    same = {s.name: s for s in load_images(tmp_path, DataConfig(scale=1))}
    for n, s in same.items():
        assert np.array_equal(np.round((s.pixels.numpy() + 1) * 127.5).astype(np.uint8), arrs[n])
    # upscaling works too, and a gray file stays gray
    _write(tmp_path / "gray.png", 9, 14, 9, mode="L")
    g = load_images(tmp_path / "gray.png", DataConfig(scale=2.5))[0]
    assert g.shape == (23, 35) and g.channels == 1  # 22.5 → 23
    # square crop, then scale
    sq = load_images(tmp_path / "port.png", DataConfig(scale=1 / 3, square=True))[0]
    assert sq.shape == (11, 11)


def test_scale_refuses_results_over_max_pixels(tmp_path):
    _write(tmp_path / "a.png", 10, 10, 0)
    with pytest.raises(ValueError, match="a: resized to 40x40 px.*max_pixels"):
        load_images(tmp_path / "a.png", DataConfig(scale=4, max_pixels=1000))


def test_kodak_quarter_keeps_orientation():
    from conftest import shared_dir

    d = shared_dir("kodak")
    sigs = load_images([d / "kodim01.png", d / "kodim04.png"], DataConfig(scale=1 / 4))
    assert [s.shape for s in sigs] == [(128, 192), (192, 128)]


# -------------------------------------------------------------------------------------------- built-in sets

NATIVE = {"faces": {(128, 128): 100}, "mri": {(112, 80): 27}, "photos": {(256, 384): 11, (384, 256): 10}}


def _count(shapes):
    out: dict = {}
    for s in shapes:
        out[s] = out.get(s, 0) + 1
    return out


@pytest.fixture(scope="module")
def native_sets():
    return {n: load_sample(n) for n in NATIVE}


def test_sample_sets_structure(native_sets):
    for name, want in NATIVE.items():
        sigs = native_sets[name]
        assert _count(s.shape for s in sigs) == want, name
        names = [s.name for s in sigs]
        assert len(set(names)) == len(names) and len(names) >= 10 + 5  # a cohort of 10 and test images
        assert all(s.source == f"sample:{name}/{s.name}" for s in sigs)
    # the paper's longer sides 256 (CelebA-HQ) : 224 (axial OASIS) : 768 (Kodak), halved
    longest = {n: max(max(s.shape) for s in native_sets[n]) for n in NATIVE}
    assert longest == {"faces": 128, "mri": 112, "photos": 384}
    assert longest["photos"] == 3 * longest["faces"]
    assert [s.channels for s in native_sets["photos"][:1] + native_sets["faces"][:1] + native_sets["mri"][:1]] == [3, 1, 1]
    # stable names
    assert [s.name for s in native_sets["faces"][:2]] == ["lfw_000", "lfw_001"] and native_sets["faces"][-1].name == "lfw_099"
    assert [s.name for s in native_sets["mri"][:2]] == ["mni152_ax060", "mni152_ax063"]
    assert [s.name for s in native_sets["photos"]][:3] == ["astronaut_l0", "astronaut_l1", "immunohistochemistry_l0"]
    assert sum(s.name.startswith("retina_p") for s in native_sets["photos"]) == 6


def test_photo_tiles_are_unresampled_crops(native_sets):
    ph = {s.name: (s.pixels.numpy() + 1) / 2 for s in native_sets["photos"]}
    a = skd.astronaut().astype(np.float64) / 255  # 512×512: two 256×384 tiles, columns 64..448
    np.testing.assert_allclose(ph["astronaut_l0"], a[0:256, 64:448], atol=1e-6)
    np.testing.assert_allclose(ph["astronaut_l1"], a[256:512, 64:448], atol=1e-6)
    c = skd.coffee().astype(np.float64) / 255  # 400×600: two 384×256 portrait tiles, rows 8..392, columns 44..556
    np.testing.assert_allclose(ph["coffee_p0"], c[8:392, 44:300], atol=1e-6)
    np.testing.assert_allclose(ph["coffee_p1"], c[8:392, 300:556], atol=1e-6)
    for n, t in ph.items():
        assert t.std() > 0.02, n  # no blank tile (the retina tiles lie inside the fundus)


def test_faces_are_the_lfw_faces_resampled_once():
    lfw = skd.lfw_subset().astype(np.float64)  # (200, 25, 25); only the first 100 are faces
    # scale 25/128 brings the nominal 128 px back to the stored 25 px: no resampling at all
    faces = load_sample("faces", DataConfig(scale=25 / 128))
    assert len(faces) == 100 and faces[0].shape == (25, 25)
    got = np.stack([(s.pixels.numpy()[:, :, 0] + 1) / 2 for s in faces])
    np.testing.assert_allclose(got, lfw[:100], atol=1e-6)


def test_mri_field_of_view_holds_the_brain():
    from pathlib import Path

    import nibabel as nib
    import nilearn

    vol = np.asarray(nib.load(str(Path(nilearn.__file__).parent / "datasets" / "data" /
                                  "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")).get_fdata())
    vol = vol / vol.max()
    sl = load_sample("mri", DataConfig(scale=2))  # 2 mm → the stored 1 mm crop, unresampled
    assert len(sl) == 27 and sl[0].shape == (224, 160)
    z = int(sl[10].name[-3:])
    full = np.rot90(vol[:, :, z])  # (233, 197): rows anterior → posterior
    crop = (sl[10].pixels.numpy()[:, :, 0].astype(np.float64) + 1) / 2
    hits = [(t, l) for t in range(full.shape[0] - 223) for l in range(full.shape[1] - 159)
            if abs(full[t + 100, l + 80] - crop[100, 80]) < 1e-6 and np.allclose(full[t:t + 224, l:l + 160], crop, atol=1e-6)]
    assert len(hits) == 1
    t, l = hits[0]
    for s in sl:  # every slice uses the same window, and no brain voxel falls outside it
        full = np.rot90(vol[:, :, int(s.name[-3:])])
        np.testing.assert_allclose((s.pixels.numpy()[:, :, 0] + 1) / 2, full[t:t + 224, l:l + 160], atol=1e-6)
        outside = full.copy()
        outside[t:t + 224, l:l + 160] = 0
        assert outside.max() < 0.05


def test_sample_sets_after_scale_follow_native(native_sets):
    for name in NATIVE:
        scaled = load_sample(name, DataConfig(scale=1 / 8))
        assert [s.name for s in scaled] == [s.name for s in native_sets[name]]
        assert [s.shape for s in scaled] == sizes_after_scale([s.shape for s in native_sets[name]], 1 / 8)
    assert _count(s.shape for s in load_sample("photos", DataConfig(scale=1 / 8))) == {(32, 48): 11, (48, 32): 10}
    assert {s.shape for s in load_sample("mri", DataConfig(scale=1 / 8))} == {(14, 10)}
    assert {s.shape for s in load_sample("faces", DataConfig(scale=1 / 8))} == {(16, 16)}


# ---------------------------------------------------------------------------------------------- FFMLP σ


def test_ff_sigma_rule():
    assert ff_sigma_for(10.0, 256) == 10.0
    assert ff_sigma_for(10.0, 64) == pytest.approx(2.5)
    assert ff_sigma_for(10.0, 768 / 4) == pytest.approx(7.5)


def _spec(data, images, **kw):
    base = dict(data=data, backbones=("ffmlp",), depths=("none", "random"), seeds=(0,), n_cohort=2, n_test=2,
                net=NetConfig(width=8, depth=2, ff_features=8), cohort_train=TrainConfig(steps=2, lr=1e-3),
                train=TrainConfig(steps=2, lr=1e-3), images=images, lpips=False, sigma_at_256=10.0)
    base.update(kw)
    return SweepSpec(**base)


def test_sweep_sigma_follows_scaled_resolution(tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    for i, (h, w) in enumerate([(40, 60), (60, 40), (40, 60), (30, 45)]):
        _write(d / f"im{i}.png", h, w, i)
    spec = _spec((f"mixed={d}",), DataConfig(scale=0.5))
    plan = make_plan(spec, tmp_path / "run")
    (cohort,) = plan.cohorts
    assert cohort.data == DataConfig(scale=0.5)  # the jobs reload the images at the same scale
    shapes = {s.name: s.shape for s in load_images(d, DataConfig(scale=0.5))}
    assert shapes == {"im0": (20, 30), "im1": (30, 20), "im2": (20, 30), "im3": (15, 23)}
    res = max(max(shapes[n]) for n in cohort.images)
    assert cohort.res == res and cohort.net.ff_sigma == pytest.approx(10.0 * res / 256)
    for f in plan.fits:
        assert f.shape == shapes[f.image]
        if f.regime == "random":  # a single-signal fit: σ follows its own image
            assert f.net.ff_sigma == pytest.approx(10.0 * max(shapes[f.image]) / 256)
    # the same files at scale 1: σ doubles with the resolution
    plan1 = make_plan(_spec((f"mixed={d}",), DataConfig(scale=1)), tmp_path / "run1")
    assert plan1.cohorts[0].net.ff_sigma == pytest.approx(2 * cohort.net.ff_sigma)


def test_sweep_sigma_keeps_the_sets_ratio(tmp_path):
    """Scaled by one factor, a face cohort's σ stays 1/3 of a photo cohort's, as CelebA-HQ's is of Kodak's."""
    spec = _spec(("faces=sample:faces", "photos=sample:photos"), DataConfig(scale=1 / 8))
    plan = make_plan(spec, tmp_path)
    sig = {c.source: c.net.ff_sigma for c in plan.cohorts}
    assert sig["faces"] == pytest.approx(10.0 * 16 / 256) and sig["photos"] == pytest.approx(10.0 * 48 / 256)
    assert math.isclose(sig["photos"], 3 * sig["faces"])
    # one size for everything erases it
    plan = make_plan(_spec(("faces=sample:faces", "photos=sample:photos"), DataConfig(size=32)), tmp_path / "b")
    assert len({c.net.ff_sigma for c in plan.cohorts}) == 1
