"""Class names shared by several model sources (the bundled zoo and the torchvision loader).

A module of its own so that both can import it: the registry loads torchvision models through ``loaders``,
and ``zoo`` registers into the registry, so neither of those two may be what the other imports labels from.
"""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet class names shipped inside torchvision (no download)."""
    from torchvision.models import ResNet18_Weights
    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
