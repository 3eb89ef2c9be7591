"""One contract test over every registered explainer (xplique style): whatever a helper adds later is checked.

Shape (H, W), determinism under a seed, query_budget == queries the BlackBox served, progress monotone ending
at 1, last streamed estimate == explain(). Black-box methods run on a BlackBox around a plain callable (no
torch module to peek into); white-box references on the module-backed tiny CNN.
"""
import math

import pytest
import torch

from explainers import Metric, Readout, explainer_class, get_explainer, list_explainers
from models import BlackBox, load_model

# Small but meaningful budgets; methods not listed get their defaults shrunk within their declared ranges.
TINY = {
    "sobol": dict(grid_size=3, nb_design=8),
    "lr": dict(n_samples=64),
    "rise": dict(n_masks=48, grid_size=4),
    "occlusion": dict(patch=8, stride=8),
    "dax": dict(n_samples=24, epochs=1, segmentation="grid", n_segments=9, batch_size=24),
}
# Extra configurations of the core methods that take other code paths.
VARIANTS = [
    ("lr", dict(n_samples=65, block_size=8, noise_resolution=16)),          # odd budget: one unpaired draw
    ("lr", dict(n_samples=40, antithetic=False, control_variate=False, readout="grad_x_input",
                perturbation="additive")),
    ("lr", dict(n_samples=90, block_size=5, orthogonal=False)),             # edge blocks cropped
    ("lr", dict(n_samples=90, block_size=5, noise_resolution=0, perturbation="additive",
                channel_noise="independent")),                               # full-resolution blocks, padded
    ("lr", dict(n_samples=30, noise_resolution=0, channel_noise="shared")),  # full-resolution contrast noise
    ("occlusion", dict(patch=10, stride=7, baseline="constant", value=0.5)),
    ("rise", dict(n_masks=20, grid_size=5, baseline="blur", p1=0.3)),
    ("sobol", dict(grid_size=2, nb_design=4, perturbation="blur", scramble=True)),
]


def tiny_params(name: str) -> dict:
    """TINY's entries (those the method still declares) over its CPU defaults shrunk within their ranges."""
    cls = explainer_class(name)
    declared = {p.name for p in cls.param_specs}
    if name in TINY and set(TINY[name]) <= declared:
        return dict(TINY[name])
    out = {}
    for p in cls.param_specs:
        v = p.default_for("cpu")
        if p.kind == "int" and not isinstance(v, bool) and v > 8:
            v = max(int(p.low) if p.low is not None else 1, 8)
        out[p.name] = v
    out.update({k: v for k, v in TINY.get(name, {}).items() if k in declared})
    try:
        cls(seed=0, **out)
    except ValueError:  # a cross-parameter check refused the shrunk values: keep the declared defaults
        out = cls.defaults("cpu")
    return out


def callable_box(tiny: BlackBox) -> BlackBox:
    """The tiny CNN seen only through a callable: what a closed API offers."""
    net = tiny.module
    return BlackBox(lambda b: net(b), labels=tiny.labels, input_shape=tiny.input_shape, name="tiny_callable",
                    outputs="logits", score_mode="logit")


@pytest.fixture(scope="module")
def tiny_mod():
    return load_model("tiny_cnn", device="cpu", score_mode="logit", batch_size=32)   # no measuring in a test


@pytest.fixture(scope="module")
def x32():
    g = torch.Generator().manual_seed(1)
    return torch.rand(3, 32, 32, generator=g) * 2 - 1


CASES = [(n, None) for n in list_explainers()] + [(n, kw) for n, kw in VARIANTS if n in list_explainers()]


@pytest.mark.parametrize("name,params", CASES, ids=[n if kw is None else f"{n}-{i}" for i, (n, kw) in enumerate(CASES)])
def test_contract(name, params, tiny_mod, x32):
    cls = explainer_class(name)
    if "image" not in cls.modalities:
        pytest.skip(f"{name} does not take images")
    params = tiny_params(name) if params is None else params
    bb = tiny_mod if cls.white_box else callable_box(tiny_mod)
    target = 3
    e = get_explainer(name, seed=7, **params)
    budget = e.query_budget(x32.shape)
    assert isinstance(budget, int) and budget > 0

    view = bb.view()
    ests = list(e.stream(view, x32, target, min_interval=0))
    assert view.queries == budget, f"{name}: query_budget {budget} but the BlackBox served {view.queries}"
    assert ests[-1].queries == budget and ests[-1].done
    progress = [est.progress for est in ests]
    assert all(b >= a for a, b in zip(progress, progress[1:])), progress
    assert progress[-1] == 1.0 and all(0 <= p <= 1 for p in progress)
    queries = [est.queries for est in ests]
    assert all(b >= a for a, b in zip(queries, queries[1:]))
    for est in ests:
        assert est.saliency.shape == (32, 32) and est.saliency.dtype == torch.float32
        assert torch.isfinite(est.saliency).all()
        assert all(isinstance(v, float) and math.isfinite(v) or v != v for v in est.metrics.values())

    # the same seed gives the same map, and explain() is the last streamed estimate
    v2 = bb.view()
    again = get_explainer(name, seed=7, **params).explain(v2, x32, target)
    assert v2.queries == budget
    torch.testing.assert_close(again, ests[-1].saliency, rtol=1e-5, atol=1e-6)
    assert ests[-1].saliency.abs().sum() > 0, f"{name} returned an all-zero map"

    # the map depends on the seed, not on the forward batch size (measured per machine, so it varies)
    other = bb.view()
    other.batch_size = 3 if bb.batch_size != 3 else 5
    torch.testing.assert_close(get_explainer(name, seed=7, **params).explain(other, x32, target),
                               ests[-1].saliency, rtol=1e-4, atol=1e-5)

    # explaining the top class costs exactly one more query
    v3 = bb.view()
    get_explainer(name, seed=7, **params).explain(v3, x32)
    assert v3.queries == budget + 1


