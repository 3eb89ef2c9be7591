"""Study designer (admin): inputs x methods -> maps computed by the engine, frozen into a study; the link."""
from __future__ import annotations

import streamlit as st
from PIL import Image

from explainers import list_explainers
from explainers.registry import explainer_class
from models import list_models
from study import StudyError
from study.design import compute_stimuli
from study.validate import MAX_INSTRUCTIONS, MAX_PARTICIPANTS, MAX_QUESTION, MAX_TITLE, study_texts
from ui.study import admin_gate, lifecycle_controls, participant_link, study_repo
from ui.inputs import EXAMPLES_DIR, example_names
from ui.params import param_widgets
from ui.state import current_device, get_engine, get_model

P = "study_designer."
DEFAULT_QUESTION = "How well does the highlighted region explain the model's decision?"


def form_problem(title, question, instructions, inputs, methods, likert, pairwise) -> str | None:
    """What is wrong with the form before any map is computed (the texts pass study.validate), or None."""
    try:
        study_texts(title, question, instructions)
    except StudyError as e:
        return str(e)
    if not inputs or not methods:
        return "Choose at least one input image and one method."
    if pairwise and not likert and len(methods) < 2:
        return "A pairwise-only study needs at least two methods."
    return None


st.title("🧪 Study designer")
if not admin_gate(P):
    st.stop()

repo = study_repo()
new_tab, list_tab = st.tabs(["New study", "Studies"])

with new_tab:
    title = st.text_input("Title", "Which saliency maps convince people?", key=P + "title", max_chars=MAX_TITLE)
    question = st.text_area("Question (rating screens)", DEFAULT_QUESTION, key=P + "question",
                            max_chars=MAX_QUESTION)
    instructions = st.text_area(
        "Instructions shown to participants",
        "You will see photos with a coloured map on top: red marks the parts the computer model relied on. "
        "Rate each map, or pick the map that explains better. There are no right or wrong answers.",
        key=P + "instructions", max_chars=MAX_INSTRUCTIONS)
    examples = example_names()
    inputs = st.multiselect("Input images", examples, default=examples[:2], key=P + "inputs")
    model = st.selectbox("Model", list_models(modality="image"), key=P + "model")
    methods = st.multiselect("Methods", list_explainers(modality="image", white_box=False),
                             default=["occlusion", "rise"], key=P + "methods")
    params = {}
    for m in methods:
        with st.expander(f"{explainer_class(m).title} parameters"):
            params[m] = param_widgets(explainer_class(m), current_device(), key_prefix=P)
    c1, c2, c3 = st.columns(3)
    likert = c1.checkbox("Likert rating (1-5)", True, key=P + "likert")
    pairwise = c2.checkbox("Pairwise forced choice", True, key=P + "pairwise")
    ask_comment = c3.checkbox("Optional comment", False, key=P + "comment")
    c1, c2 = st.columns(2)
    checks = c1.number_input("Attention checks per input (shuffled map, should be rated low)", 0, 3, 1,
                             key=P + "checks")
    seed = c2.number_input("Seed (maps and participant orders)", 0, 2**31 - 1, 0, key=P + "seed")
    cap = st.number_input("Participant cap (0 = no cap; a deadline and closing are on the Studies tab)", 0,
                          MAX_PARTICIPANTS, 0, key=P + "cap")
    if st.button("Compute maps and create study", type="primary", key=P + "create"):
        problem = form_problem(title, question, instructions, inputs, methods, likert, pairwise)
        if problem:
            st.error(problem)
        else:
            bar = st.progress(0.0, "Computing maps…")
            try:
                bb = get_model(model, str(current_device()))
                images = [(n, Image.open(EXAMPLES_DIR / f"{n}.png").convert("RGB")) for n in inputs]
                specs = compute_stimuli(bb, images, params, engine=get_engine(), seed=int(seed),
                                        attention_checks=int(checks) if likert else 0,
                                        progress=lambda i, n: bar.progress(i / n, f"Map {i} of {n}"))
                code = repo.create_study(title, specs, question=question, instructions=instructions,
                                         likert=likert, pairwise=pairwise, ask_comment=ask_comment,
                                         seed=int(seed), max_participants=int(cap) or None)
                st.session_state[P + "created"] = code
            except StudyError as e:
                st.error(str(e))
            except Exception as e:      # noqa: BLE001 - a model/engine failure is shown, the app keeps running
                st.error(f"Could not compute the maps: {type(e).__name__}: {e}")
            bar.empty()
    code = st.session_state.get(P + "created")
    if code:
        st.success(f"Study created: `{code}`. Send participants this link:")
        st.code(participant_link(st.context.url, code))

with list_tab:
    studies = repo.list_studies()
    if not studies:
        st.info("No studies yet.")
    else:
        st.dataframe(studies, hide_index=True)
        code = st.selectbox("Study", [s["code"] for s in studies], key=P + "show",
                            format_func=lambda c: next(f"{s['title']} ({c})" for s in studies if s["code"] == c))
        summary = repo.study_summary(code)
        st.caption(f"{summary['trials']} trials per participant. Participant link:")
        st.code(participant_link(st.context.url, code))
        lifecycle_controls(repo, code, P)
        st.dataframe(summary["stimuli"], hide_index=True)
