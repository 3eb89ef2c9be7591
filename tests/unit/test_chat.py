"""ChatBlackBox against the reference chat-completions server (models/chat_server.py) on 127.0.0.1, in this process.

The server answers from a small CNN whose class names are its vocabulary, with genuine log-probabilities. Sobol and
LR maps over HTTP equal the maps of the same model called directly with the same scoring (``direct_blackbox``),
also under injected errors and slow answers; the spending cap refuses a run before any query; the API key never
shows; each bad answer (no logprobs, a missing candidate, an empty or malformed body, HTTP 429) has a clear message.
"""
import io
import json
import logging
import math
import time

import numpy as np
import pytest
import torch
from PIL import Image

from explainers import get_explainer
from models import BlackBox, ChatBlackBox, QueryBudgetExceeded
from models.chat import ChatAnswerError, SpendingCapExceeded, match_token, score_logprobs
from models.chat_server import create_app, direct_blackbox, serve_in_thread
from models.http import RemoteAuthError, RemoteModelError
from models.images import ImageTransform
from models.serve import ServerThread
from models.zoo import TinyCNN
from runtime.engine import Engine
from tests.faults import FaultyApp

KEY = "sk-chat-2718281828-never-show-me"
LABELS = ["tabby cat", "Egyptian cat", "dog", "red fox", "sports car", "house", "oak tree", "bird", "ship", "frog"]
CANDIDATES = ["cat", "dog", "fox"]
PARAMS = {"sobol": dict(grid_size=4, nb_design=8), "lr": dict(n_samples=48)}


@pytest.fixture(scope="module")
def classifier():
    tf = ImageTransform(32, mean=(0.5,) * 3, std=(0.5,) * 3)
    return BlackBox(TinyCNN(), labels=LABELS, input_shape=(3, 32, 32), name="tiny_words", outputs="logits",
                    preprocess=tf, meta={"transform": tf}, channels_last=False, batch_size=32)


@pytest.fixture(scope="module")
def server(classifier):
    with serve_in_thread(classifier) as srv:
        yield srv


@pytest.fixture(scope="module")
def x(cat_image):
    return ChatBlackBox("http://127.0.0.1:1/v1", model="m", prompt="?", yes_no=True, image_size=32).preprocess(cat_image)


def chat(url, **kw):
    kw = {"model": "reference-vlm", "prompt": "What animal is in this image?", "api_key_env": None,
          "image_size": 32, "max_retries": 8, "backoff": 0.005, "timeout": 10, "cache_size": 0, **kw}
    if "yes_no" not in kw:
        kw.setdefault("candidates", CANDIDATES)
    return ChatBlackBox(url + "/v1", **kw)


def model_of(srv):
    return srv.server.config.app.state.model


def test_scores_are_the_classifier_mass_renormalised(server, classifier, x):
    """P(candidate) = the CNN's softmax mass on the classes naming it, renormalised over the candidates."""
    bb = chat(server.url)
    assert bb.labels == CANDIDATES and bb.input_shape == (3, 32, 32)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    batch = torch.stack([x, x.flip(-1), 1 - x])
    got = bb(batch)
    assert got.shape == (3, 3) and bb.queries == 3 and bb.remote_calls == 3
    pngs = [np.asarray(Image.open(io.BytesIO(bb.encode(b))), np.float32) for b in batch]
    q = torch.from_numpy(np.stack(pngs)).permute(0, 3, 1, 2) / 255
    p = classifier.view(score_mode="prob")((q - 0.5) / 0.5).double()       # the 8-bit image the server decoded
    mass = torch.stack([p[:, :2].sum(1), p[:, 2], p[:, 3]], 1)
    torch.testing.assert_close(got.double(), mass / mass.sum(1, keepdim=True), rtol=1e-5, atol=1e-6)
    yn = chat(server.url, prompt="Is there a cat in this image?", yes_no=True)
    assert yn.labels == ["no", "yes"]
    torch.testing.assert_close(yn(batch)[:, 1].double(), p[:, :2].sum(1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["sobol", "lr"])
def test_map_through_the_api_equals_the_direct_map(method, server, x):
    bb = chat(server.url)
    direct = direct_blackbox(bb, model_of(server))
    a = get_explainer(method, seed=3, **PARAMS[method]).explain(direct.view(), x, 0)
    v = bb.view()
    b = get_explainer(method, seed=3, **PARAMS[method]).explain(v, x, 0)
    torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7 * float(a.abs().max()))
    assert float(a.abs().max()) > 0
    assert v.queries == get_explainer(method, seed=3, **PARAMS[method]).query_budget(x.shape)
    assert 0 < v.remote_calls <= v.queries          # identical images within a batch are asked once


