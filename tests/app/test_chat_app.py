"""The Vision-language API source in AppTest against the reference chat server on 127.0.0.1: the form says what a
query costs, the Explore page shows the candidates' probabilities, refuses a run over the spending cap, runs a small
Sobol explanation through the API under a raised cap, and never shows the API key."""
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from models import BlackBox
from models.chat_server import serve_in_thread
from models.images import ImageTransform
from models.zoo import TinyCNN

KEY = "sk-vlm-1618033988-do-not-echo"
LABELS = ["tabby cat", "Egyptian cat", "dog", "red fox", "sports car", "house", "oak tree", "bird", "ship", "frog"]


@pytest.fixture(scope="module")
def server():
    tf = ImageTransform(32, mean=(0.5,) * 3, std=(0.5,) * 3)
    clf = BlackBox(TinyCNN(), labels=LABELS, input_shape=(3, 32, 32), name="tiny_words", outputs="logits",
                   preprocess=tf, meta={"transform": tf}, channels_last=False, batch_size=32)
    with serve_in_thread(clf, api_key=KEY) as srv:
        yield srv


@pytest.fixture()
def key_env(monkeypatch):
    monkeypatch.setenv("VLM_TEST_KEY", KEY)     # AppTest runs in this process: the app's environment
    return "VLM_TEST_KEY"


def shown_text(at: AppTest) -> str:
    parts = []
    for kind in ("markdown", "caption", "error", "info", "warning", "success", "exception", "text", "code"):
        parts += [str(getattr(e, "value", e)) for e in getattr(at, kind)]
    return "\n".join(parts)


def form_script():
    import streamlit as st
    from ui.chat import chat_model_form
    from ui.remote import run_cost_text
    bb = chat_model_form(key_prefix="t.")
    if bb is not None:
        img = __import__("PIL.Image").Image.new("RGB", (40, 40), (200, 30, 30))
        st.markdown(f"answer {bb.view()(bb.preprocess(img)[None]).shape[1]} probabilities")
        st.markdown(run_cost_text(1000))


def test_form_cost_line_and_key_never_shown(server, key_env):
    at = AppTest.from_function(form_script, default_timeout=60)
    # the values before the first run: the form's default URL (port 8001) has no server here
    for name, value in {"url": server.url + "/v1", "key_env": key_env, "image_size": 32, "price_in": 2.5,
                        "price_out": 10.0, "cap": 0.01}.items():
        at.session_state[f"t.chat.{name}"] = value
    at.run()
    assert not at.exception and not at.error, shown_text(at)
    text = shown_text(at)
    assert "Labels: cat, dog, car" in text and "key from $VLM_TEST_KEY" in text
    assert "image 255" in text and "runs over 14 queries are refused" in text
    assert "answer 3 probabilities" in text and "1,000 queries" in text and "0.7075" in text     # 1000 x cost
    assert KEY not in text


def open_page_on_the_api(server, key_env: str, page: str, cap: float) -> AppTest:
    """``views/<page>.py`` with the Vision-language API source filled in before the page first runs (the bundled
    model is never loaded, no 401 from a missing key)."""
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=180)
    at.run()
    for name, value in {"model_source": "Vision-language API", "chat.url": server.url + "/v1",
                        "chat.key_env": key_env, "chat.image_size": 32, "chat.price_in": 2.5, "chat.cap": cap}.items():
        at.session_state[f"{page}.{name}"] = value
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception and not at.error, shown_text(at)
    return at


def test_explore_runs_through_the_vision_language_api(server, key_env):
    at = open_page_on_the_api(server, key_env, "explore", cap=0.01)
    assert "Candidate answers" in shown_text(at)
    table = at.dataframe[0].value
    assert sorted(table["class"]) == ["car", "cat", "dog"] and abs(table["probability"].sum() - 1) < 1e-5
    at.selectbox(key="explore.method").set_value("sobol").run()
    at.slider(key="explore.sobol.grid_size").set_value(2).run()
    at.select_slider(key="explore.sobol.nb_design").set_value(4).run()
    assert "sends at most 20 queries to the endpoint" in shown_text(at)      # 20 x 0.0007 = 0.014 > 0.01
    stats = server.server.config.app.state.stats
    before = stats["requests"]
    at.button(key="explore.run").click().run()
    assert at.error and "spending cap of 0.01" in at.error[0].value
    assert stats["requests"] == before                # refused before any query
    at.number_input(key="explore.chat.cap").set_value(1.0).run()
    at.button(key="explore.run").click().run()
    deadline = time.monotonic() + 60
    while not any("done" in (p.proto.text or "") for p in at.get("progress")):
        assert time.monotonic() - deadline < 0, "the run did not finish: " + shown_text(at)
        time.sleep(0.3)
        at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("20 / 20 queries" in (p.proto.text or "") for p in at.get("progress"))
    assert KEY not in shown_text(at)


def test_compare_runs_and_scores_through_the_vision_language_api(server, key_env):
    """Compare with the chat source: two methods explained and scored through the API, the key never shown."""
    at = open_page_on_the_api(server, key_env, "compare", cap=1.0)
    at.number_input(key="compare.n").set_value(2).run()
    for i, method in enumerate(("sobol", "rise")):
        at.selectbox(key=f"compare.{i}.method").set_value(method).run()
        at.slider(key=f"compare.{i}.{method}.grid_size").set_value(2)
    at.select_slider(key="compare.0.sobol.nb_design").set_value(4)
    at.select_slider(key="compare.1.rise.n_masks").set_value(20)      # a log-scale slider: 20 is one of its steps
    at.checkbox(key="compare.mu").uncheck().run()
    stats = server.server.config.app.state.stats
    before = stats["requests"]
    at.button(key="compare.run").click().run()
    deadline = time.monotonic() + 120
    while not at.download_button:
        assert not at.exception and time.monotonic() < deadline, shown_text(at)
        time.sleep(0.3)
        at.run()
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert {"sobol", "rise"} <= {str(r).split(" ")[0] for r in table.iloc[:, 0]}
    # 20 + 20 explanation queries, the top class and 5 maps x 66 score queries go through the API, less the
    # perturbed images the answer cache has seen already (the curves' shared end points, say)
    assert 200 < stats["requests"] - before <= 41 + 5 * 66 and KEY not in shown_text(at)
