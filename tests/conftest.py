"""Shared fixtures: tiny real images (from the built-in samples, or ../shared/data when present)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from inrlens.data import Signal, array_to_signal

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED.exists():  # CI clones elsewhere with shared/ beside the clone
    SHARED = Path(os.environ.get("INRLENS_SHARED_DATA", str(Path.cwd().parent / "shared" / "data")))

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _release_run_locks():
    """Run folders prepared in the test process are owned until it exits: give back those a test took, so that
    later tests (and their subprocesses) start from free folders and a long session does not pile up open files."""
    from inrlens import store

    before = set(store.held_run_locks())
    yield
    for folder in set(store.held_run_locks()) - before:
        store.release_run_lock(folder)


def shared_dir(name: str) -> Path:
    """A dataset folder of ../shared/data, or skip the test (absent on a user's machine)."""
    d = SHARED / name
    if not d.is_dir():
        pytest.skip(f"../shared/data/{name} is not present on this machine")
    return d


def tiny_signals(n: int = 4, size: int = 16, channels: int = 3, seed: int = 0) -> list[Signal]:
    """n real image tiles (astronaut photo from scikit-image) resized to size×size."""
    import skimage.data as skd
    from PIL import Image

    img = skd.astronaut().astype(np.float32) / 255.0  # (512, 512, 3)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        r, c = rng.integers(0, 512 - 128, size=2)
        tile = img[r : r + 128, c : c + 128]
        small = np.stack([np.asarray(Image.fromarray(tile[:, :, ch], mode="F").resize((size, size), Image.Resampling.BILINEAR))
                          for ch in range(3)], 2)
        small = np.clip(small, 0, 1)
        if channels == 1:
            small = small.mean(2)
        out.append(array_to_signal(small, f"astro{i}"))
    return out


@pytest.fixture
def signals16() -> list[Signal]:
    return tiny_signals(4, 16)
