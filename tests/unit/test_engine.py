"""Engine: background jobs, cancel, cache (memory and disk), errors, de-duplication, query caps."""
import threading
import time

import numpy as np
import pytest
import torch

from runtime.engine import Engine
from models import BlackBox


def slow_box(delay: float = 0.02, fail_after: int | None = None) -> BlackBox:
    """A 1-channel 8x8 model: score = mean of the top-left quarter; sleeps per call (a slow API)."""
    calls = {"n": 0}

    def fn(b):
        calls["n"] += 1
        if fail_after is not None and calls["n"] > fail_after:
            raise RuntimeError("model server went away")
        time.sleep(delay)
        return b[:, :, :4, :4].mean(dim=(1, 2, 3)).unsqueeze(1)

    return BlackBox(fn, labels=["score"], input_shape=(1, 8, 8), name=f"slow{delay}-{fail_after}", batch_size=8)


X = torch.ones(1, 8, 8)
OCC = dict(patch=2, stride=1)          # 49 positions + 1 = 50 queries, batches of 16 positions


@pytest.fixture()
def eng(tmp_path):
    return Engine(cache_dir=tmp_path / "cache")


def test_background_run_and_result(eng):
    job = eng.submit(slow_box(), X, "occlusion", OCC, target=0, min_interval=0)
    first = job.snapshot()
    assert first.status in ("queued", "running") and first.budget == 50
    snap = job.wait(60)
    assert snap.status == "done" and snap.queries == 50 and snap.progress == 1.0 and not snap.from_cache
    assert snap.saliency.shape == (8, 8) and snap.saliency.dtype == np.float32
    assert snap.saliency[:4, :4].mean() > snap.saliency[4:, 4:].mean()    # the quarter the model reads
    assert snap.history and snap.history[-1]["queries"] == 50 and snap.eta == 0.0
    rec = snap.record()
    assert rec["method"] == "occlusion" and rec["params"]["patch"] == 2 and rec["queries"] == 50


def test_cancel_keeps_the_partial_estimate(eng):
    job = eng.submit(slow_box(0.05), X, "rise", dict(n_masks=2000), target=0, min_interval=0)
    while job.snapshot().saliency is None:
        time.sleep(0.01)
    job.cancel()
    snap = job.wait(60)
    assert snap.status == "cancelled" and snap.saliency is not None
    assert 0 < snap.queries < 2000 and snap.progress < 1
    # a cancelled result is not cached: asking again computes
    again = eng.submit(slow_box(0.05), X, "rise", dict(n_masks=2000), target=0)
    assert not again.snapshot().from_cache
    again.cancel()
    again.wait(60)


def test_cache_hit_in_memory_and_on_disk(tmp_path):
    eng = Engine(cache_dir=tmp_path / "cache")
    a = eng.run(slow_box(0.0), X, "occlusion", OCC, target=0, seed=3)
    b = eng.submit(slow_box(0.0), X, "occlusion", OCC, target=0, seed=3)
    assert b.snapshot().status == "done" and b.snapshot().from_cache
    np.testing.assert_array_equal(b.snapshot().saliency, a.saliency)
    fresh = Engine(cache_dir=tmp_path / "cache")          # a new process would see the same folder
    c = fresh.submit(slow_box(0.0), X, "occlusion", OCC, target=0, seed=3).snapshot()
    assert c.from_cache and c.queries == 50
    np.testing.assert_array_equal(c.saliency, a.saliency)
    # any change of parameters, seed or target is another result
    for kw in (dict(seed=4), dict(target=None)):
        args = dict(target=0, seed=3) | kw
        assert not fresh.submit(slow_box(0.0), X, "occlusion", OCC, **args).wait(60).from_cache
    assert not fresh.run(slow_box(0.0), X, "occlusion", dict(patch=3, stride=1), target=0, seed=3).from_cache


