"""Explore: one image, one model, one method; watch the saliency map converge live (issue 3).

Thin page: inputs (ui.inputs), model (ui.model_picker), parameter widgets from the method's declarations
(ui.params), the job runs in the shared engine's thread (ui.jobs) and is drawn with ui.plots
(figures) and maps (the overlay PNG and raw-map downloads).
"""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from explainers import list_explainers
from models import EXPLAINED_SCORE, explained_view
from explainers.registry import explainer_class
from ui.inputs import image_input
from runtime.estimate import fmt_seconds
from ui.jobs import (budget_line, changed_since_run, draw_history, draw_progress, live_view, request,
                     run_controls, stop_control)
from ui.live import live_map
from ui.model_picker import pick_model
from ui.params import param_widgets, reset_params
from maps import COLORMAPS, npy_bytes, overlay_png
from ui.plots import heatmap_figure

P = "explore."          # widget key prefix
SLOT = "explore"        # job slot in session_state
SCORE_MODES = {"prob": "probability", "logit": "logit", "logprob": "log-probability"}


@st.cache_data(max_entries=64, show_spinner=False)
def top_predictions(model_id: str, input_id: str, _bb, _x, k: int = 5) -> list[tuple[int, str, float]]:
    return _bb.predict(_x, k)


def method_label(name: str) -> str:
    """The method's title, marked once as a white-box reference (the white-box titles already say so)."""
    cls = explainer_class(name)
    title = cls.title or name
    return title + (" (white-box reference)" if cls.white_box and "white-box" not in title.lower() else "")


st.title("Explore")
st.caption("Explain an image classifier by querying it only: pick an image, a model and a method, "
           "then watch the saliency map converge.")

left, right = st.columns([2, 3], gap="large")
with left:
    st.subheader("Image")
    inp = image_input(P)
    st.subheader("Model")
    bb = pick_model(P)

if inp is None or bb is None:
    st.stop()

try:
    x = bb.preprocess(inp.image)
    display = bb.to_display(x)
    preds = top_predictions(bb.id, inp.input_id, bb, x)
except Exception as e:  # a user model that rejects the image: say so, keep the page
    right.error(f"The model could not classify this image ({type(e).__name__}: {e}).")
    st.stop()

with left:
    st.subheader("Target and method")
    labels = bb.labels or [str(i) for i in range(bb.num_classes or 0)]
    top1 = preds[0][0] if preds else 0
    target = st.selectbox("Class to explain (type to search)", range(len(labels)), index=top1,
                          format_func=lambda i: f"{labels[i]}  ·  {i}",
                          key=f"{P}target.{bb.id}.{inp.input_id}",
                          help="Defaults to the model's top-1 class for this image.")
    methods = [m for m in list_explainers(modality="image")
               if bb.is_white_box or not explainer_class(m).white_box]
    method = st.selectbox("Method", methods, index=methods.index("sobol") if "sobol" in methods else 0,
                          format_func=method_label, key=f"{P}method")
    cls = explainer_class(method)
    if cls.paper:
        st.caption(f"{cls.title} — {cls.paper}")
    with st.expander("Parameters", expanded=True):
        params = param_widgets(cls, bb.device, key_prefix=P)
        st.button("Reset to this device's defaults", on_click=reset_params, args=(cls, P), key=f"{P}reset")
    c1, c2 = st.columns(2)
    score_mode = EXPLAINED_SCORE
    if bb.outputs != "scores":
        score_mode = c1.selectbox("Score explained", list(SCORE_MODES), format_func=SCORE_MODES.get,
                                  index=list(SCORE_MODES).index(EXPLAINED_SCORE), key=f"{P}score_mode",
                                  help="The output the method perturbs and reads. The logit is the class's own "
                                       "evidence; the probability also moves when a competing class does, and "
                                       "maps localise worse in it (docs/measurements.md, localisation).")
    seed = int(c2.number_input("Seed", 0, 2**31 - 1, 0, key=f"{P}seed"))

    run_bb = explained_view(bb, score_mode)
    valid = budget_line(run_bb, method, params, seed, x.shape)
    stop = stop_control(P, method)

