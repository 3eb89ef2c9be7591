"""A localisation set built here, reproducibly: objects from the bundled photos pasted onto varied backgrounds.

Each scene is a 224 x 224 image with one ground-truth box (the pasted object the explained class belongs to).
Objects land anywhere, corners included, at 30-50 % of the side, and about half of the scenes hold a second
object as a distractor, so a centred prior cannot win. Scenes are kept only where the model ranks the target
in its top 5 (a map cannot localise what the model does not see); the draw is seeded, so the same seed gives
the same set.

Scoring (docs/methods.md section 7):
- **energy in box**: the share of the map's mass above its median that lies inside the box. The median, the
  background level of a map whose object covers under half the image, is the reference, not zero: a large
  constant offset (RISE's) is removed rather than counted, and a signed map's negative side (evidence against
  the class) is not counted as mass. A constant map has no mass: it scores the box's share of the image, the
  same as a uniform map, so no offset can rescue or sink it. The bench also prints the share above the
  minimum (negative evidence counted as mass), for comparison.
- **pointing**: the map's maximum falls inside the box.
Controls that use no query: a centred Gaussian, random 7 x 7 blocks, and an edge map |x - blur(x)|.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from .controls import control_map, edge_map

SIZE = 224

# name -> (skimage loader, crop (y0, x0, y1, x1) in the photo, ImageNet class of the crop)
OBJECTS = {
    "cat": ("chelsea", (10, 60, 300, 330), 285),           # Egyptian cat
    "coffee": ("coffee", (0, 130, 330, 470), 967),          # espresso
    "motorcycle": ("stereo_motorcycle", (60, 60, 470, 700), 665),   # moped
    "rocket": ("rocket", (0, 230, 427, 420), 812),         # space shuttle
}
BACKGROUNDS = ("grass", "brick", "gravel", "hubble_deep_field", "immunohistochemistry", "gradient", "plain")


@dataclass(frozen=True)
class Scene:
    image: np.ndarray                  # (H, W, 3) uint8
    box: tuple[int, int, int, int]     # (y0, x0, y1, x1), end exclusive
    target: int
    name: str                          # e.g. "cat on brick, flipped" or "cat + coffee on grass"

    @property
    def box_fraction(self) -> float:
        y0, x0, y1, x1 = self.box
        return (y1 - y0) * (x1 - x0) / (self.image.shape[0] * self.image.shape[1])


@lru_cache(maxsize=None)
def _photo(loader: str) -> np.ndarray:
    import skimage.data
    img = getattr(skimage.data, loader)()
    return img[0] if isinstance(img, tuple) else img


def object_image(name: str) -> Image.Image:
    loader, (y0, x0, y1, x1), _ = OBJECTS[name]
    return Image.fromarray(_photo(loader)[y0:y1, x0:x1])


def background(kind: str, rng: np.random.Generator) -> Image.Image:
    """A 224 x 224 background: a random crop of a texture photo (grey ones tinted), a gradient or a flat colour."""
    if kind == "plain":
        return Image.new("RGB", (SIZE, SIZE), tuple(int(v) for v in rng.integers(40, 220, 3)))
    if kind == "gradient":
        t = np.linspace(0, 1, SIZE)[None, :, None]
        a, b = rng.integers(0, 255, 3), rng.integers(0, 255, 3)
        img = (a * (1 - t) + b * t) * np.ones((SIZE, 1, 1))
        return Image.fromarray(img.astype(np.uint8))
    src = _photo(kind)
    if src.ndim == 2:
        tint = rng.uniform(0.5, 1.0, 3)
        src = (src[..., None] * tint).astype(np.uint8)
    side = int(rng.integers(SIZE, min(src.shape[:2]) + 1))
    y, x = (int(rng.integers(0, src.shape[i] - side + 1)) for i in (0, 1))
    return Image.fromarray(np.ascontiguousarray(src[y:y + side, x:x + side, :3])).resize((SIZE, SIZE))


def _place(rng: np.random.Generator, side: int, taken: tuple[int, int, int, int] | None):
    """A top-left corner for a side x side object, off the taken box when there is one (20 tries)."""
    for _ in range(20):
        y, x = (int(rng.integers(0, SIZE - side + 1)) for _ in range(2))
        if taken is None or y >= taken[2] or y + side <= taken[0] or x >= taken[3] or x + side <= taken[1]:
            return y, x
    return None


def draw_scene(rng: np.random.Generator) -> Scene | None:
    names = list(OBJECTS)
    obj = names[int(rng.integers(len(names)))]
    kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    canvas = background(kind, rng)
    side = int(rng.integers(int(0.30 * SIZE), int(0.50 * SIZE) + 1))
    flip = bool(rng.integers(2))
    y, x = _place(rng, side, None)
    img = object_image(obj).resize((side, side))
    canvas.paste(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else img, (x, y))
    box = (y, x, y + side, x + side)
    label = f"{obj}{' (flipped)' if flip else ''}"
    if rng.random() < 0.5:            # a distractor of another class, beside the object
        other = names[(names.index(obj) + 1 + int(rng.integers(len(names) - 1))) % len(names)]
        side2 = int(rng.integers(int(0.25 * SIZE), int(0.40 * SIZE) + 1))
        spot = _place(rng, side2, box)
        if spot is None:
            return None
        canvas.paste(object_image(other).resize((side2, side2)), (spot[1], spot[0]))
        label += f" + {other}"
    return Scene(np.asarray(canvas), box, OBJECTS[obj][2], f"{label} on {kind}")


def scenes(bb, n: int = 12, seed: int = 0, top_k: int = 5, max_draws: int = 400) -> list[Scene]:
    """``n`` scenes the model sees: the target in its top ``top_k`` (a few queries per draw, not counted)."""
    import torch
    rng = np.random.default_rng(seed)
    out: list[Scene] = []
    view = bb.view()
    for _ in range(max_draws):
        if len(out) == n:
            break
        s = draw_scene(rng)
        if s is None:
            continue
        with torch.inference_mode():
            scores = view(bb.preprocess(Image.fromarray(s.image)).unsqueeze(0))[0]
        if s.target in scores.topk(top_k).indices.tolist():
            out.append(s)
    if len(out) < n:
        raise RuntimeError(f"only {len(out)} of {n} scenes are seen by {bb.name} after {max_draws} draws")
    return out


def energy_in_box(saliency, box, reference: str = "median") -> float:
    """Share of the map's mass above its background level that lies inside the box; a constant map scores the
    box's share of the image. ``reference``: "median" (the background level of a map whose object covers under
    half the image: an offset is removed, a signed map's negative side does not count) or "min" (everything
    above the minimum counts, negative evidence included)."""
    s = np.asarray(saliency, dtype=np.float64)
    s = np.clip(s - np.median(s), 0, None) if reference == "median" else s - s.min()
    total = s.sum()
    y0, x0, y1, x1 = box
    if not np.isfinite(total) or total <= 0:
        return (y1 - y0) * (x1 - x0) / s.size
    return float(s[y0:y1, x0:x1].sum() / total)


def pointing_hit(saliency, box) -> bool:
    s = np.asarray(saliency, dtype=np.float64)
    if s.max() == s.min():
        return False
    y, x = np.unravel_index(int(np.argmax(s)), s.shape)
    y0, x0, y1, x1 = box
    return bool(y0 <= y < y1 and x0 <= x < x1)


def control_maps(scene: Scene, seed: int = 0) -> dict[str, np.ndarray]:
    """The model-free controls of the benchmark for one scene."""
    shape = scene.image.shape[:2]
    return {"centre Gaussian": control_map("centre", shape), "random 7x7 blocks": control_map("blocks", shape, seed),
            "edges, abs(x - blur(x))": edge_map(scene.image)}
