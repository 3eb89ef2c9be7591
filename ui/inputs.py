"""Image input: a bundled example photo (thumbnails) or an upload decoded safely by ``models.decode_image``.

The input id is the sha256 of the raw bytes, so the engine's cache recognises the same file from any session.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st
from PIL import Image

from models import ImageDecodeError, decode_image

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"]
SOURCES = ("Example photo", "Upload an image")


@dataclass
class ImageInput:
    image: Image.Image          # RGB
    input_id: str               # sha256 of the raw file bytes
    name: str
    notes: list[str] = field(default_factory=list)


def example_names() -> list[str]:
    return sorted(p.stem for p in EXAMPLES_DIR.glob("*.png"))


@st.cache_data(max_entries=32, show_spinner=False)
def _decode(sha: str, _data: bytes) -> tuple[Image.Image, list[str]]:
    """Decoded once per file (keyed on its sha256; the bytes themselves are not hashed again)."""
    decoded = decode_image(_data)
    return decoded.image, decoded.notes


@st.cache_data(show_spinner=False)
def _thumbnail(name: str, side: int = 96) -> Image.Image:
    img = Image.open(EXAMPLES_DIR / f"{name}.png").convert("RGB")
    img.thumbnail((side, side))
    return img


def decode_bytes(data: bytes, name: str) -> ImageInput | None:
    """Decode or explain why not (st.error), showing conversion notes (st.info). Never raises."""
    sha = hashlib.sha256(data).hexdigest()
    try:
        image, notes = _decode(sha, data)
    except ImageDecodeError as e:
        st.error(f"**{name}**: {e}")
        return None
    except Exception as e:  # anything Pillow did not foresee: say so, keep the app running
        st.error(f"**{name}** could not be read ({type(e).__name__}: {e}). Try saving it as PNG or JPEG.")
        return None
    for note in notes:
        st.info(note)
    return ImageInput(image, sha, name, list(notes))


def image_input(key_prefix: str = "explore.") -> ImageInput | None:
    """The input chooser; returns the chosen image or None (nothing chosen yet, or an error was shown)."""
    source = st.radio("Image", SOURCES, horizontal=True, key=f"{key_prefix}source", label_visibility="collapsed")
    if source == SOURCES[0]:
        names = example_names()
        if not names:
            st.error(f"No example photos in {EXAMPLES_DIR}; upload an image instead.")
            return None
        cols = st.columns(len(names))
        for col, n in zip(cols, names):
            col.image(_thumbnail(n), caption=n)
        default = names.index("cat") if "cat" in names else 0
        name = st.radio("Example", names, index=default, horizontal=True, key=f"{key_prefix}example")
        return decode_bytes((EXAMPLES_DIR / f"{name}.png").read_bytes(), f"{name}.png")
    up = st.file_uploader("Upload an image (JPEG, PNG, WebP, BMP, TIFF, or the first frame of a GIF)",
                          type=UPLOAD_TYPES, key=f"{key_prefix}upload")
    if up is None:
        st.caption("No file yet: drop one above, or pick an example photo.")
        return None
    return decode_bytes(up.getvalue(), up.name)
