"""Maps and images as file bytes: PNG and ``.npy`` (float32, never pickled)."""
from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image


def png_bytes(image: Any) -> bytes:
    """PNG bytes of a PIL image or a uint8 array ((H, W) grey, (H, W, 3) RGB)."""
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def npy_bytes(saliency: Any) -> bytes:
    """A map as ``.npy`` bytes, float32: what ``np.load`` reads back, without pickle."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(saliency, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def load_npy(data: bytes) -> np.ndarray:
    """The array of :func:`npy_bytes` (pickled objects refused)."""
    return np.load(io.BytesIO(data), allow_pickle=False)
