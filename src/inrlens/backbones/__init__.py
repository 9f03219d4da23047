"""Backbone registry (being filled in): one object per INR architecture. Placeholder with the registry API
the rest of the package uses: :func:`get_backbone` (unknown names fail loudly) and :func:`backbone_names`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backbone:
    name: str
    default_lr: float


_REGISTRY: dict[str, Backbone] = {"siren": Backbone("siren", 1e-4), "ffmlp": Backbone("ffmlp", 1e-3)}


def get_backbone(name: str) -> Backbone:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; registered: {', '.join(_REGISTRY)}") from None


def backbone_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)
