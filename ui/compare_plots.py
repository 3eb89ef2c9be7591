"""Figures of the Compare page (Plotly, no streamlit): the heatmap grid with linked hover, the deletion /
insertion curves, and the rank-correlation matrix."""
from __future__ import annotations

import base64
import math
from typing import Collection, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from maps import normalise as min_max, png_bytes      # `normalise` is the name of a flag here

HOVER_SIDE = 112   # maps are pooled to at most this many cells per side for display and hover (keeps the page light)
COLS = 3
# Plotly's toolbar (modebar) sits in the top ~30 px of a chart, over the right-hand panel's title when the titles
# sit there too: every figure here keeps its titles in a strip below it.
MODEBAR_PX = 30
TITLE_PX = 24


def _pool(a: np.ndarray, f: int) -> np.ndarray:
    """Mean over f x f blocks (edges cropped to a multiple of f)."""
    if f <= 1:
        return a
    h, w = (a.shape[0] // f) * f, (a.shape[1] // f) * f
    return a[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))


def _data_uri(rgb: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(np.asarray(rgb)[..., :3].astype(np.uint8))).decode()


def display_maps(maps: Mapping[str, np.ndarray | None], shape: tuple[int, int], normalise: bool,
                 side: int = HOVER_SIDE) -> tuple[dict[str, np.ndarray], int]:
    """Pooled maps (missing ones as NaN) in the chosen scale, and the pooling factor."""
    f = max(1, math.ceil(max(shape) / side))
    out = {}
    for label, m in maps.items():
        if m is None:
            out[label] = np.full((shape[0] // f, shape[1] // f), np.nan, dtype=np.float32)
            continue
        p = _pool(np.nan_to_num(np.asarray(m, dtype=np.float32)), f)
        out[label] = min_max(p) if normalise else p
    return out, f


def grid_figure(background: np.ndarray, maps: Mapping[str, np.ndarray | None], *, normalise: bool = True,
                box: Sequence[int] | None = None, colormap: str = "jet", opacity: float = 0.55,
                panel_height: int = 300, side: int = HOVER_SIDE) -> go.Figure:
    """One panel per map over the input, one colour scale for all panels (shared raw values, or each map
    min-max normalised to [0, 1]); hovering a pixel shows that pixel's value in every map."""
    bg = np.asarray(background)
    shape = bg.shape[:2]
    labels = list(maps)
    shown, f = display_maps(maps, shape, normalise, side)
    stack = np.stack([shown[k] for k in labels], axis=-1)                   # (h, w, k): the linked hover
    finite = stack[np.isfinite(stack)]
    zmin, zmax = (0.0, 1.0) if normalise or finite.size == 0 else (float(finite.min()), float(finite.max()))
    if zmax <= zmin:
        zmax = zmin + 1e-12
    rows = math.ceil(len(labels) / COLS) or 1
    cols = min(COLS, max(1, len(labels)))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=labels, horizontal_spacing=0.02, vertical_spacing=0.08)
    uri = _data_uri(bg) if bg.ndim == 3 else None
    lines = "<br>".join(f"{lab}: %{{customdata[{i}]:.4g}}" for i, lab in enumerate(labels))
    template = f"x=%{{x:.0f}} y=%{{y:.0f}}<br>{lines}<extra></extra>"
    for i, lab in enumerate(labels):
        r, c = i // cols + 1, i % cols + 1
        if uri is not None:
            fig.add_trace(go.Image(source=uri, hoverinfo="skip"), row=r, col=c)
        fig.add_trace(go.Heatmap(z=shown[lab], x0=(f - 1) / 2, dx=f, y0=(f - 1) / 2, dy=f, customdata=stack,
                                 coloraxis="coloraxis", opacity=opacity, zsmooth=False, hovertemplate=template,
                                 name=lab), row=r, col=c)
        if box is not None:
            x0, y0, x1, y1 = box
            fig.add_shape(type="rect", x0=x0 - 0.5, y0=y0 - 0.5, x1=x1 - 0.5, y1=y1 - 0.5,
                          line=dict(color="white", width=2, dash="dash"), row=r, col=c)
    fig.update_xaxes(visible=False, constrain="domain", range=[-0.5, shape[1] - 0.5])
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", constrain="domain")
    for i in range(2, rows * cols + 1):   # every panel keeps the image's aspect ratio
        fig.update_yaxes(scaleanchor=f"x{i}", row=(i - 1) // cols + 1, col=(i - 1) % cols + 1)
    fig.update_layout(height=panel_height * rows + MODEBAR_PX,
                      margin=dict(l=0, r=0, t=MODEBAR_PX + TITLE_PX, b=0),
                      coloraxis=dict(colorscale=colormap, cmin=zmin, cmax=zmax,
                                     colorbar=dict(title="normalised" if normalise else "saliency", thickness=12)))
    return fig


def _title_below_toolbar(text: str) -> dict:
    """A chart title just above the plot area, under the toolbar's strip (needs ``margin.t >= MODEBAR_PX +
    TITLE_PX``)."""
    return dict(text=text, x=0, xref="paper", xanchor="left", y=1, yref="paper", yanchor="bottom", pad=dict(b=6))


def curves_figure(curves: Mapping[str, Mapping], height: int = 360, controls: Collection[str] = ()) -> go.Figure:
    """Deletion (dashed) and insertion (solid) curves of every run, one colour per run; the runs named in
    ``controls`` in greys, thinner (reference lines, not methods)."""
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    greys = ["#7f7f7f", "#b0b0b0", "#4d4d4d", "#999999"]
    fig = go.Figure()
    i_run = i_ctl = 0
    for label, s in curves.items():
        if label in controls:
            colour, width = greys[i_ctl % len(greys)], 1.2
            i_ctl += 1
        else:
            colour, width = palette[i_run % len(palette)], 2.0
            i_run += 1
        for kind, dash in (("deletion", "dash"), ("insertion", "solid")):
            y = s.get(f"{kind}_curve")
            if y is None:
                continue
            auc = s.get(f"{kind}_auc")
            fig.add_trace(go.Scatter(x=s["fractions"], y=y, mode="lines",
                                     line=dict(color=colour, dash=dash, width=width),
                                     name=f"{label} {kind}" + (f" (AUC {auc:.3f})" if auc is not None else ""),
                                     legendgroup=label))
    fig.update_layout(height=height + 30 * len(curves) + MODEBAR_PX,
                      margin=dict(l=0, r=0, t=MODEBAR_PX + TITLE_PX, b=0),
                      title=_title_below_toolbar("Deletion (dashed) and insertion (solid)"),
                      xaxis_title="fraction of pixels changed", yaxis_title="score of the explained class",
                      legend=dict(font=dict(size=10), orientation="h", yanchor="top", y=-0.3))
    return fig


def correlation_figure(labels: Sequence[str], matrix: np.ndarray, height: int = 360) -> go.Figure:
    """Spearman rank correlation between the maps, annotated."""
    m = np.asarray(matrix)
    fig = go.Figure(go.Heatmap(z=m, x=list(labels), y=list(labels), zmin=-1, zmax=1, colorscale="RdBu",
                               reversescale=True, text=np.round(m, 2), texttemplate="%{text}",
                               hovertemplate="%{y} vs %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(height=height + MODEBAR_PX, margin=dict(l=0, r=0, t=MODEBAR_PX + TITLE_PX, b=0),
                      title=_title_below_toolbar("Spearman rank correlation"),
                      yaxis=dict(autorange="reversed"))
    return fig
