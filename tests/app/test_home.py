"""The Home page in AppTest: the app opens on it, it says what the app is for, and its example buttons open
Explore, Compare and Audio on the example they name."""
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from ui.inputs import example_names, thumbnail

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
METHODS = ("LR", "GEEX", "iGEEX", "DE-CAM", "DAX", "Sobol", "RISE", "Occlusion")


def open_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    return at


def test_the_app_opens_on_home_and_says_what_it_is_for():
    at = open_app()
    assert at.title[0].value.endswith("Black-box saliency explorer")
    text = " ".join(m.value for m in at.markdown)
    assert "only query" in text and "image and audio classifiers" in text
    for method in METHODS:
        assert f"**{method}**" in text, method
    for words in ("Query budgets", "Live convergence", "Comparison with scores", "Human studies"):
        assert words in text, words
    # every bundled example photo is one click from Explore
    example_buttons = [b for b in at.button if b.key and b.key.startswith("home.explore.")]
    assert sorted(b.key.rsplit(".", 1)[1] for b in example_buttons) == sorted(example_names())
    assert len(at.get("page_link")) >= 5                 # where to start: the pages, one line each


def test_an_example_button_opens_explore_on_that_photo():
    at = open_app()
    at.button(key="home.explore.coffee").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Explore"
    assert at.radio(key="explore.source").value == "Example photo"
    assert at.radio(key="explore.example").value == "coffee"
    target = next(s for s in at.selectbox if s.key and s.key.startswith("explore.target."))
    assert target.value == 967                            # espresso: the model's top class for the coffee photo
    # the white-box references are marked once (their titles already say it)
    labels = at.selectbox(key="explore.method").options          # as shown (the format_func applied)
    assert sum("white-box reference" in label for label in labels) == 3, labels   # the bundled torch model
    assert not any(label.count("white-box reference") > 1 for label in labels), labels
    # the hand-over is read once: the next run of Explore keeps the user's own choice
    at.radio(key="explore.example").set_value("rocket").run()
    assert at.radio(key="explore.example").value == "rocket"


def test_compare_and_audio_buttons():
    at = open_app()
    at.button(key="home.audio").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value.endswith("Audio")
    assert at.selectbox(key="audio.ex").value == "chirp.wav"
    at.switch_page("views/home.py").run()
    at.button(key="home.compare").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value.endswith("Compare methods")
    assert at.radio(key="compare.example").value == "cat"


def test_models_and_cache_page_still_opens():
    at = open_app()
    at.switch_page("views/models_cache.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Models and cache"
    assert "efficientnet_lite0" in at.dataframe[0].value["model"].tolist()


@pytest.mark.parametrize("name", ["astronaut", "motorcycle"])
def test_example_thumbnails_carry_their_name_inside_the_picture(name):
    """Captions under thumbnails in narrow columns broke inside the word ("astronau/t"): the name is drawn on
    a dark strip inside the thumbnail instead, the rest of the picture unchanged."""
    plain = np.asarray(thumbnail(name), dtype=np.int16)
    labelled = np.asarray(thumbnail(name, label=True), dtype=np.int16)
    assert plain.shape == labelled.shape and plain.shape[1] == 160 and plain.shape[0] == 120   # a 4:3 card
    changed_rows = np.flatnonzero(np.abs(labelled - plain).sum(axis=(1, 2)))
    assert changed_rows.min() > plain.shape[0] // 2          # only a strip at the bottom
    strip = labelled[changed_rows.min():]
    assert (strip.max(axis=2) > 230).mean() > 0.03           # white letters on it
    # the whole name fits across (no letter column touches the left or right edge)
    letters = np.flatnonzero((strip.min(axis=2) > 230).any(axis=0))
    assert letters.min() > 2 and letters.max() < plain.shape[1] - 3
