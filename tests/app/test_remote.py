"""The remote endpoint form in AppTest against the reference server on 127.0.0.1: connects with a key typed into
the password field, says what a run costs, and never shows the key (not even in the error for a wrong one)."""
import pytest
from streamlit.testing.v1 import AppTest

from models import load_model
from models.serve import serve_in_thread

KEY = "sk-ui-31415926-do-not-echo"


def form_script():
    import streamlit as st
    from ui.remote import remote_endpoint_form, run_cost_text
    bb = remote_endpoint_form(key_prefix="t.")
    if bb is not None:
        v = bb.view()
        v(bb.preprocess(__import__("PIL.Image").Image.new("RGB", (40, 40), (200, 30, 30)))[None])
        st.markdown(f"served {v.queries}, remote {v.remote_queries}")
        st.markdown(run_cost_text(1200))


@pytest.fixture(scope="module")
def server():
    with serve_in_thread(load_model("tiny_cnn", device="cpu"), api_key=KEY) as srv:
        yield srv


def shown_text(at: AppTest) -> str:
    parts = []
    for kind in ("markdown", "caption", "error", "info", "warning", "success", "exception", "text", "code"):
        parts += [str(getattr(e, "value", e)) for e in getattr(at, kind)]
    return "\n".join(parts)


def test_connect_cost_and_key_never_shown(server):
    at = AppTest.from_function(form_script, default_timeout=60)
    at.run()
    at.text_input(key="t.remote.url").set_value(server.url).run()
    assert at.error and "API key" in at.error[0].value             # the server wants a key
    at.text_input(key="t.remote.key").set_value("sk-wrong").run()
    assert at.error and "401" in at.error[0].value and "sk-wrong" not in shown_text(at)
    at.text_input(key="t.remote.key").set_value(KEY).run()
    at.number_input(key="t.remote.price").set_value(0.002).run()
    assert not at.exception and not at.error, shown_text(at)
    text = shown_text(at)
    assert "Connected: **tiny_cnn**" in text
    assert "served 1, remote 0" in text      # the earlier rerun sent this input; the shared cache answers now
    assert "1,200 queries" in text and "2.4000" in text              # 1200 x 0.002 before the run starts
    assert KEY not in text


def test_explore_page_runs_through_a_remote_endpoint(server):
    """The Explore page with a remote model: the budget line says what a run sends (no local time estimate),
    and a Sobol run completes through the endpoint with the key only in the password field."""
    import time
    from pathlib import Path

    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=180)
    at.run()
    at.switch_page("views/explore.py").run()
    at.radio(key="explore.model_source").set_value("Remote endpoint (HTTP)").run()
    at.text_input(key="explore.remote.url").set_value(server.url).run()
    at.text_input(key="explore.remote.key").set_value(KEY).run()
    assert not at.exception, at.exception
    at.selectbox(key="explore.method").set_value("sobol").run()
    at.slider(key="explore.sobol.grid_size").set_value(2).run()
    at.select_slider(key="explore.sobol.nb_design").set_value(4).run()
    text = shown_text(at)
    assert "sends at most 20 queries to the endpoint" in text
    assert "ms per query" not in text
    at.button(key="explore.run").click().run()
    deadline = time.monotonic() + 60
    while not any("done" in (p.proto.text or "") for p in at.get("progress")):
        assert time.monotonic() < deadline, "the remote run did not finish"
        time.sleep(0.3)
        at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert KEY not in shown_text(at)
