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


def test_opens_on_the_real_model_at_a_stated_cost(at):
    """Not the tiny test network's "class 0": the bundled ImageNet model on the cat, its top class, a small sigma
    (the local gradient), and the queries and expected time stated before Run."""
    assert at.selectbox(key=f"{P}model").value == "efficientnet_lite0"
    assert at.selectbox(key=f"{P}image").value == "cat"
    assert at.select_slider(key=f"{P}sigma").value == 0.01
    methods, budget, seeds = (at.multiselect(key=f"{P}methods").value, at.number_input(key=f"{P}budget").value,
                              at.number_input(key=f"{P}seeds").value)
    total = len(methods) * seeds * budget + 1
    line = next(c.value for c in at.caption if c.value.startswith("Run spends"))
    assert f"{total:,} queries" in line and "expected ≈" in line and "ms per query" in line, line
    assert any("top class" in i.value for i in at.info)


class FinishesWhileDrawn:
    """A lab run that is still going when the page draws its buttons and finishes while the live fragment draws
    it (the moment a real run ends between two polls)."""

    def __init__(self):
        self.points, self.error, self.current, self.elapsed, self.done = {}, None, None, 1.0, False

    def progress(self) -> float:
        self.done = True
        return 0.9

    def bands(self, qgrid, which=1):
        return {}

    def stop(self):
        pass


def test_stop_button_goes_when_the_run_is_done(at):
    at.session_state[f"{P}run"] = FinishesWhileDrawn()
    at.run()
    assert not at.exception, at.exception
    assert "Done in" in " ".join(c.value for c in at.caption)
    assert not [b for b in at.button if b.key == f"{P}stop"], "Stop stayed after Done"
    assert not at.button(key=f"{P}go").disabled                    # and Run is back


def test_tiny_budget_run_draws_the_curves(at):
    model = at.selectbox(key=f"{P}model")
    model.set_value(next(o for o in model.options if o.startswith("tiny_cnn")))
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