def test_maps_equal_under_errors_and_slow_answers(classifier, x):
    faulty = FaultyApp(create_app(classifier), fail_rate=0.2, drop_rate=0.05, delay=0.01, seed=4,
                       path="/v1/chat/completions")
    with ServerThread(faulty) as srv:
        bb = chat(srv.url, concurrency=6)
        direct = direct_blackbox(bb, faulty.state.model)
        for method in ("sobol", "lr"):
            v = bb.view()
            a = get_explainer(method, seed=1, **PARAMS[method]).explain(direct.view(), x, 1)
            b = get_explainer(method, seed=1, **PARAMS[method]).explain(v, x, 1)
            torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7 * float(a.abs().max()))
            assert v.queries == get_explainer(method, seed=1, **PARAMS[method]).query_budget(x.shape)
        assert faulty.stats["failed"] > 10 and faulty.stats["dropped"] > 0, faulty.stats
        assert bb.stats["retries"] >= faulty.stats["failed"] + faulty.stats["dropped"]


def test_samples_rule_counts_k_answers(server, x):
    bb = chat(server.url, samples=6, temperature=1.0, seed=11)
    batch = torch.stack([x, x * 0.5, x.flip(-2)])
    got = bb(batch)
    torch.testing.assert_close(got, direct_blackbox(bb, model_of(server))(batch))
    assert bb.calls_per_query == 6 and bb.remote_calls == 18 and bb.queries == 3
    assert torch.all((got * 6 - (got * 6).round()).abs() < 1e-5) and torch.all(got.sum(1) <= 1 + 1e-6)
    assert bb.estimate_cost(10, 1.0, 1.0) == pytest.approx(6 * chat(server.url).estimate_cost(10, 1.0, 1.0)
                                                           + 10 * 6 * 4 / 1e6)   # 5 answer tokens, not 1


def test_cost_formula_and_spending_cap_refuses_a_run(server, x):
    bb = chat(server.url, price_in=2.5, price_out=10.0, max_cost=0.03)
    t = bb.tokens_per_call
    assert t == {"image": 255, "prompt": math.ceil(len(bb.text) / 4) + 7, "answer": 1}    # 224 px: 85 + 170
    assert bb.estimate_cost(100) == pytest.approx(100 * ((255 + t["prompt"]) * 2.5 + 10.0) / 1e6)
    stats = server.server.config.app.state.stats
    before = stats["requests"]
    engine = Engine(disk_cache=False)
    with pytest.raises(SpendingCapExceeded, match="spending cap of 0.03") as refused:   # 136 queries: ~0.1
        engine.submit(bb, x, "sobol", PARAMS["sobol"], target=0)
    assert isinstance(refused.value, ValueError)              # the pages show it as a refused start
    assert stats["requests"] == before                        # nothing was sent
    assert engine.run(bb, x, "lr", {"n_samples": 20}, target=0, min_interval=0).status == "done"
    # used without the engine, the cap still stops a view before a call would pass it (42 calls fit)
    v, before = bb.view(), stats["requests"]
    v(torch.stack([x * (1 - i / 100) for i in range(40)]))
    with pytest.raises(SpendingCapExceeded, match="reached"):
        v(torch.stack([x * (1 - i / 100) for i in range(40, 45)]))
    assert v.remote_calls == stats["requests"] - before == 40 and v.spent <= 0.03
    with pytest.raises(SpendingCapExceeded):        # an explainer's run on a view stops likewise
        get_explainer("sobol", seed=0, **PARAMS["sobol"]).explain(bb.view(), x, 0)


