"""Participant page: consent, instructions, one trial per screen with progress; resumes from ?study=CODE&token=...

Each answer is saved at once (one transaction, idempotent per trial). The page only ever reads this
participant's own next trial: no methods, no other answers, no results, no other studies. A closed, ended or
full study shows why instead (a participant who already finished still sees their thanks). Every refusal
(a bad link, a value the repository's validation refuses, a study closed meanwhile) is a StudyError shown with
st.error, never a traceback.
"""
from __future__ import annotations

import io

import numpy as np
import streamlit as st
from PIL import Image

from study import StudyError
from study.validate import MAX_COMMENT
from maps import overlay_image
from ui.study import study_repo

P = "study_participant."
SCALE = {1: "1 - not at all", 2: "2", 3: "3", 4: "4", 5: "5 - very well"}


def _overlay(view) -> Image.Image:
    bg = np.asarray(Image.open(io.BytesIO(view.image_png)).convert("RGB"))
    return overlay_image(bg, view.saliency, opacity=0.5)


def _original(view) -> Image.Image:
    return Image.open(io.BytesIO(view.image_png)).convert("RGB")


repo = study_repo()
code = st.query_params.get("study")
token = st.query_params.get("token")

if not code:
    st.title("🙋 Take part in a study")
    st.info("Open the study link you were given: it ends with `?study=` and a code.")
    st.stop()

try:
    info = repo.public_info(code)
except StudyError as e:
    st.error(f"{e} Please check the link you were given.")
    st.stop()

st.title(info["title"])


def closed_page(message: str, *, joined: bool) -> None:
    st.warning(message, icon=":material/lock:")
    if joined:
        st.caption("The answers you gave are saved.")
    st.stop()


if not token:
    if not info["accepts_joins"]:
        closed_page(info["message"], joined=False)
    st.subheader("Consent")
    st.markdown("This study asks for your opinion of pictures that explain an image classifier. "
                "It takes a few minutes. We store only your answers (no name, no e-mail). You may stop at any "
                "time; your progress is kept in this page's address, so you can come back to it.")
    st.subheader("Instructions")
    st.markdown(info["instructions"] or "Answer each screen, then press **Submit**.")
    agree = st.checkbox("I have read the above and agree to take part.", key=P + "agree")
    if st.button("Start the study", type="primary", disabled=not agree, key=P + "start"):
        try:
            token = repo.join(code)
            repo.consent(code, token)
        except StudyError as e:
            st.error(str(e))
            st.stop()
        st.query_params["token"] = token          # resume after a reload: the token stays in the URL
        st.rerun()
    st.stop()

try:
    state = repo.participant_state(code, token)
    if not state.done and not info["accepts_answers"]:
        closed_page(info["message"], joined=True)
    if not state.consented:
        repo.consent(code, token)
    trial = repo.next_trial(code, token)
except StudyError as e:
    st.error(str(e))
    st.stop()

if trial is None:
    st.progress(1.0, f"{state.total} of {state.total} answered")
    st.success("Thank you! All your answers are saved. You can close this page.")
    st.balloons()
    st.stop()

st.progress(trial.position / trial.total, f"Screen {trial.position + 1} of {trial.total}")
st.caption("Keep this page's address to continue later.")

with st.form(f"{P}trial_{trial.trial_id}", clear_on_submit=False):
    rating = choice = None
    if trial.kind == "likert":
        st.markdown(f"**{info['question']}**")
        c1, c2 = st.columns(2)
        c1.image(_original(trial.left), caption="Photo", width="stretch")
        c2.image(_overlay(trial.left), caption="Highlighted regions", width="stretch")
        rating = st.radio("Your rating", list(SCALE), format_func=SCALE.get, index=None, horizontal=True,
                          key=f"{P}rating_{trial.trial_id}")
    else:
        st.markdown("**Which map explains the model's decision better?**")
        c0, c1, c2 = st.columns(3)
        c0.image(_original(trial.left), caption="Photo", width="stretch")
        c1.image(_overlay(trial.left), caption="Map A", width="stretch")
        c2.image(_overlay(trial.right), caption="Map B", width="stretch")
        side = st.radio("Your choice", ["Map A", "Map B"], index=None, horizontal=True,
                        key=f"{P}choice_{trial.trial_id}")
        if side is not None:
            # screen side -> stored choice (0: the trial's stimulus a, 1: b); a swapped screen shows b on the left
            choice = (side == "Map B") ^ trial.swapped
    comment = st.text_input("Comment (optional)", max_chars=MAX_COMMENT, key=f"{P}comment_{trial.trial_id}") \
        if info["ask_comment"] else ""
    submitted = st.form_submit_button("Submit", type="primary")

if submitted:
    if rating is None and choice is None:
        st.error("Please choose an answer before submitting.")
    else:
        try:
            repo.save_response(code, token, trial.trial_id, rating=rating,
                               choice=None if choice is None else int(choice), comment=comment)
        except StudyError as e:
            st.error(str(e))
            st.stop()
        st.rerun()
