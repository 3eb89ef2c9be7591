"""Colour maps and the overlay image: the map, min-max normalised and colour-mapped, over its input."""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from maps.files import png_bytes
from maps.scale import normalise, resize

# Names shared by Plotly's colorscales and matplotlib's colormaps, so a PNG matches the screen.
COLORMAPS = ("jet", "turbo", "viridis", "inferno", "magma", "plasma", "hot")


def colourise(values: Any, colormap: str = "jet") -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) float RGB in [0, 255]."""
    import matplotlib  # on first use: `import maps` stays cheap for the compute core and the CLI

    return matplotlib.colormaps[colormap](np.asarray(values))[..., :3] * 255


def overlay_image(background: Any, saliency: Any, *, opacity: float = 0.5, colormap: str = "jet") -> Image.Image:
    """The min-max normalised map, colour-mapped, alpha-blended over the background.

    ``background``: (H, W, 3) uint8 image, or a (F, T) spectrogram drawn in grey with low frequencies at the
    bottom (the map is flipped with it). A map of another size is resized bilinearly to the background.
    """
    bg = np.asarray(background)
    if bg.ndim == 2:
        grey = (normalise(bg.astype(np.float32))[::-1] * 255).astype(np.uint8)
        bg = np.stack([grey] * 3, axis=-1)
        saliency = np.asarray(saliency)[::-1]
    sal = normalise(resize(saliency, bg.shape[:2]))
    out = (1 - opacity) * bg[..., :3].astype(np.float32) + opacity * colourise(sal, colormap)
    return Image.fromarray(out.clip(0, 255).round().astype(np.uint8))


def overlay_png(background: Any, saliency: Any, *, opacity: float = 0.5, colormap: str = "jet") -> bytes:
    """:func:`overlay_image` as PNG bytes (the Explore download and the ``overlays/`` of a Compare ZIP)."""
    return png_bytes(overlay_image(background, saliency, opacity=opacity, colormap=colormap))
