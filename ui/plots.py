"""Figures: the saliency overlay (Plotly, interactive), convergence and live metric curves. The overlay PNG and
the raw-map downloads come from ``maps`` (the same rendering as the Compare ZIP)."""
from __future__ import annotations

import base64
import io
import math
import textwrap
from typing import Iterable, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from PIL import Image

from explainers import explainer_class
from maps import COLORMAPS, resize

HISTORY_AXES = ("queries", "elapsed", "rel_change")
__all__ = ["COLORMAPS", "convergence_figure", "heatmap_figure", "jpeg_data_uri", "metric_names", "metric_specs",
           "metrics_figure"]


def jpeg_data_uri(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="JPEG", quality=92)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


LEGEND_CHARS = 34      # fits half of Explore's right column at 1440 px (about 270 px), at 11 px


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


def metric_specs(method: str | None) -> dict:
    """``{key: Metric}`` as ``method`` declares its diagnostics (``Explainer.metric_specs``); {} for an unknown
    method or none (its keys are then shown as they are)."""
    cls = _method_class(method)
    return {m.key: m for m in cls.metric_specs} if cls else {}


def metrics_figure(history: Sequence[dict], names: Sequence[str] | None = None, height: int = 260, *,
                   method: str | None = None) -> go.Figure:
    """Each live diagnostic of ``method`` against queries, labelled with its name and unit (as the method
    declares them in ``metric_specs``; an undeclared key is shown as it is, without a unit). Diagnostics in
    different units get a panel each, stacked, so no axis mixes units; the y axis names the unit."""
    names = list(names) if names is not None else metric_names(history)
    specs = metric_specs(method)
    groups: dict[str, list[str]] = {}                       # unit -> keys, in the order first reported
    for name in names:
        groups.setdefault(specs[name].unit if name in specs else "", []).append(name)
    rows = max(1, len(groups))
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.08 if rows > 1 else 0.0)
    for row, (unit, keys) in enumerate(groups.items(), start=1):
        for name in keys:
            spec = specs.get(name)
            label, scale = (spec.label, spec.scale) if spec else (name, 1.0)
            pts = [(h["queries"], h[name] * scale) for h in history if isinstance(h.get(name), (int, float))]
            fig.add_trace(go.Scatter(x=[q for q, _ in pts], y=[v for _, v in pts], mode="lines",
                                     name=wrap_legend(spec.title() if spec else name),
                                     hovertemplate=f"%{{x}} queries<br>{label}: %{{y:.4g}} {unit}<extra></extra>"),
                          row=row, col=1)
        # the axis says the unit (the legend says what each line is); without a unit, what the lines are
        axis = unit or " / ".join(specs[k].label if k in specs else k for k in keys)
        fig.update_yaxes(title_text=axis, title_font_size=11, row=row, col=1)
    fig.update_xaxes(title_text="queries", row=rows, col=1)
    cls_title = _method_title(method)
    fig.update_layout(title=f"{cls_title} diagnostics" if cls_title else "Method diagnostics",
                      height=height + 120 * (rows - 1), margin=dict(l=0, r=8, t=30, b=0),
                      # one entry per line, wrapped: a long diagnostic name in a horizontal legend ran past
                      # the half-width column's right edge and was cut off
                      legend=dict(orientation="h", entrywidth=1, entrywidthmode="fraction", x=0, xanchor="left",
                                  font=dict(size=11),
                                  y=-0.3 if rows == 1 else -0.2, yanchor="top"), showlegend=True)
    return fig


def wrap_legend(text: str, width: int = LEGEND_CHARS) -> str:
    """A legend entry broken into lines of at most ``width`` characters (Plotly never wraps legend text)."""
    return "<br>".join(textwrap.wrap(text, width)) or text


def _method_class(method: str | None):
    """The registered explainer class of ``method``, or None (no method, or one the registry does not know)."""
    try:
        return explainer_class(method) if method else None
    except KeyError:
        return None


def _method_title(method: str | None) -> str:
    """The short name a title starts with ("LR", "DE-CAM", "RISE"), or "" for an unknown method."""
    cls = _method_class(method)
    if cls is None:
        return ""
    return cls.title.split()[0] if cls.title else method