BLACK_BOX_CASES = [(n, kw) for n, kw in CASES if not explainer_class(n).white_box]


@pytest.mark.parametrize("name,params", BLACK_BOX_CASES,
                         ids=[n if kw is None else f"{n}-{i}" for i, (n, kw) in enumerate(BLACK_BOX_CASES)])
def test_metrics_are_declared_labelled_and_reported(name, params, tiny_mod, x32):
    """Every black-box method says what its live diagnostics are (metric_specs: a readable label, a unit where
    there is one) and reports at least one of them; it reports no key it did not declare, and the final
    estimate's values are finite (earlier ones may be NaN while a diagnostic is not defined yet)."""
    cls = explainer_class(name)
    if "image" not in cls.modalities:
        pytest.skip(f"{name} does not take images")
    specs = cls.metric_specs
    assert specs and all(isinstance(m, Metric) for m in specs), f"{name} declares no metric_specs"
    keys = [m.key for m in specs]
    assert len(set(keys)) == len(keys), f"{name}: a metric declared twice"
    for m in specs:
        assert m.label.strip() and m.label != m.key and "_" not in m.label, f"{name}: {m.key} needs a label"
        assert m.scale > 0 and math.isfinite(m.scale)
    params_given, params = params, (tiny_params(name) if params is None else params)
    ests = list(get_explainer(name, seed=7, **params).stream(callable_box(tiny_mod).view(), x32, 3,
                                                               min_interval=0))
    reported = {k for est in ests for k in est.metrics}
    assert reported & set(keys), f"{name} reports none of its declared metrics"
    assert reported <= set(keys), f"{name} reports undeclared metrics {sorted(reported - set(keys))}"
    for est in ests:
        assert all(isinstance(v, float) and (math.isfinite(v) or v != v) for v in est.metrics.values())
    final = ests[-1].metrics
    assert any(math.isfinite(v) for v in final.values()), final
    if params_given is None:   # a variant may end undefined (LR with under two draws per block: no error bar)
        assert all(math.isfinite(v) for v in final.values()), final


@pytest.mark.parametrize("name", list_explainers(white_box=True))
def test_white_box_needs_a_module(name, tiny_mod, x32):
    with pytest.raises(ValueError, match="white-box"):
        get_explainer(name, **tiny_params(name)).explain(callable_box(tiny_mod), x32, 0)


def test_declared_params_are_valid():
    for name in list_explainers():
        cls = explainer_class(name)
        assert cls.title and cls.paper, f"{name} must say what it is and cite its paper"
        for p in cls.param_specs:
            for dev in ("cpu", "cuda"):
                p.validate(p.default_for(dev), name)   # every default lies in its own range
        cls(seed=0, **cls.defaults("cpu"))
        cls(seed=0, **cls.defaults("cuda"))


@pytest.mark.parametrize("name", list_explainers())
def test_readout_is_a_readout_and_gradients_have_the_input_shape(name, tiny_mod, x32):
    """Every step's readout returns a Readout; a method that declares estimates_gradient fills
    Readout.gradient (under its gradient_options) with a map of the input's shape ((1, H, W) when one noise
    map is shared by the channels), and Estimate.gradient carries it."""
    cls = explainer_class(name)
    if "image" not in cls.modalities:
        pytest.skip(f"{name} does not take images")
    bb = (tiny_mod if cls.white_box else callable_box(tiny_mod)).view()
    params = {**tiny_params(name), **cls.gradient_options}
    e = get_explainer(name, seed=7, **params)
    steps = list(e._iterate(bb, e._check_input(bb, x32), 3))
    assert steps
    for step in steps[:2] + steps[-1:]:
        out = step.readout()
        assert isinstance(out, Readout), f"{name}: readout returned {type(out).__name__}"
        assert out.saliency.shape[-2:] == x32.shape[-2:]
        assert isinstance(out.metrics, dict) and isinstance(out.extras, dict)
        assert "gradient" not in out.extras, f"{name}: the gradient goes into Readout.gradient"
        if cls.estimates_gradient:
            assert out.gradient is not None, f"{name} declares estimates_gradient but gives no gradient"
            assert out.gradient.shape[-2:] == x32.shape[-2:] and out.gradient.shape[0] in (1, x32.shape[0])
            assert torch.isfinite(out.gradient).all()
    last = list(get_explainer(name, seed=7, **params).stream(bb, x32, 3, min_interval=0))[-1]
    if cls.estimates_gradient:
        assert last.gradient is not None and last.gradient.device.type == "cpu"
        assert last.gradient.shape[0] in (1, x32.shape[0]) and last.gradient.shape[1:] == x32.shape[1:]


def test_declared_capabilities():
    """estimates_gradient is what the lab reads instead of method names; budget_param names a real parameter."""
    estimators = {n for n in list_explainers() if explainer_class(n).estimates_gradient}
    assert {"lr", "geex", "igeex"} <= estimators
    assert not any(explainer_class(n).white_box for n in estimators)
    for name in list_explainers():
        cls = explainer_class(name)
        assert not hasattr(cls, "params") and not hasattr(cls, "progressive"), f"{name}: old attribute names"
        if cls.budget_param is not None:
            param, per_unit = cls.budget_param
            assert param in {p.name for p in cls.param_specs} and per_unit >= 1
