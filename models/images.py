"""Decoding user images safely, and the preprocessing that travels with an image model."""
from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from maps import normalise

MAX_SIDE = 2048  # larger images are downscaled on load (the models see 224 px anyway)
MAX_FILE_BYTES = 50 * 1024 * 1024


class ImageDecodeError(ValueError):
    """The bytes are not an image we can use; the message says why and what to do."""


@dataclass
class DecodedImage:
    image: Image.Image                    # RGB, at most MAX_SIDE per side
    notes: list[str] = field(default_factory=list)  # conversions made, for the user to read


def _too_many_pixels(e: Exception) -> str:
    """One limit in the message: Pillow's own text names a warning limit and an error limit twice as high, and
    decode_image refuses both (the warning is raised as an error), so the limit is ``Image.MAX_IMAGE_PIXELS``."""
    limit = Image.MAX_IMAGE_PIXELS or 0
    found = re.search(r"\((\d+) pixels\)", str(e))
    size = f" has {int(found.group(1)) / 1e6:,.0f} megapixels and" if found else ""
    return (f"The image{size} is too large to decode safely: the limit is {limit / 1e6:,.0f} megapixels "
            f"({limit:,} pixels). Downscale it below that (the models see 224 px anyway) "
            "and try again.")


def decode_image(data: bytes | str | Path, max_side: int = MAX_SIDE) -> DecodedImage:
    """Open any common image as RGB (first frame of animations), with clear errors for bad files.

    Handles grayscale, RGBA, CMYK, 16-bit, palette and EXIF-rotated images; refuses truncated files and
    decompression bombs (Pillow's pixel limit) with a message.
    """
    if isinstance(data, (str, Path)):
        data = Path(data).read_bytes()
    if not data:
        raise ImageDecodeError("The file is empty. Choose a JPEG, PNG, WebP, BMP, TIFF or GIF image.")
    if len(data) > MAX_FILE_BYTES:
        raise ImageDecodeError(f"The file is {len(data) / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB. "
                               "Save a smaller copy of the image and try again.")
    notes: list[str] = []
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
                notes.append(f"{fmt} with {img.n_frames} frames: the first frame is used.")
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageDecodeError(_too_many_pixels(e)) from None
    except UnidentifiedImageError:
        raise ImageDecodeError("This file is not an image Pillow can read. "
                               "Choose a JPEG, PNG, WebP, BMP, TIFF or GIF image.") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageDecodeError(f"The image file is damaged or truncated ({e}). Re-export it and try again.") from None

    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        arr = normalise(arr) * 255
        img = Image.fromarray(arr.round().astype(np.uint8))
        notes.append(f"{mode} high-bit-depth image rescaled to 8 bits.")
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba).convert("RGB")
        notes.append("Transparency flattened onto white.")
    elif img.mode != "RGB":
        notes.append(f"{mode} image converted to RGB.")
        img = img.convert("RGB")
    if max(img.size) > max_side:
        w, h = img.size
        scale = max_side / max(w, h)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
        notes.append(f"Large image ({w}x{h}) downscaled to {img.size[0]}x{img.size[1]}.")
    return DecodedImage(img, notes)


class ImageTransform:
    """Resize the shorter side, centre-crop a square, normalise: the input space of an image model."""

    def __init__(self, size: int, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop: bool = True):
        self.size, self.crop = int(size), crop
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def geometry(self, img: Image.Image) -> Image.Image:
        """The RGB image exactly as the model sees it (before normalisation)."""
        if not isinstance(img, Image.Image):
            img = Image.fromarray(np.asarray(img))
        img = img.convert("RGB")
        if self.crop:
            return ImageOps.fit(img, (self.size, self.size), Image.Resampling.BILINEAR)
        return img.resize((self.size, self.size), Image.Resampling.BILINEAR)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        arr = np.asarray(self.geometry(img), dtype=np.float32) / 255.0
        x = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
        return (x - self.mean) / self.std

    def to_display(self, x: torch.Tensor) -> np.ndarray:
        t = x.detach().float().cpu() * self.std + self.mean
        return (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
