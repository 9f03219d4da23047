"""Backbone registry: one :class:`Backbone` object per INR architecture, looked up by name.

Built in, in this order: ``siren`` (sine activations), ``ffmlp`` (Fourier features + ReLU MLP), ``gauss``
(Gaussian activations), ``wire`` (complex Gabor wavelets), ``finer`` (variable-periodic sines) and ``hashgrid``
(trainable multiresolution hash encoding + ReLU MLP); docs/backbones.md gives their formulas and defaults. A backbone
registered with :func:`register_backbone` is valid everywhere a name is taken: ``NetConfig.backbone`` and the
CLI's ``--net.backbone`` choices, every fit, checkpoints, the memory estimate behind chunk sizes, stable ranks,
SAEs, and the report, which groups backbones in registry order (:func:`backbone_order`). How to write one:
:mod:`inrlens.backbones.base` and docs/extending.md.

Modules named in the environment variable ``INRLENS_BACKBONES`` (comma-separated import paths) are imported the
first time the registry is consulted, so that their ``register_backbone`` calls also reach the command line and
the worker processes of a sweep, which inherit the environment.
"""

from __future__ import annotations

import importlib
import os
from typing import Literal

from .base import Backbone, Encoding

PLUGIN_ENV = "INRLENS_BACKBONES"
"""Environment variable: comma-separated modules that register backbones, imported on first use of the registry."""

_REGISTRY: dict[str, Backbone] = {}
_PLUGINS_LOADED: set[str] = set()


def load_plugins() -> None:
    """Import the modules named in ``INRLENS_BACKBONES`` that are not imported yet (each once per process)."""
    for mod in (m.strip() for m in os.environ.get(PLUGIN_ENV, "").split(",")):
        if not mod or mod in _PLUGINS_LOADED:
            continue
        _PLUGINS_LOADED.add(mod)  # before the import: the module may consult the registry itself
        try:
            importlib.import_module(mod)
        except ImportError as e:
            _PLUGINS_LOADED.discard(mod)
            raise ValueError(f"{PLUGIN_ENV}: cannot import {mod!r} ({e})") from None


def register_backbone(backbone: Backbone, replace: bool = False) -> Backbone:
    """Add ``backbone`` under ``backbone.name`` (after those already registered) and return it.

    A name already taken is an error unless ``replace`` (the replacement keeps its place in the order)."""
    if not isinstance(backbone, Backbone):
        raise TypeError(f"register_backbone expects a Backbone instance, got {type(backbone).__name__}")
    name = backbone.name
    if not isinstance(name, str) or not name or name != name.strip() or any(c.isspace() or c in "/|,=" for c in name):
        raise ValueError(f"backbone name must be a non-empty word without spaces, '/', '|', ',' or '=', got {name!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"backbone {name!r} is already registered (pass replace=True to replace it)")
    if not (isinstance(backbone.default_lr, (int, float)) and backbone.default_lr > 0):
        raise ValueError(f"backbone {name!r}: default_lr must be a number > 0, got {backbone.default_lr!r}")
    _REGISTRY[name] = backbone
    return backbone


def unregister_backbone(name: str) -> None:
    """Remove a registered backbone (tests and plug-ins that clean up after themselves); unknown names fail."""
    get_backbone(name)
    del _REGISTRY[name]


def get_backbone(name: str) -> Backbone:
    """The backbone registered as ``name``; one-line ValueError listing the registered names otherwise."""
    if isinstance(name, str) and name in _REGISTRY:
        return _REGISTRY[name]
    load_plugins()
    if isinstance(name, str) and name in _REGISTRY:
        return _REGISTRY[name]
    raise ValueError(f"unknown backbone {name!r}; registered: {', '.join(_REGISTRY)}")


def backbone_names() -> tuple[str, ...]:
    """Registered names, in registration order (built-ins first: siren, ffmlp)."""
    load_plugins()
    return tuple(_REGISTRY)


def backbone_order(name: str) -> int:
    """Sort key for grouping by backbone (reports, tables): the registry position; unknown names sort last."""
    names = backbone_names()
    return names.index(name) if name in names else len(names)


def backbone_choices() -> object:
    """``Literal[<registered names>]``, evaluated when a command line is parsed (tyro's choices)."""
    return Literal[backbone_names()]  # type: ignore[valid-type]


# Built-ins last: their modules import inrlens.nets, which imports this package's functions above.
from .ffmlp import FFMLP, FourierMLP  # noqa: E402
from .finer import FINER, Finer  # noqa: E402
from .gauss import GAUSS, Gauss  # noqa: E402
from .hashgrid import HASHGRID, HashGrid  # noqa: E402
from .siren import SIREN, Siren  # noqa: E402
from .wire import WIRE, Wire  # noqa: E402

register_backbone(SIREN)
register_backbone(FFMLP)
register_backbone(GAUSS)
register_backbone(WIRE)
register_backbone(FINER)
register_backbone(HASHGRID)

__all__ = ["Backbone", "Encoding", "PLUGIN_ENV", "load_plugins", "register_backbone", "unregister_backbone", "get_backbone",
           "backbone_names", "backbone_order", "backbone_choices", "Siren", "FourierMLP", "Gauss", "Wire", "Finer", "HashGrid",
           "SIREN", "FFMLP", "GAUSS", "WIRE", "FINER", "HASHGRID"]
