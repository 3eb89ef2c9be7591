"""Figures: the saliency overlay (Plotly, interactive), convergence and live metric curves. The overlay PNG and
the raw-map downloads come from ``maps`` (the same rendering as the Compare ZIP)."""
from __future__ import annotations

import base64
import io
import math
from typing import Iterable, Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from maps import COLORMAPS, resize

HISTORY_AXES = ("queries", "elapsed", "rel_change")
__all__ = ["COLORMAPS", "convergence_figure", "heatmap_figure", "jpeg_data_uri", "metric_names", "metrics_figure"]


def jpeg_data_uri(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="JPEG", quality=92)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def heatmap_figure(background: np.ndarray, saliency: np.ndarray | None, *, opacity: float = 0.5,
                   colormap: str = "jet", title: str | None = None, height: int = 460,
                   max_cells: int = 112) -> go.Figure:
    """The map over the image (H, W, 3 uint8) or a spectrogram (F, T float, low frequencies at the bottom).

    Hover shows the raw saliency value at each pixel.
    """
    bg = np.asarray(background)
    fig = go.Figure()
    spectrogram = bg.ndim == 2
    if spectrogram:
        fig.add_trace(go.Heatmap(z=bg.astype(np.float32), colorscale="gray", showscale=False, hoverinfo="skip"))
    else:
        # as an embedded JPEG: a few tens of kB per redraw instead of the pixel array as JSON numbers
        fig.add_trace(go.Image(source=jpeg_data_uri(bg[..., :3]), hoverinfo="skip"))
    if saliency is not None:
        # at most ``max_cells`` per side on screen (the PNG/npy downloads keep full resolution): a 224 px map
        # is sent as 112 x 112 block means, a quarter of the bytes per redraw while it converges
        h, w = bg.shape[:2]
        factor = max(1, math.ceil(max(h, w) / max_cells))
        sal = resize(saliency, (h // factor, w // factor), "box")
        fig.add_trace(go.Heatmap(z=sal, x0=(factor - 1) / 2, dx=factor, y0=(factor - 1) / 2, dy=factor,
                                 colorscale=colormap, opacity=opacity, zsmooth=False,
                                 colorbar=dict(title="saliency", thickness=12),
                                 hovertemplate="x=%{x} y=%{y}<br>saliency=%{z:.4g}<extra></extra>"))
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, scaleanchor="x", autorange=True if spectrogram else "reversed")
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=30 if title else 0, b=0), title=title,
                      template="none")  # Streamlit's theme styles it; the default template is ~80 kB per redraw
    return fig


def convergence_figure(history: Sequence[dict], height: int = 260) -> go.Figure:
    """Relative change ||S_t - S_{t-1}|| / ||S_{t-1}|| between successive estimates, against queries (log y)."""
    pts = [(h["queries"], h["rel_change"]) for h in history
           if h.get("rel_change") is not None and math.isfinite(h["rel_change"]) and h["rel_change"] > 0]
    fig = go.Figure(go.Scatter(x=[q for q, _ in pts], y=[r for _, r in pts], mode="lines+markers",
                               hovertemplate="%{x} queries<br>relative change %{y:.3g}<extra></extra>"))
    fig.update_layout(title="Convergence", height=height, margin=dict(l=0, r=0, t=30, b=0),
                      xaxis_title="queries", yaxis_title="relative change", yaxis_type="log")
    return fig


def metric_names(history: Iterable[dict]) -> list[str]:
    """Scalar diagnostics a method reported (e.g. DE-CAM's best fitness), in first-seen order."""
    names: list[str] = []
    for h in history:
        for k, v in h.items():
            if k not in HISTORY_AXES and k not in names and isinstance(v, (int, float)):
                names.append(k)
    return names


def metrics_figure(history: Sequence[dict], names: Sequence[str] | None = None, height: int = 260) -> go.Figure:
    """Each live metric against queries."""
    names = list(names) if names is not None else metric_names(history)
    fig = go.Figure()
    for name in names:
        pts = [(h["queries"], h[name]) for h in history if isinstance(h.get(name), (int, float))]
        fig.add_trace(go.Scatter(x=[q for q, _ in pts], y=[v for _, v in pts], mode="lines", name=name))
    fig.update_layout(title="Method metrics", height=height, margin=dict(l=0, r=0, t=30, b=0),
                      xaxis_title="queries", legend=dict(orientation="h", y=-0.3))
    return fig
