"""Explainer registry: ``@register_explainer`` on a class; adding a method is adding one file."""
from __future__ import annotations

from typing import Any

from .base import Explainer

_EXPLAINERS: dict[str, type[Explainer]] = {}


def register_explainer(cls: type[Explainer]) -> type[Explainer]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _EXPLAINERS:
        raise ValueError(f"explainer {cls.name!r} is already registered")
    _EXPLAINERS[cls.name] = cls
    return cls


def unregister_explainer(name: str) -> None:
    """Remove a method (a plug-in reloaded in a notebook, a throwaway method in a test); unknown names are ignored."""
    _EXPLAINERS.pop(name, None)


def list_explainers(modality: str | None = None, white_box: bool | None = None) -> list[str]:
    return [n for n, c in _EXPLAINERS.items()
            if (modality is None or modality in c.modalities) and (white_box is None or c.white_box == white_box)]


def explainer_class(name: str) -> type[Explainer]:
    try:
        return _EXPLAINERS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(_EXPLAINERS)}") from None


def get_explainer(name: str, seed: int = 0, **params: Any) -> Explainer:
    return explainer_class(name)(seed=seed, **params)
