"""HttpBlackBox against the reference server (models/serve.py) on 127.0.0.1, in this process.

Same maps as the local model for every black-box method (same seed), under injected faults too; the server
going down mid-run ends the job with a clear error and keeps the partial map; the query cap; the cache; the
API key never shows up in logs, reprs or error messages; clear errors for 4xx.
"""
import base64
import logging

import httpx
import pytest
import torch

from explainers import explainer_class, get_explainer, list_explainers
from runtime.engine import Engine
from models import HttpBlackBox, QueryBudgetExceeded, load_model
from models.http import RemoteAuthError, RemoteModelError, encode_tensor
from models.serve import serve_in_thread
from test_contract import tiny_params
from tests.faults import serve_with_faults

KEY = "sk-test-9f8e7d6c5b4a-never-show-me"
BLACK_BOX = [m for m in list_explainers(modality="image", white_box=False)]


@pytest.fixture(scope="module")
def tiny_local():
    return load_model("tiny_cnn", device="cpu")


@pytest.fixture(scope="module")
def server(tiny_local):
    with serve_in_thread(tiny_local, max_batch=32) as srv:
        yield srv


@pytest.fixture(scope="module")
def x32():
    return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


def fast_retry(**kw):
    return dict(max_retries=kw.pop("max_retries", 8), backoff=kw.pop("backoff", 0.005), timeout=10, **kw)


@pytest.mark.parametrize("name", BLACK_BOX)
def test_same_map_through_the_server(name, server, tiny_local, x32):
    params = tiny_params(name)
    # methods draw their perturbations per call of a multiple of bb.batch_size: match it (see README "http")
    bb = HttpBlackBox(server.url, api_key_env=None, cache_size=0, request_size=tiny_local.batch_size,
                      **fast_retry())
    assert bb.batch_size == tiny_local.batch_size
    local = tiny_local.view()
    remote = bb.view()
    a = get_explainer(name, seed=5, **params).explain(local, x32, 3)
    b = get_explainer(name, seed=5, **params).explain(remote, x32, 3)
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6 * float(a.abs().max()))
    budget = get_explainer(name, seed=5, **params).query_budget(x32.shape)
    assert remote.queries == local.queries == budget        # the explainer contract holds through HTTP
    # within a batch identical inputs (e.g. Sobol's shared design rows) are sent once, even with no cache
    assert 0 < remote.remote_queries <= budget


def test_cache_sends_identical_inputs_once(server, tiny_local, x32):
    bb = HttpBlackBox(server.url, api_key_env=None, **fast_retry())
    v = bb.view()
    batch = torch.stack([x32] * 10 + [x32 * 0.5] * 5)
    before = server.server.config.app.state.stats["inputs"]
    out = v(batch)
    torch.testing.assert_close(out, tiny_local(batch))
    assert (v.queries, v.remote_queries) == (15, 2)
    assert server.server.config.app.state.stats["inputs"] - before == 2
    v(batch[:3])
    assert (v.queries, v.remote_queries) == (18, 2)         # all three answered from cache
    # a cached method run: served inputs count, remote ones do not
    w = bb.view()
    get_explainer("sobol", seed=1, grid_size=3, nb_design=8).explain(w, x32, 2)
    assert w.queries == 80 and w.remote_queries < 80


def test_faults_runs_complete_with_identical_maps(tiny_local, x32):
    with serve_with_faults(tiny_local, max_batch=16, fail_rate=0.2, drop_rate=0.1, delay=0.01, seed=3) as srv:
        bb = HttpBlackBox(srv.url, api_key_env=None, cache_size=0, concurrency=4, **fast_retry())
        for name in ("rise", "sobol", "occlusion"):
            params = tiny_params(name)
            v = bb.view()
            a = get_explainer(name, seed=2, **params).explain(tiny_local.view(), x32, 1)
            b = get_explainer(name, seed=2, **params).explain(v, x32, 1)
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6 * float(a.abs().max()))
        stats = srv.faults.stats
        assert stats["failed"] > 0 and stats["dropped"] > 0, stats
        assert srv.server.config.app.state.stats["inputs"] > 0      # the server behind the faults did the work
        assert bb.stats["retries"] >= stats["failed"] + stats["dropped"]


def test_server_down_mid_run_error_and_partial_map(tiny_local, x32):
    srv = serve_with_faults(tiny_local, max_batch=8, delay=0.02)
    bb = HttpBlackBox(srv.url, api_key_env=None, concurrency=1, max_retries=2, backoff=0.01, timeout=5)
    eng = Engine(disk_cache=False)
    job = eng.submit(bb, x32, "rise", {"n_masks": 4000, "grid_size": 4}, target=0, seed=0, min_interval=0)
    for _ in range(500):
        snap = job.snapshot()
        if snap.saliency is not None and snap.queries >= 16:
            break
        job.wait(0.02)
    srv.stop()
    snap = job.wait(60)
    assert snap.status == "error", snap.status
    assert srv.url in snap.error and "did not answer" in snap.error
    assert snap.saliency is not None and snap.saliency.shape == (32, 32) and 0 < snap.queries < 4000


