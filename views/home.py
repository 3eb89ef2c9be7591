"""Home: what the app is for, where to start, and the bundled examples one click away.

An example button hands its choice to the page it opens through ``st.session_state`` (``ui.inputs.wanted_key`` for
images, ``ui.audio.wanted_key`` for clips), which that page's input chooser reads once, then ``st.switch_page``.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui.audio import manifest
from ui.audio import wanted_key as wanted_clip_key
from ui.inputs import thumbnail, example_names
from ui.inputs import wanted_key as wanted_image_key

P = "home."
EXPLORE, COMPARE, AUDIO = "views/explore.py", "views/compare.py", "views/audio.py"
CAPTIONS = {"cat": "a cat", "coffee": "a cup of coffee", "rocket": "a rocket", "astronaut": "an astronaut",
            "motorcycle": "a motorcycle"}


def open_with_image(page: str, key_prefix: str, name: str) -> None:
    st.session_state[wanted_image_key(key_prefix)] = name
    st.switch_page(page)


st.title("🔍 Black-box saliency explorer")
st.markdown(
    "Which parts of a photo, or of a sound, made a classifier give its answer? This app explains image and audio "
    "classifiers that you can **only query**, like a closed API: it perturbs the input, reads the scores and "
    "builds a saliency map. It never looks at the model's gradients or weights, so it works the same on a bundled "
    "model, a TorchScript or ONNX file of yours, or a model behind an HTTP endpoint.")
st.markdown(
    "- **Methods:** likelihood-ratio gradient estimation (**LR**), **GEEX** and its path-integrated **iGEEX**, "
    "**DE-CAM** (differential evolution), **DAX** (distillation), **Sobol** indices, and the baselines **RISE** and "
    "**Occlusion**; for open torch models, white-box references (gradient, Integrated Gradients, Grad-CAM) to "
    "compare against.\n"
    "- **Query budgets:** every run says before it starts how many queries it will make and about how long that "
    "takes here.\n"
    "- **Live convergence:** the map is redrawn as the estimate improves; stop it early, or let it stop when it "
    "has converged.\n"
    "- **Comparison with scores:** several methods side by side, scored by deletion, insertion, µ-fidelity, the "
    "pointing game and IoU against maps made without the model, with one ZIP of everything.\n"
    "- **Human studies:** design a study of the maps, send participants a link, read the results.")

st.subheader("Start with an example")
st.caption("Each button opens **Explore** on that photo with the bundled ImageNet model (EfficientNet-Lite0) and "
           "its top class: choose a method and press Run.")
names = example_names()
if not names:
    st.warning("No example photos are installed (assets/examples); the pages take uploads.")
else:
    cols = st.columns(len(names))
    for col, name in zip(cols, names):
        with col:
            st.image(thumbnail(name, 320), width="stretch")
            if st.button(f"Explain {CAPTIONS.get(name, name)}", key=f"{P}explore.{name}", width="stretch"):
                open_with_image(EXPLORE, "explore.", name)

c1, c2 = st.columns(2)
with c1:
    st.markdown("**Compare methods on the cat**: LR, Sobol, RISE and Occlusion side by side, then their scores.")
    if st.button("Open Compare on the cat", key=f"{P}compare"):
        open_with_image(COMPARE, "compare.", "cat" if "cat" in names else (names or [""])[0])
with c2:
    clips = [Path(c["file"]).stem for c in manifest()]
    if clips:
        clip = "chirp" if "chirp" in clips else clips[0]
        st.markdown(f"**Explain a sound**: the bundled sound-event model on a {clip}, on its spectrogram, then "
                    "listen to what the map keeps.")
        if st.button(f"Open Audio on the {clip}", key=f"{P}audio"):
            st.session_state[wanted_clip_key("audio.")] = clip
            st.switch_page(AUDIO)

st.subheader("Where to start")
st.page_link(EXPLORE, label="**Explore**: one input, one model, one method; tune it and watch the map converge.",
             icon="🔍")
st.page_link(COMPARE, label="**Compare**: 2 to 6 methods or settings on one input, scored against controls.",
             icon="⚖️")
st.page_link("views/dataset.py", label="**Dataset**: every image of a ZIP or a folder, several methods, each map "
             "scored; a gallery sortable by score; resumable (the `saliency explain` command's run).", icon="🗂️")
st.page_link(AUDIO, label="**Audio**: explain a sound classifier on its spectrogram and listen to the result.",
             icon="🔊")
st.page_link("views/lab.py", label="**Convergence lab**: how many queries until a query-only gradient estimate "
             "agrees with the true gradient.", icon="📈")
st.page_link("views/study_designer.py", label="**Human studies**: design a study, collect answers, read the "
             "results.", icon="🧪")
st.page_link("views/models_cache.py", label="**Models and cache**: which models load here, on which device, and what "
             "is cached.", icon="🧰")
st.caption("Your own model: in Explore, choose *TorchScript file*, *ONNX file*, *Remote endpoint (HTTP)* or "
           "*Vision-language API* under "
           "Model. The guides are in docs/ (start with docs/guide-explore.md).")
