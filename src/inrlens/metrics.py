"""Image quality metrics on [0, 1] images: PSNR, SSIM (Gaussian 11×11, σ = 1.5) and LPIPS (AlexNet).

All functions take batched images of shape (N, H, W, C) (C = 1 or 3, values in [0, 1]) and return (N,)
float64 tensors. LPIPS is real or absent: when its weights cannot be found the value is NaN and
:func:`lpips_status` says why — never a silent 0 or a made-up number.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor


def mse_to_psnr(mse: Tensor | float, peak: float = 1.0) -> Tensor:
    """PSNR = 10·log10(peak² / mse) in dB (mse = 0 → +inf)."""
    mse = torch.as_tensor(mse, dtype=torch.float64)
    return 10.0 * torch.log10(peak**2 / mse)


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """PSNR (dB) per image of (N, H, W, C) images in [0, 1]."""
    mse = ((x.double() - y.double()) ** 2).flatten(1).mean(1)
    return mse_to_psnr(mse)


def psnr_from_pm1_mse(mse_pm1: Tensor) -> Tensor:
    """PSNR on [0, 1] from an MSE measured on [-1, 1] pixels (the training scale): mse₀₁ = mse/4."""
    return mse_to_psnr(torch.as_tensor(mse_pm1, dtype=torch.float64) / 4.0)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(x: Tensor, y: Tensor, win: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> Tensor:
    """Mean SSIM (Wang et al. 2004) per image of (N, H, W, C) images, averaged over channels.

    Gaussian window win×win with std σ, K1 = 0.01, K2 = 0.03, population covariances, statistics only where
    the window fits (valid region) — the same numbers as ``skimage.metrics.structural_similarity(...,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)``. Images smaller than the
    window use a window of the largest odd size that fits.
    """
    n, h, w, c = x.shape
    win = min(win, h if h % 2 else h - 1, w if w % 2 else w - 1)
    if win < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 px, got {w}x{h}")
    kern = _gaussian_window(win, sigma).to(x.device)[None, None].repeat(c, 1, 1, 1)  # (C,1,win,win)
    X = x.double().permute(0, 3, 1, 2)  # (N, C, H, W)
    Y = y.double().permute(0, 3, 1, 2)
    filt = lambda t: F.conv2d(t, kern, groups=c)  # noqa: E731  valid region only
    mx, my = filt(X), filt(Y)
    sxx = filt(X * X) - mx * mx
    syy = filt(Y * Y) - my * my
    sxy = filt(X * Y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)


@lru_cache(maxsize=1)
def lpips_status() -> str:
    """'ok' when LPIPS weights load, else the reason they do not."""
    try:
        from . import lpips as _lp

        _lp.get_lpips("cpu")
        return "ok"
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        return f"unavailable: {str(e).splitlines()[0] if str(e) else type(e).__name__}"


def lpips(x: Tensor, y: Tensor, device: str | torch.device = "cpu") -> Tensor:
    """LPIPS (AlexNet, lin v0.1) per image; NaN for every image when weights are unavailable."""
    if lpips_status() != "ok":
        return torch.full((x.shape[0],), math.nan, dtype=torch.float64)
    from . import lpips as _lp

    net = _lp.get_lpips(device)
    with torch.no_grad():
        xs = x.permute(0, 3, 1, 2).float().to(device)
        ys = y.permute(0, 3, 1, 2).float().to(device)
        out = [net(xs[i : i + 8], ys[i : i + 8]) for i in range(0, xs.shape[0], 8)]
    return torch.cat(out).double().cpu()


def all_metrics(pred01: Tensor, target01: Tensor, with_lpips: bool = True, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """{'psnr', 'ssim', 'lpips'} per image, each (N,); lpips is NaN when off or unavailable."""
    out = {"psnr": psnr(pred01, target01).cpu(), "ssim": ssim(pred01, target01).cpu()}
    out["lpips"] = lpips(pred01, target01, device) if with_lpips else torch.full((pred01.shape[0],), math.nan, dtype=torch.float64)
    return out
