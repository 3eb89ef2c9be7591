"""Control maps: references that use no model query, scored like the methods so a score has something to be
read against. A method that does not beat them shows nothing about the model.

- ``random``: i.i.d. pixels; ``blocks``: random values on a coarse grid; ``centre``: a centred Gaussian (the
  photographer's prior); ``edge_map``: |x - blur(x)|, the image's own edges (a map that "looks right" on
  objects without asking the model anything).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

CONTROLS = ("random", "blocks", "centre")      # every kind of control map, in table order
CONTROL_LABELS = {"random": "control: random pixels", "blocks": "control: random 7x7 blocks",
                  "centre": "control: centre Gaussian"}
BLOCKS_GRID = 7
CENTRE_SIGMA = 0.25                            # x min(H, W)

CONTROL_DEFINITIONS = {
    "random": "i.i.d. uniform [0, 1) pixels, numpy default_rng(seed)",
    "blocks": f"uniform [0, 1) values on a {BLOCKS_GRID} x {BLOCKS_GRID} grid, numpy default_rng(seed), "
              "nearest-upsampled to the input",
    "centre": f"isotropic Gaussian centred on the image, sigma = {CENTRE_SIGMA} x min(H, W)",
}


def control_map(kind: str, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A (H, W) float32 reference map that needs no model query: ``random``, ``blocks`` or ``centre``.

    Deterministic: the random kinds depend on ``seed`` only (numpy's default_rng), ``centre`` on nothing.
    """
    h, w = (int(v) for v in shape)
    if h < 1 or w < 1:
        raise ValueError(f"a control map needs a positive shape, got {tuple(shape)}")
    if kind == "random":
        return np.random.default_rng(int(seed)).random((h, w), dtype=np.float32)
    if kind == "blocks":
        grid = np.random.default_rng(int(seed)).random((BLOCKS_GRID, BLOCKS_GRID), dtype=np.float32)
        rows, cols = np.arange(h) * BLOCKS_GRID // h, np.arange(w) * BLOCKS_GRID // w
        return np.ascontiguousarray(grid[rows][:, cols])
    if kind == "centre":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        sigma = CENTRE_SIGMA * min(h, w)
        d2 = (yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2
        return np.exp(-d2 / (2 * sigma ** 2)).astype(np.float32)
    raise ValueError(f"unknown control {kind!r}; choose from {', '.join(CONTROLS)}")


def edge_map(image: np.ndarray, radius: float = 2.0) -> np.ndarray:
    """|x - blur(x)| summed over the colour channels: a map that knows the image's edges and no model."""
    pil = Image.fromarray(np.asarray(image, dtype=np.uint8))
    blurred = np.asarray(pil.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    return np.abs(np.asarray(pil, dtype=np.float32) - blurred).sum(-1)
