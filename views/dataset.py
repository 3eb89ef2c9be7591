"""Dataset: explain every image of a ZIP or a server folder with one model and several methods (issue 14).

Thin page: the images and the optional ground truth come from ``ui.dataset.dataset_input``, the run is
``runtime.batch_run.run_batch`` (the ``saliency explain`` command's) in a background thread, resumable by its
settings; the gallery, the table and the downloads are drawn from the rows it writes.
"""
from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from explainers import list_explainers
from explainers.registry import explainer_class
from models import list_models, model_info
from runtime.batch import SCORES
from runtime.batch_inputs import ManifestError
from ui.dataset import (budget_text, build_spec, cached_plan, dataset_input, done_count, gallery, get_run,
                        progress_view, relative_files, results, results_zip, sort_columns, start_run, table_bytes)
from ui.params import param_widgets
from ui.state import current_device, get_model

P = "dataset."
SHOWN = ["file", "method", "target_label", "status", "error", *SCORES, "queries", "seconds"]

st.title("Dataset")
st.caption("Explain every image of a ZIP or a folder: one model, several methods, each map scored, the whole run "
           "resumable. The same run as the `saliency explain` command.")

left, right = st.columns([2, 3], gap="large")
with left:
    st.subheader("Images")
    ds, inputs = dataset_input(P)
    st.subheader("Model and methods")
    name = st.selectbox("Model", list_models(modality="image"), key=P + "model",
                        format_func=lambda n: f"{n} — {model_info(n).description}" if model_info(n).description else n)
    methods = st.multiselect("Methods", list_explainers(modality="image", white_box=False), default=["sobol"],
                             key=P + "methods", format_func=lambda m: explainer_class(m).title or m)
    chosen = []
    for method in methods:
        with st.expander(f"{explainer_class(method).title or method}: parameters"):
            chosen.append((method, param_widgets(explainer_class(method), current_device(), key_prefix=P)))
    c1, c2 = st.columns(2)
    target = c1.text_input("Class to explain", "top1", key=P + "target",
                           help="top1 (each image's top class), a class id or a class name; a ground-truth CSV's "
                                "target column overrides it per image.")
    seed = int(c2.number_input("Seed", 0, 2**31 - 1, 0, key=P + "seed"))
    scores = st.multiselect("Scores", SCORES, default=["deletion", "insertion"], key=P + "scores",
                            help="Deletion and insertion query the model 33 times each per map; pointing and IoU "
                                 "need a box or mask in the ground-truth CSV.")

if inputs is None or not chosen:
    right.info("Choose the images (a ZIP or a folder) and at least one method.")
    st.stop()

bb = get_model(name, str(current_device()))
spec = build_spec(inputs, name, chosen, target=target, seed=seed, scores=scores, device=str(current_device()))
try:
    tasks = cached_plan(json.dumps(spec.to_json(), sort_keys=True, default=str), bb)
except (ManifestError, ValueError, TypeError) as e:
    right.error(str(e))
    st.stop()
out = Path(spec.out)
run = get_run(spec.out)
running = run is not None and run.running

with right:
    st.subheader("Run")
    st.markdown(budget_text(tasks, out, bb, spec.scores, seed))
    done = done_count(tasks, out)
    just_ran = run is not None and run.status == "finished" and st.session_state.get(P + "last_out") == spec.out
    if done and not running and not just_ran:           # after this session's own run, its bar says it
        st.info(f"{done:,} of {len(tasks):,} already done with these settings: "
                + ("every map is below." if done == len(tasks) else "**Run** goes on with the rest."))
    b1, b2 = st.columns(2)
    if b1.button("▶ Run", type="primary", disabled=running, key=P + "run", width="stretch"):
        st.session_state[P + "last_out"] = spec.out
        start_run(spec, bb)
        st.rerun()
    if b2.button("■ Stop", disabled=not running, key=P + "stop", width="stretch"):
        run.stop.set()
    if running and run.stop.is_set():
        st.caption("Stopping after the current map…")
    other = get_run(st.session_state.get(P + "last_out", spec.out))
    if other is not None and other.spec.out != spec.out and other.running:
        st.warning("Your run with other settings is still going.")
        if st.button("Stop it", key=P + "stop_other"):
            other.stop.set()
    if run is not None:
        progress_view(run)
    st.caption(f"Outputs on the server: `{out}`")

table = results(tasks, out)
if running or table.empty:
    st.stop()

st.subheader("Results")
c1, c2, _ = st.columns([2, 1, 3], vertical_alignment="bottom")
by = c1.selectbox("Sort by", sort_columns(table), key=P + "sort",
                  help="Deletion: lower is better (the score falls fast as the top pixels go). Insertion, pointing, "
                       "IoU: higher is better. Sorts the table and the maps below.")
ascending = c2.toggle("Ascending", False, key=P + "ascending")
ordered = relative_files(table, ds.folder).sort_values(by, ascending=ascending, na_position="last", kind="stable")
st.dataframe(ordered[[c for c in SHOWN if c in ordered]], hide_index=True)
failed = ordered[ordered["status"] != "done"]
if not failed.empty:
    st.warning(f"{len(failed):,} failed:\n" + "\n".join(f"- **{r.file}** · {r.method}: {r.error}"
                                                       for r in failed.head(20).itertuples()))
csv_bytes, parquet_bytes = table_bytes(table)
d1, d2, d3 = st.columns(3)
d1.download_button("Results table (CSV)", csv_bytes, "results.csv", "text/csv", on_click="ignore", key=P + "dl_csv")
d2.download_button("Results table (Parquet)", parquet_bytes, "results.parquet", "application/octet-stream",
                   on_click="ignore", key=P + "dl_parquet")
d3.download_button("Results and maps (ZIP)", lambda: results_zip(table, out), f"dataset-{out.name}.zip",
                   "application/zip", on_click="ignore", key=P + "dl_zip")
st.subheader("Maps")
gallery(ordered, out, by)
