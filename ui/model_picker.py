"""Model chooser: a registered model, an uploaded TorchScript or ONNX file, a remote HTTP endpoint, or a
vision-language model behind an OpenAI-compatible chat API (``ui.chat``).

Loaded models are process-wide (``st.cache_resource``): every session shares one copy, and each job queries
it through its own ``bb.view()`` counter.
"""
from __future__ import annotations

import hashlib
import inspect

import streamlit as st

from models import BlackBox, ModelLoadError, list_models, load_onnx, load_torchscript, model_info
from models.backends import interactive_threads
from ui.state import current_device, get_model

SOURCES = ("Bundled model", "TorchScript file", "ONNX file", "Remote endpoint (HTTP)", "Vision-language API")


@st.cache_resource(max_entries=4, show_spinner="Loading the TorchScript model…")
def _torchscript(sha: str, _raw: bytes, shape: tuple[int, int, int], labels: tuple[str, ...] | None,
                 outputs: str, device: str) -> BlackBox:
    return load_torchscript(_raw, shape, list(labels) if labels else None, outputs=outputs, device=device,
                            threads=interactive_threads())


@st.cache_resource(max_entries=4, show_spinner="Loading the ONNX model (timing its thread count and batch size)…")
def _onnx(sha: str, _raw: bytes, shape: tuple[int, int, int], labels: tuple[str, ...] | None,
          outputs: str, device: str) -> BlackBox:
    return load_onnx(_raw, labels=list(labels) if labels else None, outputs=outputs, open_sizes=shape,
                     threads=interactive_threads())


# per file kind: (label, uploader types, key infix, loader, what the declared size means)
_FILE_KINDS = {
    "TorchScript file": ("TorchScript model (torch.jit.save)", ["pt", "pth", "ts", "zip"], "ts", _torchscript,
                         "Inputs are resized to the declared size and normalised with ImageNet mean and std."),
    "ONNX file": ("ONNX model (torch.onnx.export, tf2onnx, …)", ["onnx"], "onnx", _onnx,
                  "The input size, layout and batch axis are read from the file; the size here fills only what the "
                  "file leaves open. Inputs are normalised with ImageNet mean and std; ONNX Runtime serves it."),
}


def _file_form(key_prefix: str, kind: str) -> BlackBox | None:
    label, types, infix, loader, caption = _FILE_KINDS[kind]
    up = st.file_uploader(label, type=types, key=f"{key_prefix}{infix}_file")
    c, h, w = st.columns(3)
    shape = (int(c.number_input("channels", 1, 16, 3, key=f"{key_prefix}{infix}_c")),
             int(h.number_input("height", 8, 2048, 224, key=f"{key_prefix}{infix}_h")),
             int(w.number_input("width", 8, 2048, 224, key=f"{key_prefix}{infix}_w")))
    outputs = st.selectbox("The model returns", ["logits", "probs", "scores"], key=f"{key_prefix}{infix}_outputs")
    labels_text = st.text_area("Class labels, one per line (optional)", key=f"{key_prefix}{infix}_labels", height=100)
    labels = tuple(ln.strip() for ln in labels_text.splitlines() if ln.strip()) or None
    if up is None:
        st.caption(caption)
        return None
    raw = up.getvalue()
    try:
        bb = loader(hashlib.sha256(raw).hexdigest(), raw, shape, labels, outputs, str(current_device()))
    except ModelLoadError as e:
        st.error(f"**{up.name}**: {e}")
        return None
    except Exception as e:  # keep the page alive whatever torch or ONNX Runtime raises
        st.error(f"**{up.name}** could not be loaded ({type(e).__name__}: {e}).")
        return None
    if bb.backend_note:
        st.caption(f"Input {' x '.join(map(str, bb.input_shape))}; {bb.backend_note}.")
    return bb


def _remote_form(key_prefix: str) -> BlackBox | None:
    try:
        from ui.remote import remote_endpoint_form
    except ImportError:
        st.info("Remote endpoints are not available in this build yet.")
        return None
    takes_prefix = "key_prefix" in inspect.signature(remote_endpoint_form).parameters
    return remote_endpoint_form(key_prefix=key_prefix) if takes_prefix else remote_endpoint_form()


def pick_model(key_prefix: str = "explore.", modality: str = "image") -> BlackBox | None:
    """The model chooser; returns a shared BlackBox or None (nothing usable chosen; the reason is shown)."""
    source = st.radio("Model source", SOURCES, horizontal=True, key=f"{key_prefix}model_source")
    if source in _FILE_KINDS:
        return _file_form(key_prefix, source)
    if source == SOURCES[3]:
        return _remote_form(key_prefix)
    if source == SOURCES[4]:
        from ui.chat import chat_model_form
        return chat_model_form(key_prefix)
    names = list_models(modality=modality)
    if not names:
        st.error(f"No {modality} model is registered.")
        return None
    name = st.selectbox("Model", names, key=f"{key_prefix}model",
                        format_func=lambda n: f"{n} — {model_info(n).description}" if model_info(n).description else n)
    try:
        bb = get_model(name, str(current_device()))
    except Exception as e:
        st.error(f"Model {name!r} could not be loaded ({type(e).__name__}: {e}).")
        return None
    st.caption(f"Queries served by {bb.backend_note or bb.backend}.")
    return bb
