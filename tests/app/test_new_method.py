"""Adding a method is adding one file: a throwaway method, written to a temporary module, is in the registry,
passes the contract test, and appears with its parameter widget in the Explore and Compare pages and runs there.

The method ("stripes") zeroes one vertical stripe of the input per query and reads the target's score drop:
n_stripes + 1 queries, no randomness. It is removed from the registry when the test ends.
"""
import importlib.util
import json
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

import tests.unit.test_contract as contract
from explainers import explainer_class, get_explainer, list_explainers, unregister_explainer
from models import load_model

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
NAME = "throwaway_stripes"

METHOD = f'''
"""Stripes: zero one vertical stripe per query and record the drop of the target score (a test method)."""
import torch

from explainers import Explainer, Param, Readout, Step, register_explainer


@register_explainer
class Stripes(Explainer):
    name = "{NAME}"
    title = "Stripes (throwaway)"
    paper = "none: tests/app/test_new_method.py"
    modalities = ("image",)
    param_specs = (Param("n_stripes", "int", 4, 2, 16, help="Vertical stripes, each zeroed once."),)

    def query_budget(self, input_shape):
        return self.n_stripes + 1

    def _iterate(self, bb, x, target):
        edges = torch.linspace(0, x.shape[-1], self.n_stripes + 1).round().long().tolist()
        clean = bb(x.unsqueeze(0))[0, target]
        sal = torch.zeros(x.shape[-2:], device=x.device)
        for i in range(self.n_stripes):
            xi = x.clone()
            xi[..., edges[i]:edges[i + 1]] = 0
            sal[:, edges[i]:edges[i + 1]] = clean - bb(xi.unsqueeze(0))[0, target]
            yield Step(queries=i + 2, progress=(i + 1) / self.n_stripes,
                       readout=lambda s=sal.clone(): Readout(s))
'''


@pytest.fixture(scope="module")
def stripes(tmp_path_factory):
    path = tmp_path_factory.mktemp("method") / "stripes_method.py"
    path.write_text(textwrap.dedent(METHOD))
    spec = importlib.util.spec_from_file_location("stripes_method", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)          # @register_explainer runs here
        yield explainer_class(NAME)
    finally:
        unregister_explainer(NAME)               # a test method must not outlive its test
        sys.modules.pop(spec.name, None)


def test_it_is_registered_and_meets_the_contract(stripes):
    assert NAME in list_explainers() and NAME in list_explainers(modality="image", white_box=False)
    assert get_explainer(NAME, n_stripes=3).query_budget((3, 32, 32)) == 4
    tiny = load_model("tiny_cnn", device="cpu", score_mode="logit", batch_size=32)
    x32 = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    contract.test_contract(NAME, None, tiny, x32)
    contract.test_readout_is_a_readout_and_gradients_have_the_input_shape(NAME, tiny, x32)
    contract.test_declared_params_are_valid()
    contract.test_declared_capabilities()


def drive(at: AppTest, button: str, max_polls: int = 200) -> None:
    """Press ``button`` and rerun until a download appears (AppTest cannot fire run_every)."""
    at.button(key=button).click().run()
    for _ in range(max_polls):
        assert not at.exception, at.exception
        if at.download_button:
            return
        time.sleep(0.25)
        at.run()
    raise AssertionError("the run did not finish")


@pytest.mark.slow  # loads the bundled model in the app
def test_explore_offers_and_runs_it(stripes, downloads):
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("views/explore.py").run()
    assert not at.exception, at.exception
    method = at.selectbox(key="explore.method")
    assert any(o.startswith(stripes.title) for o in method.options)      # listed under its title
    method.set_value(NAME).run()
    at.slider(key=f"explore.{NAME}.n_stripes").set_value(2).run()    # the widget built from the Param
    assert any("**Query budget:** 3 queries" in m.value for m in at.markdown)
    drive(at, "explore.run")
    assert not at.error, [e.value for e in at.error]
    record = json.loads(next(v for k, v in downloads.items() if k.endswith(".json")))
    assert record["method"] == NAME and record["params"] == {"n_stripes": 2} and record["queries"] == 3


@pytest.mark.slow  # loads the bundled model and scores both maps
def test_compare_offers_and_runs_it(stripes):
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("views/compare.py").run()
    assert not at.exception, at.exception
    at.number_input(key="compare.n").set_value(2).run()
    at.selectbox(key="compare.0.method").set_value(NAME).run()
    at.slider(key=f"compare.0.{NAME}.n_stripes").set_value(2)
    at.selectbox(key="compare.1.method").set_value("occlusion").run()
    at.slider(key="compare.1.occlusion.patch").set_value(112)
    at.slider(key="compare.1.occlusion.stride").set_value(112)
    at.checkbox(key="compare.mu").uncheck()
    at.checkbox(key="compare.controls").uncheck().run()
    assert not at.exception, at.exception
    drive(at, "compare.run")
    assert not at.error, [e.value for e in at.error]
    df = at.dataframe[0].value
    assert df.loc[f"{NAME} (n_stripes=2)", "queries"] == 3 and df.loc[f"{NAME} (n_stripes=2)", "method"] == NAME
