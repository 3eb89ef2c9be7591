"""Min-max scaling and resizing of (H, W) maps."""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "box": Image.Resampling.BOX,
             "nearest": Image.Resampling.NEAREST}


def normalise(saliency: Any) -> Any:
    """Min-max to [0, 1]; a constant map becomes zeros.

    A torch tensor stays a tensor on its device (the methods' readouts call this inside the loop); anything
    else becomes a numpy array with NaNs read as 0 (a display never shows NaN). Floating dtypes are kept, so
    a score computed on the normalised map (IoU) is the one computed on the raw map's precision.
    """
    if hasattr(saliency, "detach"):                      # a torch tensor, without importing torch here
        lo, hi = saliency.min(), saliency.max()
        return (saliency - lo) / (hi - lo) if hi > lo else saliency.new_zeros(saliency.shape)
    s = np.asarray(saliency)
    s = np.nan_to_num(s if np.issubdtype(s.dtype, np.floating) else s.astype(np.float32))
    lo, hi = float(s.min()), float(s.max())
    return (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)


def resize(saliency: Any, shape: tuple[int, int], resample: str = "bilinear") -> np.ndarray:
    """The map on another pixel grid (H, W) as float32; maps are usually already the input's size."""
    sal = np.asarray(saliency, dtype=np.float32)
    if sal.shape == tuple(shape):
        return sal
    img = Image.fromarray(sal).resize((int(shape[1]), int(shape[0])), _RESAMPLE[resample])
    return np.asarray(img, dtype=np.float32)