def test_budget_cap_stops_and_keeps_partial(server, x32):
    bb = HttpBlackBox(server.url, api_key_env=None, cache_size=0, **fast_retry())
    stats = server.server.config.app.state.stats
    before = stats["inputs"]
    snap = Engine(disk_cache=False).run(bb, x32, "rise", {"n_masks": 1000, "grid_size": 4}, target=0,
                                        min_interval=0, max_queries=300)
    assert snap.status == "stopped" and "budget" in snap.error
    assert snap.saliency is not None and 0 < snap.queries <= 300
    assert 0 < stats["inputs"] - before <= 300              # nothing past the cap reached the server
    capped = HttpBlackBox(server.url, api_key_env=None, max_queries=10, **fast_retry())
    capped(x32[None].repeat(10, 1, 1, 1))
    with pytest.raises(QueryBudgetExceeded):
        capped(x32[None])
    assert capped.remote_queries == 1


def test_api_key_required_and_never_shown(tiny_local, x32, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("MY_MODEL_KEY", KEY)
    with serve_in_thread(tiny_local, api_key=KEY) as srv:
        for auth in ("bearer", "x-api-key"):
            bb = HttpBlackBox(srv.url, api_key_env="MY_MODEL_KEY", auth=auth, **fast_retry())
            torch.testing.assert_close(bb(x32[None]), tiny_local(x32[None]))
            texts = [repr(bb), str(bb), repr(bb.view()), repr(bb.meta), repr(bb.stats)]
            assert not any(KEY in t for t in texts)
        with pytest.raises(RemoteAuthError, match="401") as wrong:
            HttpBlackBox(srv.url, api_key="sk-wrong-" + KEY[::-1], **fast_retry())
        with pytest.raises(RemoteAuthError, match="wants an API key") as missing:
            HttpBlackBox(srv.url, api_key_env=None, **fast_retry())
        assert srv.server.config.app.state.stats["refused"] == 2
    # a server that dies mid-run: the error message is scrubbed too
    srv2 = serve_in_thread(tiny_local, api_key=KEY)
    bb = HttpBlackBox(srv2.url, api_key_env="MY_MODEL_KEY", max_retries=1, backoff=0.01)
    srv2.stop()
    with pytest.raises(RemoteModelError) as down:
        bb(x32[None])
    for e in (wrong.value, missing.value, down.value):
        assert KEY not in str(e) and KEY not in repr(e)
    assert caplog.records and KEY not in caplog.text


def test_clear_errors_for_bad_requests(server, x32):
    with pytest.raises(RemoteModelError, match="404"):
        HttpBlackBox(server.url + "/nothing-here", api_key_env=None, **fast_retry())
    with pytest.raises(RemoteModelError, match="did not answer"):
        HttpBlackBox("http://127.0.0.1:9", api_key_env=None, max_retries=1, backoff=0.01)
    with pytest.raises(ValueError, match="URL"):
        HttpBlackBox("localhost:8000")
    r = httpx.post(server.url + "/v1/predict", json={"encoding": "tensor", "shape": [3, 32, 32], "inputs": ["%%"]})
    assert r.status_code == 400 and "bad input" in r.json()["error"]
    blob = base64.b64encode(encode_tensor(x32)).decode()
    r = httpx.post(server.url + "/v1/predict", json={"encoding": "tensor", "shape": [3, 16, 16], "inputs": [blob]})
    assert r.status_code == 400 and "shape" in r.json()["error"]
    r = httpx.post(server.url + "/v1/predict", json={"encoding": "tensor", "shape": [3, 32, 32], "inputs": [blob] * 33})
    assert r.status_code == 413


def test_png_encoding_on_a_real_photo(server, tiny_local, cat_image):
    """PNG carries the de-normalised 8-bit image: a preprocessed photo survives exactly, perturbed ones nearly."""
    bb = HttpBlackBox(server.url, api_key_env=None, encoding="png", **fast_retry())
    x = bb.preprocess(cat_image)
    torch.testing.assert_close(x, tiny_local.preprocess(cat_image))
    torch.testing.assert_close(bb(x[None]), tiny_local(x[None]), rtol=1e-4, atol=1e-5)
    a = get_explainer("occlusion", seed=0, patch=8, stride=8).explain(tiny_local.view(), x, 3)
    b = get_explainer("occlusion", seed=0, patch=8, stride=8).explain(bb.view(), x, 3)
    assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > 0.99


def test_rate_limit_spaces_request_starts(monkeypatch):
    """rate_limit=4 per second: five back-to-back starts are spaced 0.25 s apart (clock and sleep faked)."""
    import models.http as mh
    now = [100.0]
    slept = []
    monkeypatch.setattr(mh.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(mh.time, "sleep", lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)))
    lim = mh._RateLimiter(4.0)
    starts = []
    for _ in range(5):
        lim.wait()
        starts.append(now[0])
    assert starts == pytest.approx([100.0, 100.25, 100.5, 100.75, 101.0])
    mh._RateLimiter(None).wait()          # no limit: no sleep
    assert len(slept) == 4


def test_serve_cli_refuses_an_empty_key_variable(monkeypatch, capsys):
    from models.serve import main
    monkeypatch.delenv("NO_SUCH_KEY_VAR_9", raising=False)
    assert main(["tiny_cnn", "--api-key-env", "NO_SUCH_KEY_VAR_9"]) == 2
    assert "NO_SUCH_KEY_VAR_9" in capsys.readouterr().err
