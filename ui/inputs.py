"""Image input: a bundled example photo (thumbnails) or an upload decoded safely by ``models.decode_image``.

The input id is the sha256 of the raw bytes, so the engine's cache recognises the same file from any session.
Another page opens a page with an example chosen by setting ``st.session_state[wanted_key(prefix)]`` to the
example's name before ``st.switch_page`` (the Home page's example buttons); ``image_input`` reads it once.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st
from PIL import Image, ImageDraw, ImageFont, ImageOps

from models import ImageDecodeError, decode_image

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"]
# accepted by the uploader only to be refused with a clear message (the browser's own refusal is a hover tooltip)
REFUSED_TYPES = {"svg": "an SVG (vector drawing)", "svgz": "a compressed SVG (vector drawing)"}
SOURCES = ("Example photo", "Upload an image")
THUMB_SIDE = 160     # px: drawn at about twice the width it is shown at, so its label stays sharp


def wanted_key(key_prefix: str) -> str:
    """The session-state key another page sets to open this page's image input on an example photo."""
    return f"{key_prefix}wanted_example"


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
def thumbnail(name: str, side: int = THUMB_SIDE, label: bool = False) -> Image.Image:
    """The example photo centre-cropped to a 4:3 card ``side`` px wide (a row of them lines up). With ``label``,
    its name is drawn on a dark strip at the bottom: a caption under a thumbnail in a narrow column breaks inside
    the word ("astronau/t"); drawn in the image, it shrinks with it."""
    img = ImageOps.fit(Image.open(EXAMPLES_DIR / f"{name}.png").convert("RGB"), (side, side * 3 // 4),
                       Image.Resampling.LANCZOS)
    if label:
        draw = ImageDraw.Draw(img, "RGBA")
        font = ImageFont.load_default(size=max(8, side // 6))
        x0, y0, x1, y1 = draw.textbbox((0, 0), name, font=font)
        strip = (y1 - y0) + side // 16
        draw.rectangle((0, img.height - strip, img.width, img.height), fill=(0, 0, 0, 160))
        draw.text(((img.width - (x1 - x0)) / 2 - x0, img.height - strip / 2 - (y1 + y0) / 2), name, font=font,
                  fill=(255, 255, 255, 255))
    return img


def vector_kind(data: bytes, name: str) -> str | None:
    """What kind of vector file this is (by extension, or an SVG's opening tag under another name), else None."""
    ext = Path(name).suffix.lower().lstrip(".")
    if ext in REFUSED_TYPES:
        return REFUSED_TYPES[ext]
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return REFUSED_TYPES["svg"]
    return None


def decode_bytes(data: bytes, name: str) -> ImageInput | None:
    """Decode or explain why not (st.error), showing conversion notes (st.info). Never raises."""
    kind = vector_kind(data, name)
    if kind is not None:
        st.error(f"**{name}** is {kind}: not supported, the models take pixels. Convert it to PNG (export it "
                 "from your drawing program) and upload the PNG.")
        return None
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


def example_picker(names: list[str], key_prefix: str) -> str:
    """Labelled thumbnails over a radio of the same names, in the same order."""
    cols = st.columns(len(names), gap="xsmall")
    for col, n in zip(cols, names):
        col.image(thumbnail(n, label=True), width="stretch")
    key = f"{key_prefix}example"
    default = names.index("cat") if "cat" in names else 0
    # a value already in session state (set by the wanted-example hand-over) is the selection: no second default
    return st.radio("Example", names, index=None if key in st.session_state else default, horizontal=True, key=key)


def image_input(key_prefix: str = "explore.") -> ImageInput | None:
    """The input chooser; returns the chosen image or None (nothing chosen yet, or an error was shown)."""
    names = example_names()
    wanted = st.session_state.pop(wanted_key(key_prefix), None)
    if wanted in names:   # another page (Home) opened this one on an example: before the widgets are made
        st.session_state[f"{key_prefix}source"] = SOURCES[0]
        st.session_state[f"{key_prefix}example"] = wanted
    source = st.radio("Image", SOURCES, horizontal=True, key=f"{key_prefix}source", label_visibility="collapsed")
    if source == SOURCES[0]:
        if not names:
            st.error(f"No example photos in {EXAMPLES_DIR}; upload an image instead.")
            return None
        name = example_picker(names, key_prefix)
        if name is None:
            return None
        return decode_bytes((EXAMPLES_DIR / f"{name}.png").read_bytes(), f"{name}.png")
    up = st.file_uploader("Upload an image (JPEG, PNG, WebP, BMP, TIFF, or the first frame of a GIF)",
                          type=UPLOAD_TYPES + list(REFUSED_TYPES), key=f"{key_prefix}upload")
    if up is None:
        st.caption("No file yet: drop one above, or pick an example photo.")
        return None
    return decode_bytes(up.getvalue(), up.name)
