"""The converging map on screen, cheaply: one JPEG per redraw while a run streams, redrawn only when the map
has changed enough to see; the interactive Plotly figure (hover values) once the run is over.

A Plotly heatmap of 50,176 cells, rebuilt on the server and redrawn by the browser at every tick, cost more
than the run it showed (issue 12); an image of a few tens of kB that the browser only decodes costs little, and
the same bytes drawn again are the same media URL, so the browser does not even fetch them again.
"""
from __future__ import annotations

import io

import numpy as np
import streamlit as st
from PIL import Image

from maps import normalise, overlay_image

VISIBLE_CHANGE = 0.02   # relative change of the min-max normalised map under which the last image is kept
SHOWN_PX = 448          # the image is drawn at this size (the model's 224 px doubled, smoothly)


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def overlay_jpeg(job_id: str, background: np.ndarray, saliency: np.ndarray, *, opacity: float,
                 colormap: str) -> bytes:
    """The overlay as JPEG bytes, made again only when the map moved visibly since the last one made for this
    job (or the look changed); kept in the session, one job at a time."""
    look = (job_id, round(opacity, 3), colormap)
    last = st.session_state.get("_live_overlay")
    shown = normalise(np.asarray(saliency, dtype=np.float32))
    if last is not None and last["look"] == look:
        ref = last["map"]
        change = float(np.linalg.norm(shown - ref) / max(float(np.linalg.norm(ref)), 1e-12))
        if change < VISIBLE_CHANGE:
            return last["jpeg"]
    img = overlay_image(background, saliency, opacity=opacity, colormap=colormap)
    scale = SHOWN_PX / max(img.size)
    if scale > 1:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
    data = _jpeg(img)
    st.session_state["_live_overlay"] = {"look": look, "map": shown, "jpeg": data}
    return data


def live_map(job_id: str, background: np.ndarray, saliency: np.ndarray | None, *, opacity: float, colormap: str,
             caption: str) -> None:
    """The streaming map as one image (or the input alone before the first estimate)."""
    if saliency is None:
        st.image(Image.fromarray(np.asarray(background)[..., :3]) if np.asarray(background).ndim == 3
                 else normalise(np.asarray(background))[::-1], width=SHOWN_PX, caption=caption)
        return
    st.image(overlay_jpeg(job_id, background, saliency, opacity=opacity, colormap=colormap), width=SHOWN_PX,
             caption=caption)
