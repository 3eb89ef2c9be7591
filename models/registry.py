"""Model registry: ``@register_model(name)`` fills one dict; ``load_model`` and ``list_models`` read it.

Loaders take ``device`` and ``score_mode`` and return a :class:`BlackBox`. Adding a model is adding one
decorated loader (as in timm / torchvision).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from .base import BlackBox


@dataclass(frozen=True)
class ModelInfo:
    name: str
    loader: Callable[..., BlackBox]
    modality: str = "image"          # "image" | "audio"
    description: str = ""
    bundled: bool = True             # loads offline from files in the repo or an installed package
    hidden: bool = False             # test-only models are loadable but not listed in the UI


_MODELS: dict[str, ModelInfo] = {}


def register_model(name: str, *, modality: str = "image", description: str = "", bundled: bool = True,
                   hidden: bool = False):
    def deco(loader: Callable[..., BlackBox]):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = ModelInfo(name, loader, modality, description, bundled, hidden)
        return loader
    return deco


def list_models(modality: str | None = None, include_hidden: bool = False) -> list[str]:
    """Names that ``load_model`` accepts (torchvision architectures go as ``torchvision:<arch>``)."""
    return [n for n, i in _MODELS.items()
            if (modality is None or i.modality == modality) and (include_hidden or not i.hidden)]


def model_info(name: str) -> ModelInfo:
    try:
        return _MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models(include_hidden=True))}, "
                       f"or 'torchvision:<architecture>'") from None


def load_model(name: str, device=None, score_mode: str = "prob", backend: str = "auto", threads: int | None = None,
               **kwargs) -> BlackBox:
    """Load a registered model (or ``torchvision:<arch>``) as a BlackBox; ``device=None`` picks CUDA if present.

    ``backend``: what serves the queries of a torch model (``models.backends``): ``"auto"`` (ONNX Runtime on the
    CPU where it checks out and is measured faster, else torch), ``"torch"``, ``"onnxruntime"`` or
    ``"compile"``; ``bb.backend`` says which one runs. ``threads``: ONNX Runtime's thread count (default:
    measured). ``$SALIENCY_BACKEND`` overrides ``"auto"``, ``$SALIENCY_THREADS`` the measured thread count.
    """
    from .backends import use_backend
    if name.startswith("torchvision:"):
        from .loaders import load_torchvision
        bb = load_torchvision(name.split(":", 1)[1], device=device, score_mode=score_mode, **kwargs)
    else:
        bb = model_info(name).loader(device=device, score_mode=score_mode, **kwargs)
    if backend == "auto":
        backend = os.environ.get("SALIENCY_BACKEND") or "auto"
    threads = threads or int(os.environ.get("SALIENCY_THREADS") or 0) or None
    return use_backend(bb, backend, threads=threads)