def test_a_new_method_version_misses_the_cache(tmp_path, monkeypatch):
    """A method whose maps changed bumps its ``version``: the maps computed before are not served from disk."""
    from explainers import explainer_class

    eng = Engine(cache_dir=tmp_path / "cache")
    first = eng.run(slow_box(0.0), X, "occlusion", OCC, target=0)
    assert not first.from_cache and eng.run(slow_box(0.0), X, "occlusion", OCC, target=0).from_cache
    cls = explainer_class("occlusion")
    monkeypatch.setattr(cls, "version", cls.version + 1)
    bumped = Engine(cache_dir=tmp_path / "cache").run(slow_box(0.0), X, "occlusion", OCC, target=0)
    assert not bumped.from_cache and bumped.key != first.key and bumped.queries == 50


def test_top_class_target_is_resolved_and_counted(eng):
    """``target=None``: the engine asks the model for its top class (one query, in the budget) and says which."""
    box = BlackBox(lambda b: torch.stack([b.mean(dim=(1, 2, 3)), 2 + b.mean(dim=(1, 2, 3))], 1),
                   labels=["a", "b"], input_shape=(1, 8, 8), name="two-class")
    snap = eng.run(box, X, "occlusion", OCC, target=None)
    assert snap.status == "done" and snap.target == 1
    assert snap.budget == 51 and snap.queries == 51 and snap.history[-1]["queries"] == 51
    assert snap.device == "cpu" and "device" not in snap.extras and snap.record()["device"] == "cpu"
    again = eng.run(box, X, "occlusion", OCC, target=None)
    assert again.from_cache and again.target == 1 and again.original_elapsed == pytest.approx(snap.elapsed)


def test_model_error_becomes_status_error(eng):
    snap = eng.run(slow_box(0.0, fail_after=2), X, "occlusion", OCC, target=0, min_interval=0)
    assert snap.status == "error" and "model server went away" in snap.error and "RuntimeError" in snap.error
    assert eng.cached(snap.key) is None


def test_identical_running_request_is_deduplicated(eng):
    bb = slow_box(0.05)
    a = eng.submit(bb, X, "rise", dict(n_masks=400), target=0)
    b = eng.submit(bb, X, "rise", dict(n_masks=400), target=0)
    assert a is b
    other = eng.submit(bb, X, "rise", dict(n_masks=400), target=0, seed=1)
    assert other is not a
    for j in (a, other):
        j.cancel()
        j.wait(60)


def test_query_cap_stops_with_a_partial_estimate(eng):
    snap = eng.run(slow_box(0.0), X, "rise", dict(n_masks=2000), target=0, min_interval=0, max_queries=600)
    assert snap.status == "stopped" and "budget" in snap.error
    assert snap.saliency is not None and 0 < snap.queries <= 600 and snap.progress < 1
    assert eng.cached(snap.key) is None


def test_bad_parameters_raise_at_submit(eng):
    with pytest.raises(ValueError, match="power of two"):
        eng.submit(slow_box(), X, "sobol", dict(nb_design=24), target=0)


def test_jobs_run_in_parallel_threads(eng):
    jobs = [eng.submit(slow_box(0.01), X, "occlusion", OCC, target=0, seed=s) for s in range(2)]
    assert all(j.thread is not None and j.thread is not threading.current_thread() for j in jobs)
    assert [j.wait(60).status for j in jobs] == ["done", "done"]


def test_relative_change_is_undefined_after_an_all_zero_map(eng):
    """Sobol's first estimate is all zero (one complete design, and Jansen needs two): the convergence history
    says 'undefined' (nan) for the step after it instead of a change of 1e12, later steps are ordinary ratios."""
    box = BlackBox(lambda b: b[:, :, :48, :48].mean(dim=(1, 2, 3)).unsqueeze(1), labels=["score"],
                   input_shape=(1, 96, 96), name="quarter96", batch_size=8)     # 32 queries per call: 1 design
    snap = eng.submit(box, torch.ones(1, 96, 96), "sobol", dict(grid_size=4, nb_design=8), target=0,
                      min_interval=0).wait(60)
    assert snap.status == "done"
    rel = [h["rel_change"] for h in snap.history]
    finite = [r for r in rel if np.isfinite(r)]
    assert np.isnan(rel[0]) and np.isnan(rel[1]) and finite and max(finite) < 10, rel
