"""Process-wide resources shared by every session: loaded models and the engine (st.cache_resource)."""
from __future__ import annotations

import streamlit as st
import torch

from runtime.engine import Engine, default_engine
from models import BlackBox, device_name, load_model, pick_device
from models.backends import interactive_threads


@st.cache_resource(show_spinner="Loading the model…")
def get_model(name: str, device: str | None = None) -> BlackBox:
    """One loaded model per (name, device) for all sessions; explainers use ``bb.view()`` for own counters."""
    return load_model(name, device=device, threads=interactive_threads())


@st.cache_resource
def get_engine() -> Engine:
    return default_engine()


def current_device() -> torch.device:
    return pick_device(st.session_state.get("device_choice") or None)


def describe_device() -> str:
    return device_name(current_device())