def test_query_budget_is_hard(server, x):
    stats = server.server.config.app.state.stats
    bb = chat(server.url, max_queries=3)
    before = stats["requests"]
    bb(torch.stack([x, x * 0.8]))
    with pytest.raises(QueryBudgetExceeded):
        bb(torch.stack([x * 0.7, x * 0.6]))
    assert bb.queries == 2 and stats["requests"] - before == 2       # the refused batch sent nothing


def test_api_key_read_at_call_time_and_never_shown(classifier, x, monkeypatch, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("CHAT_TEST_KEY", KEY)
    with serve_in_thread(classifier, api_key=KEY) as srv:
        bb = chat(srv.url, api_key_env="CHAT_TEST_KEY")
        assert bb(x[None]).shape == (1, 3)
        snap = Engine(cache_dir=tmp_path).run(bb, x, "lr", {"n_samples": 8}, target=0, min_interval=0)
        assert snap.status == "done"
        written = "".join(p.read_text(errors="replace") for p in tmp_path.iterdir() if p.suffix == ".json")
        texts = [repr(bb), str(bb), repr(bb.view()), repr(bb.meta), repr(bb.stats), bb.id, repr(vars(bb)),
                 json.dumps(snap.record(), default=str), written]
        assert written and not any(KEY in t for t in texts)
        monkeypatch.setenv("CHAT_TEST_KEY", "sk-wrong-" + KEY[::-1])     # read at call time: the new value goes
        with pytest.raises(RemoteAuthError, match=r"401.*\$CHAT_TEST_KEY was not accepted") as wrong:
            bb(x[None].flip(-1))
        monkeypatch.delenv("CHAT_TEST_KEY")
        with pytest.raises(RemoteAuthError, match=r"wants an API key; set \$CHAT_TEST_KEY") as missing:
            bb(x[None] * 0.9)
        monkeypatch.setenv("CHAT_TEST_KEY", KEY)
        assert srv.server.config.app.state.stats["refused"] == 2
    with pytest.raises(RemoteModelError, match="did not answer") as down:        # the server is gone
        chat(srv.url, api_key_env="CHAT_TEST_KEY", max_retries=1)(x[None])
    for e in (wrong.value, missing.value, down.value):
        assert KEY not in str(e) and KEY not in repr(e) and KEY[::-1] not in str(e)
    assert caplog.records and KEY not in caplog.text and KEY[::-1] not in caplog.text


# ------------------------------------------------------------------------------------------ bad answers
class Scripted:
    """Forwards to the real chat app, except for the answers queued in ``plan``: (status, body, headers)."""

    def __init__(self, app):
        self.app, self.state, self.plan, self.served = app, app.state, [], 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.plan:
            return await self.app(scope, receive, send)
        status, body, headers = self.plan.pop(0)
        self.served += 1
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                *[(k.encode(), v.encode()) for k, v in headers.items()]]})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def scripted(classifier):
    app = Scripted(create_app(classifier))
    with ServerThread(app) as srv:
        yield srv, app


@pytest.mark.parametrize("body, message", [
    (b"", "empty body"),
    (b'{"choices": [{"message": ', "malformed body, not JSON"),
    (b'{"object": "error"}', "without a 'choices' list"),
    (b'{"choices": [{"message": {"content": "Cat"}, "logprobs": null}]}', "no logprobs.*use samples=k"),
])
def test_bad_bodies_have_clear_messages(scripted, x, body, message):
    srv, app = scripted
    app.plan = [(200, body, {})] * 3
    with pytest.raises(RemoteModelError, match=message):
        chat(srv.url, max_retries=2)(x[None])
    app.plan = []