# Run and the map at the top of the right column: both on screen whatever the number of parameters on the left
with right:
    job = run_controls(SLOT, P, run_bb, x, method, params, target=int(target), seed=seed, input_id=inp.input_id,
                       context=(inp.input_id, run_bb.id), valid=valid, **stop)
    changed = changed_since_run(SLOT, request(method, params, int(target), seed, stop["stop_tol"]))
    map_area = st.container()
    o1, o2 = st.columns(2)
    opacity = o1.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key=f"{P}opacity")
    colormap = o2.selectbox("Colour map", COLORMAPS, key=f"{P}colormap")

    def draw(snap) -> None:
        draw_progress(snap)
        label = labels[snap.target] if snap.target is not None and snap.target < len(labels) else snap.target
        title = f"{method_label(snap.method)} · {label}"
        if snap.from_cache:
            took = snap.original_elapsed
            st.success("Served from cache: this exact request was computed before"
                       + (f" (it took {fmt_seconds(took)})." if took else "."))
        if snap.error:
            (st.warning if snap.status == "stopped" else st.error)(snap.error)
        if not snap.finished:   # while it streams: one image, redrawn only when the map changed visibly
            live_map(snap.job_id, display, snap.saliency, opacity=opacity, colormap=colormap, caption=title)
        else:
            st.plotly_chart(heatmap_figure(display, snap.saliency, opacity=opacity, colormap=colormap, title=title),
                            width="stretch", config={"displaylogo": False})
        if snap.first_estimate_s is not None and not snap.from_cache:
            st.caption(f"First estimate after {fmt_seconds(snap.first_estimate_s)}.")
        draw_history(snap)
        if snap.finished and snap.saliency is not None:
            record = {**snap.record(), "target_label": label, "input": {"name": inp.name, "sha256": inp.input_id},
                      "first_estimate_s": snap.first_estimate_s}
            stem = f"{snap.method}-{snap.key[:8]}"
            d1, d2, d3 = st.columns(3)
            d1.download_button("Overlay PNG", overlay_png(display, snap.saliency, opacity=opacity,
                                                          colormap=colormap),
                               f"{stem}.png", "image/png", on_click="ignore", key=f"{P}dl_png")
            d2.download_button("Raw map (.npy)", npy_bytes(snap.saliency), f"{stem}.npy",
                               "application/octet-stream", on_click="ignore", key=f"{P}dl_npy")
            d3.download_button("Run record (JSON)", json.dumps(record, indent=2, default=str), f"{stem}.json",
                               "application/json", on_click="ignore", key=f"{P}dl_json")

    with map_area:
        if job is not None and changed and job.snapshot().finished:
            # the shown map belongs to other settings: say so, and keep it out of the way until the next run
            st.info("The settings changed since the last run (" + "; ".join(changed) + "). Press **Run** to "
                    "compute the map for the current settings.")
            st.plotly_chart(heatmap_figure(display, None, title=f"{inp.name} as {bb.name} sees it"), width="stretch")
            if job.snapshot().saliency is not None:
                with st.expander("Last run's map (other settings)"):
                    st.image(overlay_png(display, job.snapshot().saliency, opacity=opacity, colormap=colormap),
                             width=224)
        elif job is not None:
            live_view(job, draw)
        else:
            st.plotly_chart(heatmap_figure(display, None, title=f"{inp.name} as {bb.name} sees it"), width="stretch")
            st.caption("Press Run to compute a saliency map; estimates appear as they arrive.")
    # a chat model's classes are its candidate answers (two or more): the table shows all of them
    st.markdown("**Candidate answers**" if bb.meta.get("chat") else "**Top-5 predictions**")
    st.dataframe(pd.DataFrame([(lab, i, p) for i, lab, p in preds], columns=["class", "index", "probability"]),
                 hide_index=True, column_config={"probability": st.column_config.ProgressColumn(
                     "probability", min_value=0.0, max_value=1.0, format="%.3f")})
