"""The Convergence lab page in AppTest: the real app, tiny_cnn, the cat photo; the toy section's sliders.

AppTest cannot fire ``run_every``, so a run is driven to its end by ``at.run()`` in a bounded loop.
"""
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
P = "lab."


@pytest.fixture()
def at():
    app = AppTest.from_file(APP, default_timeout=120)
    app.switch_page("views/lab.py")
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def cosine_shown(at) -> float:
    return float(at.metric[0].value)


def test_toy_section_shows_bias_and_variance(at):
    assert at.title[0].value == "Convergence lab"
    assert len(at.get("image")) == 1                      # the contour with both arrow fields
    at.select_slider(key=f"{P}toy_sigma").set_value(0.05)
    at.select_slider(key=f"{P}toy_n").set_value(3000).run()
    good = cosine_shown(at)
    at.select_slider(key=f"{P}toy_n").set_value(2).run()
    noisy = cosine_shown(at)                               # few samples: variance
    at.select_slider(key=f"{P}toy_sigma").set_value(1.2)
    at.select_slider(key=f"{P}toy_n").set_value(3000).run()
    biased = cosine_shown(at)                              # wide noise: the bumps are blurred away
    assert good > 0.99 and noisy < good - 0.1 and biased < good - 0.1, (good, noisy, biased)
    assert not at.exception


def test_tiny_budget_run_draws_the_curves(at):
    at.selectbox(key=f"{P}model").set_value("tiny_cnn (fast)")
    at.number_input(key=f"{P}budget").set_value(100)
    at.number_input(key=f"{P}seeds").set_value(2)
    methods = at.multiselect(key=f"{P}methods").value
    assert {"LR plain", "LR blockwise"} <= set(methods)
    at.button(key=f"{P}go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    run = at.session_state[f"{P}run"]
    deadline = time.monotonic() + 60
    while not run.done and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    run.wait(5)
    at.run()
    assert run.done and run.error is None
    assert not at.exception and not at.error
    charts = at.get("plotly_chart")
    assert len(charts) >= 1                                        # cosine vs queries
    assert "Done in" in " ".join(c.value for c in at.caption)
    for name in methods:                                           # every method and seed reached its budget
        assert all(pts and pts[-1][0] >= 100 for pts in run.points[name].values()), name
    if "iGEEX" in methods:
        assert len(charts) == 2                                    # and the completeness gap
