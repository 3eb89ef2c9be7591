"""Parameter widgets built from an explainer's ``Param`` declarations (adding a method adds no UI code).

Keys are ``{prefix}{method}.{param}``, so several instances (the Compare page's columns) coexist on one page,
and a method keeps its own values when the user switches to another and back.
"""
from __future__ import annotations

import math
from typing import Any

import streamlit as st

from explainers.base import Explainer, Param


def widget_key(prefix: str, method: str, name: str) -> str:
    return f"{prefix}{method}.{name}"


def _label(p: Param) -> str:
    text = p.label or p.name.replace("_", " ")
    return f"{text} ({p.unit})" if p.unit else text


def powers_of_two(low: float, high: float) -> list[int]:
    lo = max(1, int(math.ceil(low)))
    return [2 ** k for k in range(int(math.ceil(math.log2(lo))), int(math.floor(math.log2(high))) + 1)]


def log_steps(low: float, high: float, integer: bool, include: Any = None) -> list[float]:
    """1-2-5 steps per decade between low and high (and the default), for sliders over orders of magnitude."""
    lo = max(low, 1 if integer else 1e-12)
    vals = set()
    for e in range(int(math.floor(math.log10(lo))), int(math.ceil(math.log10(high))) + 1):
        for m in (1, 2, 5):
            v = m * 10.0 ** e
            if lo <= v <= high:
                vals.add(int(round(v)) if integer else float(f"{v:.6g}"))
    vals.update(v for v in (low, high, include) if v is not None and low <= v <= high)
    return sorted(int(v) if integer else float(v) for v in vals)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def param_widget(p: Param, default: Any, key: str, container=st) -> Any:
    """One widget for one declaration; returns its value (already of the declared kind)."""
    label, help_ = _label(p), p.help or None
    if p.kind == "bool":
        return container.checkbox(label, value=bool(default), help=help_, key=key)
    if p.kind == "str":
        return container.text_input(label, value=str(default), help=help_, key=key)
    if p.kind == "choice":
        choices = list(p.choices or ())
        return container.selectbox(label, choices, index=choices.index(default) if default in choices else 0,
                                   help=help_, key=key)
    integer = p.kind == "int"
    if p.low is None or p.high is None:
        value = container.number_input(label, value=default, step=1 if integer else None, help=help_, key=key)
        return int(value) if integer else float(value)
    if p.power_of_two:
        options = powers_of_two(p.low, p.high)
        return container.select_slider(label, options, value=default if default in options else options[0],
                                       help=help_, key=key)
    if p.log:
        options = log_steps(p.low, p.high, integer, default)
        return container.select_slider(label, options, value=default, format_func=_fmt, help=help_, key=key)
    if integer:
        if p.high - p.low > 2000:  # a slider this wide cannot hit a value; type it instead
            return int(container.number_input(label, int(p.low), int(p.high), int(default), 1, help=help_, key=key))
        return container.slider(label, int(p.low), int(p.high), int(default), int(p.step or 1), help=help_, key=key)
    step = float(p.step) if p.step else float(f"{(p.high - p.low) / 100:.1g}")
    return container.slider(label, float(p.low), float(p.high), float(default), step, format="%.4g",
                            help=help_, key=key)


def param_widgets(explainer: type[Explainer], device=None, key_prefix: str = "", container=st) -> dict[str, Any]:
    """Widgets for every parameter of ``explainer``; defaults from ``Param.default_for(device)``."""
    values: dict[str, Any] = {}
    for p in explainer.param_specs:
        values[p.name] = param_widget(p, p.default_for(device), widget_key(key_prefix, explainer.name, p.name),
                                      container)
    return values


def reset_params(explainer: type[Explainer], key_prefix: str = "") -> None:
    """Forget the widgets' values so the next run shows the device defaults again (use as on_click)."""
    for p in explainer.param_specs:
        st.session_state.pop(widget_key(key_prefix, explainer.name, p.name), None)
