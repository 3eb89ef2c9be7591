"""Stop when converged (issue 18 item 5): ``stream(stop_tol=...)`` and the engine's ``stop_tol``.

An analytic black box (class 0 reads one 10 x 10 region of a 32 x 32 input), RISE and Sobol with budgets of a
few thousand queries: each full run takes well under a second on one core.
"""
import math

import numpy as np
import pytest
import torch

from explainers import get_explainer
from explainers.base import StopRule
from explainers.registry import explainer_class
from runtime.engine import Engine
from tests.analytic import region_box

X = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
REGION = (slice(4, 14), slice(18, 28))
RUNS = {"rise": dict(n_masks=8000, grid_size=4), "sobol": dict(grid_size=4, nb_design=256)}
TOL = 0.1


def shape_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """|| a/|a| - b/|b| || of the centred maps: the measure the stop rule uses."""
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a / a.norm() - b / b.norm()).norm())


def run(method: str, stop_tol, min_interval=math.inf, seed: int = 0):
    bb = region_box(X, REGION)
    e = get_explainer(method, seed=seed, **RUNS[method])
    ests = list(e.stream(bb, X, 0, min_interval=min_interval, stop_tol=stop_tol))
    return e, bb, ests


@pytest.mark.parametrize("method", list(RUNS))
def test_a_loose_tolerance_stops_early_near_the_full_map(method):
    e, bb, ests = run(method, TOL)
    budget = e.query_budget(X.shape)
    last = ests[-1]
    assert last.done and last.converged and last.progress == 1.0
    assert budget // 5 <= last.queries < budget                 # at least window + 1 checks, fewer than budget
    assert bb.queries == last.queries                           # what it reports is what the model served
    assert sum(est.done for est in ests) == 1
    full = e.explain(region_box(X, REGION), X, 0)
    assert shape_distance(last.saliency, full) < 0.15           # it had converged: close to the full map
    assert last.saliency[REGION].mean() > last.saliency.mean()  # and it still shows the region


@pytest.mark.parametrize("method", list(RUNS))
@pytest.mark.parametrize("tol", [None, 0, 0.0])
def test_no_tolerance_spends_the_whole_budget(method, tol):
    e, bb, ests = run(method, tol)
    budget = e.query_budget(X.shape)
    assert ests[-1].queries == budget == bb.queries and not ests[-1].converged
    torch.testing.assert_close(ests[-1].saliency, e.explain(region_box(X, REGION), X, 0), rtol=0, atol=0)


def test_same_seed_same_stop_whatever_the_emission_timing():
    """The checks sit at fixed query counts: emitting every step (a fast machine's stream) or never (explain)
    stops at the same query with the same map; another seed is another run."""
    _, _, a = run("rise", TOL, min_interval=math.inf)
    _, _, b = run("rise", TOL, min_interval=0.0)
    assert len(b) > len(a)
    assert a[-1].queries == b[-1].queries
    torch.testing.assert_close(a[-1].saliency, b[-1].saliency, rtol=0, atol=0)
    _, _, c = run("rise", TOL, seed=1)
    assert not torch.equal(c[-1].saliency, a[-1].saliency)


def test_a_method_that_cannot_stop_early_runs_to_the_end(monkeypatch):
    monkeypatch.setattr(explainer_class("rise"), "early_stop", False)
    e, bb, ests = run("rise", 0.5)
    assert ests[-1].queries == e.query_budget(X.shape) and not ests[-1].converged


def test_bad_tolerance_or_window_raises():
    e = get_explainer("rise", seed=0, **RUNS["rise"])
    bb = region_box(X, REGION)
    for kw in (dict(stop_tol=-0.1), dict(stop_tol=float("nan")), dict(stop_tol=0.1, stop_window=0)):
        with pytest.raises(ValueError):
            next(e.stream(bb, X, 0, **kw))
    with pytest.raises(ValueError):
        Engine(disk_cache=False).submit(bb, X, "rise", RUNS["rise"], target=0, stop_tol=0.1, stop_window=0)


def test_stop_rule_counts_consecutive_small_changes():
    rule = StopRule(0.1, window=2)
    assert [rule.due(p) for p in (0.01, 0.05, 0.07, 0.1, 0.2)] == [False, True, False, True, True]
    base = torch.arange(16.0).view(4, 4)
    assert not rule.update(torch.zeros(4, 4))                   # no map yet: not converged
    assert not rule.update(base)                                # the first map: nothing to compare with
    assert not rule.update(base * 3 + 1)                        # scale and offset are not a change (0)...
    assert rule.update(base + 0.01 * torch.rand(4, 4))          # ...two small changes in a row stop it


def test_engine_caches_a_converged_run_apart_from_a_full_one(tmp_path):
    bb = region_box(X, REGION)
    eng = Engine(cache_dir=tmp_path / "cache")
    full = eng.run(bb, X, "rise", RUNS["rise"], target=0)
    budget = full.budget
    assert full.queries == budget and not full.converged and full.record()["stop_tol"] is None

    conv = eng.run(bb, X, "rise", RUNS["rise"], target=0, stop_tol=TOL)
    assert not conv.from_cache and conv.key != full.key          # not served the full run's map
    assert conv.status == "done" and conv.converged and conv.budget == budget and conv.progress == 1.0
    assert conv.queries < budget and conv.history[-1]["queries"] == conv.queries
    rec = conv.record()
    assert rec["queries"] == conv.queries and rec["budget"] == budget
    assert rec["stop_tol"] == TOL and rec["stop_window"] == 3 and rec["converged"] is True

    # served from cache (memory, then disk in a new engine) with the queries it actually spent
    again = eng.run(bb, X, "rise", RUNS["rise"], target=0, stop_tol=TOL)
    fresh = Engine(cache_dir=tmp_path / "cache").run(bb, X, "rise", RUNS["rise"], target=0, stop_tol=TOL)
    for snap in (again, fresh):
        assert snap.from_cache and snap.key == conv.key and snap.queries == conv.queries and snap.converged
        np.testing.assert_array_equal(snap.saliency, conv.saliency)
    # another tolerance or window is another result; a tolerance of 0 is the full run
    assert Engine.cache_key("i", "m", "rise", {}, 0, 0, 1, (0.1, 3)) != Engine.cache_key("i", "m", "rise", {}, 0, 0, 1)
    assert Engine.cache_key("i", "m", "rise", {}, 0, 0, 1, (0.1, 3)) != Engine.cache_key("i", "m", "rise", {}, 0, 0, 1,
                                                                                          (0.1, 4))
    zero = eng.run(bb, X, "rise", RUNS["rise"], target=0, stop_tol=0)
    assert zero.from_cache and zero.key == full.key and zero.queries == budget
