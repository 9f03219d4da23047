"""Atom semantics: Pearson r against numpy, feature maps against hand-computed values and scipy, MRI tissue maps
aligned with sample:mri."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inrlens.config import DataConfig
from inrlens.probes.semantics import (
    coordinate_maps,
    correlate,
    feature_maps,
    layer_summary,
    local_frequency,
    semantics_record,
    signal_features,
    signal_image,
    sobel_magnitude,
    tissue_maps,
    top_correlate,
)


def _rgb(h=12, w=10, seed=0):
    return np.random.default_rng(seed).random((h, w, 3))


# --- correlation -------------------------------------------------------------------------------------------


def test_pearson_matches_numpy_corrcoef():
    rng = np.random.default_rng(1)
    maps = rng.standard_normal((5, 6, 7))
    feats = {"a": rng.standard_normal((6, 7)), "b": rng.random((6, 7)) * 3 + 2, "c": maps[2] * -0.5 + 1}
    names, R = correlate(torch.from_numpy(maps).float(), feats)
    assert names == ["a", "b", "c"] and R.shape == (5, 3)
    for i in range(5):
        for f, n in enumerate(names):
            ref = np.corrcoef(maps[i].ravel(), feats[n].ravel())[0, 1]
            assert R[i, f] == pytest.approx(ref, abs=1e-6)
    assert R[2, 2] == pytest.approx(-1.0, abs=1e-6)


def test_pearson_with_mask_matches_numpy_on_the_selected_pixels():
    rng = np.random.default_rng(2)
    maps, feat = rng.standard_normal((3, 5, 5)), rng.standard_normal((5, 5))
    mask = rng.random((5, 5)) > 0.4
    _, R = correlate(maps, {"f": feat}, mask=mask)
    for i in range(3):
        assert R[i, 0] == pytest.approx(np.corrcoef(maps[i][mask], feat[mask])[0, 1], abs=1e-12)
    with pytest.raises(ValueError, match="at least 2 pixels"):
        correlate(maps, {"f": feat}, mask=np.zeros((5, 5), bool))


def test_atom_equal_to_luminance_and_to_minus_edges():
    img = _rgb()
    feats = feature_maps(img)
    assert list(feats) == ["luminance", "red", "green", "blue", "edges", "frequency"]
    maps = np.stack([feats["luminance"], -feats["edges"], 3.0 * feats["luminance"] + 7.0])
    names, R = correlate(maps, feats)
    assert R[0, names.index("luminance")] == pytest.approx(1.0, abs=1e-12)
    assert R[1, names.index("edges")] == pytest.approx(-1.0, abs=1e-12)
    top = top_correlate(names, R)
    assert top.name == ["luminance", "edges", "luminance"]
    assert top.r[0] == pytest.approx(1.0) and top.r[1] == pytest.approx(-1.0) and top.r[2] == pytest.approx(1.0)


def test_constant_map_is_nan_and_never_top():
    img = _rgb(seed=3)
    feats = feature_maps(img)
    maps = np.stack([np.zeros((12, 10)), np.full((12, 10), 0.37), feats["green"]])
    names, R = correlate(maps, feats)
    assert np.isnan(R[0]).all() and np.isnan(R[1]).all() and np.isfinite(R[2]).all()
    top = top_correlate(names, R)
    assert top.name[:2] == [None, None] and list(top.index[:2]) == [-1, -1] and np.isnan(top.r[:2]).all()
    assert top.name[2] == "green"
    # a constant feature (a gray image's blue channel would be; here made by hand) is NaN and never chosen
    names2, R2 = correlate(maps[2:], {"flat": np.ones((12, 10)), "green": feats["green"]})
    assert np.isnan(R2[0, 0]) and top_correlate(names2, R2).name == ["green"]
    # a row that is partly NaN picks the largest finite |r|
    top3 = top_correlate(["a", "b", "c"], np.array([[np.nan, -0.4, 0.3]]))
    assert top3.name == ["b"] and top3.r[0] == pytest.approx(-0.4)


def test_layer_summary_counts_and_means_by_hand():
    names = ["luminance", "edges", "frequency"]
    R = np.array([[0.9, -0.2, 0.1], [0.1, -0.8, 0.5], [np.nan, np.nan, np.nan], [-0.3, 0.2, np.nan]])
    s = layer_summary(R, names)
    assert s["luminance"]["top_count"] == 2 and s["edges"]["top_count"] == 1 and s["frequency"]["top_count"] == 0
    assert s["(none)"]["top_count"] == 1
    assert s["luminance"]["mean_abs_r"] == pytest.approx((0.9 + 0.1 + 0.3) / 3)
    assert s["edges"]["mean_abs_r"] == pytest.approx((0.2 + 0.8 + 0.2) / 3)
    assert s["frequency"]["mean_abs_r"] == pytest.approx((0.1 + 0.5) / 2)
    rec = semantics_record([7, 3, 5, 1], names, R)
    assert rec["atoms"] == [7, 3, 5, 1] and rec["top"] == ["luminance", "edges", None, "luminance"]
    assert rec["r"][2] == [None, None, None] and rec["top_r"][3] == pytest.approx(-0.3)
    import json

    json.dumps(rec, allow_nan=False)  # strict JSON: no NaN


# --- feature maps ------------------------------------------------------------------------------------------


def test_gray_image_has_luminance_edges_frequency_only():
    g = np.random.default_rng(4).random((9, 8))
    for img in (g, g[:, :, None]):
        feats = feature_maps(img)
        assert list(feats) == ["luminance", "edges", "frequency"]
        assert np.array_equal(feats["luminance"], g)
    with pytest.raises(ValueError, match="H, W"):
        feature_maps(np.zeros((4, 4, 2)))


def test_luminance_is_bt601():
    img = _rgb(seed=5)
    y = feature_maps(img)["luminance"]
    assert np.allclose(y, 0.299 * img[:, :, 0] + 0.587 * img[:, :, 1] + 0.114 * img[:, :, 2], atol=1e-12)


def test_sobel_hand_computed_3x3_and_5x5():
    # single bright pixel: corners √2, edge midpoints 2, centre 0 (reflect padding repeats the edge pixel)
    imp = np.zeros((3, 3))
    imp[1, 1] = 1.0
    r2 = math.sqrt(2.0)
    assert np.allclose(sobel_magnitude(imp), [[r2, 2, r2], [2, 0, 2], [r2, 2, r2]], atol=1e-12)
    # vertical step between columns 1 and 2: G_x = 4·(I[j+1] − I[j−1]), G_y = 0
    step = np.tile([0.0, 0.0, 1.0, 1.0, 1.0], (5, 1))
    assert np.allclose(sobel_magnitude(step), np.tile([0.0, 4.0, 4.0, 0.0, 0.0], (5, 1)), atol=1e-12)
    # ramp down the rows I = i: G_y = 4·(I[i+1] − I[i−1]) = 4, 8, 8, 8, 4
    ramp = np.tile(np.arange(5.0)[:, None], (1, 5))
    assert np.allclose(sobel_magnitude(ramp), np.tile([[4.0], [8.0], [8.0], [8.0], [4.0]], (1, 5)), atol=1e-12)


def test_sobel_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    y = np.random.default_rng(6).random((11, 13))
    ref = np.hypot(ndimage.sobel(y, axis=1, mode="reflect"), ndimage.sobel(y, axis=0, mode="reflect"))
    assert np.allclose(sobel_magnitude(y), ref, atol=1e-12)
    img = np.random.default_rng(7).random((6, 5, 3))
    lum = img @ np.array([0.299, 0.587, 0.114])
    ref2 = np.hypot(ndimage.sobel(lum, axis=1, mode="reflect"), ndimage.sobel(lum, axis=0, mode="reflect"))
    assert np.allclose(feature_maps(img)["edges"], ref2, atol=1e-12)


def test_frequency_increases_with_the_local_frequency_of_a_chirp():
    h, w = 32, 64
    f = np.linspace(0.03, 0.3, w)  # cycles per pixel, rising left → right
    chirp = 0.5 + 0.4 * np.sin(2 * np.pi * np.cumsum(f))
    for img in (np.tile(chirp, (h, 1)), np.tile(chirp, (h, 1)) * np.linspace(1.0, 0.9, h)[:, None]):
        cols = feature_maps(img)["frequency"].mean(0)  # (W,)
        thirds = [cols[: w // 3].mean(), cols[w // 3 : 2 * w // 3].mean(), cols[2 * w // 3 :].mean()]
        assert thirds[0] < thirds[1] < thirds[2]
        ranks = np.argsort(np.argsort(cols))
        assert np.corrcoef(ranks, np.arange(w))[0, 1] > 0.95  # Spearman
    # constant image → zero energy; a pure sinusoid → ≈ 2√2·a·sin²(πf) away from the borders
    assert np.allclose(local_frequency(np.full((8, 8), 0.3)), 0.0)
    x = np.arange(48)
    sin = np.tile(0.5 + 0.25 * np.sin(2 * np.pi * 0.125 * x), (16, 1))
    expected = 2 * math.sqrt(2) * 0.25 * math.sin(math.pi * 0.125) ** 2
    assert local_frequency(sin, window=4.0)[8, 16:32].mean() == pytest.approx(expected, rel=0.03)


def test_coordinate_maps_follow_the_inr_grid():
    from inrlens.data import grid

    c = coordinate_maps((4, 6))
    g = grid(4, 6).numpy()
    assert np.allclose(c["x"].ravel(), g[:, 0], atol=1e-6) and np.allclose(c["y"].ravel(), g[:, 1], atol=1e-6)
    assert np.allclose(c["radius"], np.hypot(c["x"], c["y"]))


# --- MRI tissue maps ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mri():
    try:
        tissue_maps(90, (8, 6))
    except FileNotFoundError as e:
        pytest.skip(str(e))
    from inrlens.data import load_sample

    return {cfg: load_sample("mri", cfg) for cfg in (DataConfig(size=32), DataConfig(scale=0.25))}


def test_tissue_maps_have_the_sample_shapes(mri):
    for cfg, sigs in mri.items():
        for s in (sigs[0], sigs[-1]):
            for t in (tissue_maps(s.name, cfg), tissue_maps(s.name, s.shape), signal_features(s)):
                for k in ("gm", "wm", "csf"):
                    assert t[k].shape == s.shape and 0.0 <= t[k].min() and t[k].max() <= 1.0
            assert np.array_equal(tissue_maps(s.name, cfg)["gm"], tissue_maps(s.name, s.shape)["gm"])
    assert tissue_maps(60)["wm"].shape == (112, 80)
    with pytest.raises(ValueError, match="not a sample:mri slice"):
        tissue_maps(61)
    with pytest.raises(ValueError, match="not a sample:mri slice"):
        tissue_maps("lfw_000")


def test_tissue_maps_align_with_the_t1(mri):
    from inrlens.probes.semantics import _mri_maps

    for cfg, sigs in mri.items():
        for s in (sigs[5], sigs[12], sigs[20]):
            t1 = signal_image(s)[:, :, 0]
            # the T1 cut by the tissue-map path is the sample's own image, pixel for pixel
            assert np.allclose(_mri_maps(["t1"], s.name, cfg)["t1"], t1, atol=1e-6)
            t = tissue_maps(s.name, cfg)
            names, R = correlate(t1, {"gm": t["gm"], "wm": t["wm"]})
            assert R[0, 0] > 0.3 and R[0, 1] > 0.5  # both tissues are bright against the black background
            brain = t1 > 0.05
            # misaligned WM maps correlate clearly less inside the brain (the template is left-right symmetric,
            # so only the up-down flip and shifts can tell orientation and registration apart)
            wrong = {"wm": t["wm"], "flip_ud": t["wm"][::-1], "shift_x": np.roll(t["wm"], 2, axis=1),
                     "shift_y": np.roll(t["wm"], 2, axis=0)}
            names, R = correlate(t1, wrong, mask=brain)
            assert R[0, 0] > 0.7 and R[0, 0] > R[0, 1] + 0.15 and R[0, 0] > max(R[0, 2], R[0, 3]) + 0.2
            wm, gm = t["wm"] > 0.5, t["gm"] > 0.5
            assert t1[wm & brain].mean() > t1[gm & brain].mean() + 0.1  # WM is brighter than GM on T1
            _, Rb = correlate(t1, t, mask=brain)  # inside the brain: T1 rises with WM, falls with CSF
            assert Rb[0, 1] > 0.5 and Rb[0, 2] < -0.3
            assert t["csf"][0, 0] == 0 and t["csf"][-1, -1] == 0  # background corners


def test_csf_is_the_rest_of_the_brain_at_native_resolution(mri):
    from inrlens.probes.semantics import BRAIN_THRESHOLD, _mri_maps

    m = _mri_maps(["t1", "gm", "wm", "csf"], 90, (224, 160))  # the stored 1 mm crop, not resampled
    brain = m["t1"] > BRAIN_THRESHOLD
    assert brain.mean() > 0.3 and np.all(m["csf"][~brain] == 0)
    assert np.allclose(m["csf"][brain], np.clip(1 - m["gm"] - m["wm"], 0, 1)[brain], atol=1e-6)
    assert m["csf"].max() > 0.9  # the ventricles
