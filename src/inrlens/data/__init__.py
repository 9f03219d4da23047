"""Datasets: image files and folders, built-in sample sets, coordinate grids, cohort/test splits.

``images`` turns files into :class:`Signal` objects (pixels in [-1, 1] on an H×W grid); ``samples`` holds the
named sources that need no files: the built-in sets (``sample:photos`` …) and seeded noise (``noise:pink`` …).
A new kind of source goes in ``samples.py`` (see docs/extending.md).
"""

from .images import (
    ImageError,
    Signal,
    array_to_signal,
    distinct,
    grid,
    group_by_shape,
    harmonise_channels,
    list_images,
    load_image,
    load_images,
    pixel_digest,
    sizes_after_scale,
    split,
    target_shape,
    to_unit,
)
from .samples import NOISES, SOURCES, NoiseSpec, is_source, load_noise, load_sample, noise_image, parse_noise, pink_field, resolve

__all__ = [
    "ImageError",
    "NOISES",
    "NoiseSpec",
    "SOURCES",
    "Signal",
    "array_to_signal",
    "distinct",
    "grid",
    "group_by_shape",
    "harmonise_channels",
    "is_source",
    "list_images",
    "load_image",
    "load_images",
    "load_noise",
    "load_sample",
    "noise_image",
    "parse_noise",
    "pink_field",
    "pixel_digest",
    "resolve",
    "sizes_after_scale",
    "split",
    "target_shape",
    "to_unit",
]
