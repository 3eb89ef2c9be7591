"""Audio: explain a sound classifier on its log-mel spectrogram, and listen to what the map keeps (issue 6).

Thin page: the clip (ui.audio), the model's front end (models.audio.AudioFrontend) turns it into the (1, F, T)
spectrogram the methods perturb; jobs, parameter widgets and the heatmap come from the Explore page's helpers.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from explainers import list_explainers
from evaluation.metrics import iou
from explainers.registry import explainer_class
from models import list_models
from ui.audio import audio_input, keep_mask, spectrogram_axes, wav_bytes, waveform_figure
from ui.jobs import budget_line, draw_history, draw_progress, live_view, run_controls, stop_control
from ui.params import param_widgets
from maps import COLORMAPS, npy_bytes
from ui.plots import heatmap_figure
from ui.state import get_model

P = "audio."
SLOT = "audio"

st.title("🔊 Audio")
st.caption("Explain a sound classifier by querying it only: the methods perturb the log-mel spectrogram; "
           "then listen to what the map keeps and to what it removes.")

models = list_models(modality="audio")
if not models:
    st.error("No audio model is installed.")
    st.stop()
left, right = st.columns([2, 3], gap="large")
with left:
    model_name = st.selectbox("Model", models, key=f"{P}model")
    try:
        bb = get_model(model_name)
    except Exception as e:  # missing weights or a broken file: say so, keep the app
        st.error(f"The model {model_name!r} could not be loaded ({type(e).__name__}: {e}).")
        st.stop()
    frontend = bb.meta["frontend"]
    st.subheader("Clip")
    inp = audio_input(frontend, P)
if inp is None:
    st.stop()
for note in inp.notes:
    left.info(note)
for warning in inp.warnings:
    left.warning(warning, icon="⚠️")

x = frontend.spectrogram(inp.wave).cpu()
spec = bb.to_display(x)
preds = bb.predict(x, 5)
labels = bb.labels

with left:
    st.audio(wav_bytes(inp.wave, inp.sample_rate), format="audio/wav")
    st.plotly_chart(waveform_figure(inp.wave, inp.sample_rate), width="stretch")
    st.markdown("**Top predictions**")
    st.dataframe(pd.DataFrame([(lab, i, p) for i, lab, p in preds], columns=["class", "index", "probability"]),
                 hide_index=True)
    target = st.selectbox("Class to explain", range(len(labels)), index=preds[0][0],
                          format_func=lambda i: f"{labels[i]} · {i}", key=f"{P}target.{inp.input_id}")
    methods = [m for m in list_explainers(modality="audio") if bb.is_white_box or not explainer_class(m).white_box]
    method = st.selectbox("Method", methods, index=methods.index("dax") if "dax" in methods else 0,
                          format_func=lambda m: explainer_class(m).title or m, key=f"{P}method")
    cls = explainer_class(method)
    st.caption(f"{cls.title} — {cls.paper}")
    with st.expander("Parameters", expanded=True):
        params = param_widgets(cls, bb.device, key_prefix=P)
    seed = int(st.number_input("Seed", 0, 2**31 - 1, 0, key=f"{P}seed"))
    valid = budget_line(bb, method, params, seed, x.shape)
    stop = stop_control(P, method)
    job = run_controls(SLOT, P, bb, x, method, params, target=int(target), seed=seed, input_id=inp.input_id,
                       context=(inp.input_id, bb.id), valid=valid, **stop)

with right:
    o1, o2, o3 = st.columns(3)
    opacity = o1.slider("Overlay opacity", 0.0, 1.0, 0.55, 0.05, key=f"{P}opacity")
    colormap = o2.selectbox("Colour map", COLORMAPS, index=COLORMAPS.index("inferno"), key=f"{P}colormap")
    keep = o3.slider("Listen to the top", 0.05, 1.0, 0.2, 0.05, format="%.2f", key=f"{P}keep",
                     help="Fraction of the spectrogram's time-frequency cells the map keeps when you listen.")

    def draw(snap) -> None:
        draw_progress(snap)
        if snap.from_cache:
            st.success("Served from cache: this exact request was computed before.")
        if snap.error:
            (st.warning if snap.status == "stopped" else st.error)(snap.error)
        st.plotly_chart(spectrogram_axes(heatmap_figure(
            spec, snap.saliency, opacity=opacity, colormap=colormap,
            title=f"{cls.title} · {labels[snap.target] if snap.target is not None else ''}"), frontend),
            width="stretch")
        draw_history(snap)
        if not snap.finished or snap.saliency is None:
            return
        mask = keep_mask(snap.saliency, keep)
        kept = frontend.apply_mask(inp.wave, mask.astype(np.float32))
        removed = frontend.apply_mask(inp.wave, (~mask).astype(np.float32))
        a1, a2 = st.columns(2)
        a1.markdown(f"**Only what the map keeps** (top {keep:.0%})")
        a1.audio(wav_bytes(kept, inp.sample_rate), format="audio/wav")
        a2.markdown("**What the map removes**")
        a2.audio(wav_bytes(removed, inp.sample_rate), format="audio/wav")
        if inp.truth is not None:
            score = iou(snap.saliency, inp.truth)
            st.metric("IoU with the ground-truth event mask (map ≥ 0.2 after min-max)", f"{score:.3f}",
                      help=f"Bundled clip of a {inp.truth_label}: the mask marks where the event's energy is.")
        d1, d2 = st.columns(2)
        stem = f"{snap.method}-{snap.key[:8]}"
        d1.download_button("Raw map (.npy)", npy_bytes(snap.saliency), f"{stem}.npy", "application/octet-stream",
                           on_click="ignore", key=f"{P}dl_npy")
        d2.download_button("Run record (JSON)", json.dumps({**snap.record(), "input": inp.name}, indent=2,
                                                           default=str),
                           f"{stem}.json", "application/json", on_click="ignore", key=f"{P}dl_json")

    if job is not None:
        live_view(job, draw)
    else:
        st.plotly_chart(spectrogram_axes(heatmap_figure(
            spec, inp.truth.astype(np.float32) if inp.truth is not None else None, opacity=0.35,
            colormap="viridis", title="Log-mel spectrogram" + (" with the ground-truth mask"
                                                              if inp.truth is not None else "")), frontend),
            width="stretch")
        st.caption("Press Run to compute a saliency map over the spectrogram; estimates appear as they arrive.")