def test_no_logprobs_server_says_use_samples_and_samples_work(classifier, x):
    with serve_in_thread(classifier, logprobs=False) as srv:
        with pytest.raises(ChatAnswerError, match=r"does not return token log-probabilities.*samples=k"):
            chat(srv.url)(x[None])
        assert chat(srv.url, samples=4)(x[None]).shape == (1, 3)


def test_candidate_missing_from_top_logprobs(server, x):
    bb = chat(server.url, candidates=["cat", "dog", "zebra"])       # no class is a zebra: never listed
    row = bb(x[None])[0].double()
    answer = model_of(server).complete(bb.request_body(bb.encode(x)))
    top = {t["token"]: t["logprob"] for t in answer["choices"][0]["logprobs"]["content"][0]["top_logprobs"]}
    assert "Zebra" not in top
    lp = torch.tensor([top["Cat"], top["Dog"], min(top.values()) - math.log(10)], dtype=torch.float64)
    torch.testing.assert_close(row, lp.softmax(0), rtol=1e-6, atol=1e-7)
    with pytest.raises(ChatAnswerError, match=r"\['zebra'\] not among the answer's 3 top_logprobs"):
        chat(server.url, candidates=["cat", "dog", "zebra"], missing="error")(x[None])


def test_http_429_retry_after_is_honoured(scripted, x, server):
    srv, app = scripted
    app.plan = [(429, b'{"error": "slow down"}', {"Retry-After": "1"})]
    t0 = time.monotonic()
    got = chat(srv.url)(x[None])
    assert time.monotonic() - t0 >= 0.95 and app.served >= 1       # waited what the server asked, not 5 ms
    torch.testing.assert_close(got, chat(server.url)(x[None]))
    app.plan = [(429, b"{}", {"Retry-After": "0"})] * 3
    with pytest.raises(RemoteModelError, match=r"still rate-limiting after 3 attempts \(HTTP 429"):
        chat(srv.url, max_retries=2)(x[None])
    app.plan = [(429, b"{}", {"Retry-After": "3600"})]
    with pytest.raises(RemoteModelError, match="asks to wait 3600 s"):
        chat(srv.url)(x[None])
    app.plan = []


def test_clear_errors_for_bad_setups(server, x):
    with pytest.raises(RemoteModelError, match="base URL end in /v1"):
        ChatBlackBox(server.url, model="m", prompt="?", candidates=CANDIDATES, image_size=32, api_key_env=None)(x[None])
    with pytest.raises(ValueError, match="either candidates"):
        ChatBlackBox(server.url, model="m", prompt="?", candidates=CANDIDATES, yes_no=True)
    with pytest.raises(ValueError, match="differ in their first word"):
        ChatBlackBox(server.url, model="m", prompt="?", candidates=["red fox", "red panda"])
    with pytest.raises(ValueError, match="URL"):
        ChatBlackBox("localhost:8000", model="m", prompt="?", yes_no=True)
    import httpx
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user",
                                                                                          "content": "hi"}]})
    assert r.status_code == 400 and "exactly one image_url" in r.json()["error"]


def test_first_token_matching_rules():
    words = ["cat", "dog", "elephant"]
    assert [match_token(t, words) for t in (" Cat", "\u0120dog", "\u2581DOG", "ele", "e", "", "The")] == \
        [0, 1, 1, 2, 2, None, None]
    top = [{"token": "Cat", "logprob": math.log(0.4)}, {"token": " cat", "logprob": math.log(0.2)},
           {"token": "Dog", "logprob": math.log(0.1)}, {"token": "The", "logprob": math.log(0.05)}]
    p = score_logprobs(top, words)
    e = 0.05 / 10                                             # elephant: least listed / 10
    np.testing.assert_allclose(p, np.array([0.6, 0.1, e]) / (0.7 + e), rtol=1e-12)
