"""The public BlackBox surface: views keep their class, counting outside ``__call__``, the raw forward hook and
the score transform, the one device picker and the cache folder."""
import pytest
import torch

import models
from models import BlackBox, HttpBlackBox, QueryBudgetExceeded, cache_root, load_model, pick_device
from models.serve import serve_in_thread


class Doubling(BlackBox):
    """A subclass that reaches its model through the hook only (as HttpBlackBox does)."""

    def __init__(self, **kw):
        self.calls = []
        super().__init__(None, labels=list("ab"), input_shape=(1, 1, 1), outputs="logits", **kw)

    def _start_counters(self):
        super()._start_counters()
        self.own = 0

    def forward_raw(self, x):
        self.calls.append(x.shape[0])
        self.own += x.shape[0]
        return torch.cat([x.flatten(1), -x.flatten(1)], 1) * 2


def test_view_keeps_the_subclass_and_its_own_state():
    bb = Doubling(score_mode="logit", max_queries=100)
    v = bb.view(score_mode="prob", max_queries=3)
    assert type(v) is Doubling and v.calls is bb.calls          # same class, shared model-side state
    x = torch.ones(2, 1, 1, 1)
    torch.testing.assert_close(bb(x), torch.tensor([[2.0, -2.0]] * 2))
    torch.testing.assert_close(v(x), torch.tensor([[2.0, -2.0]] * 2).softmax(-1))
    assert (bb.queries, v.queries, bb.own, v.own) == (2, 2, 2, 2)   # counters and per-view state apart
    with pytest.raises(QueryBudgetExceeded):
        v(x)
    assert v.queries == 2 and bb.max_queries == 100 and bb.score_mode == "logit"
    assert bb.calls == [2, 2]                                   # the refused call never reached the model
    with pytest.raises(ValueError, match="score_mode"):
        bb.view(score_mode="softmax")


def test_blackbox_needs_a_model_unless_the_hook_is_overridden():
    with pytest.raises(TypeError, match="needs a model"):
        BlackBox(None, input_shape=(1, 1, 1))


def test_public_counting_and_score_transform():
    bb = BlackBox(lambda b: b.flatten(1)[:, :3], labels=list("abc"), input_shape=(3, 1, 1), outputs="logits",
                  max_queries=5)
    bb.count(4)                                   # e.g. a white-box pass with autograd, outside __call__
    assert bb.queries == 4
    with pytest.raises(QueryBudgetExceeded, match="budget of 5"):
        bb.count(2)
    assert bb.queries == 4                        # a refused count counts nothing
    raw = torch.tensor([[1.0, 2.0, 3.0]])
    torch.testing.assert_close(bb.to_score(raw), raw.softmax(-1))
    torch.testing.assert_close(bb.view(score_mode="logprob").to_score(raw), raw.log_softmax(-1))
    torch.testing.assert_close(bb.view(score_mode="logit").to_score(raw), raw)


def test_forward_raw_counts_nothing_and_the_torch_backend_keeps_autograd(tiny):
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    with torch.no_grad():
        torch.testing.assert_close(tiny.to_score(tiny.forward_raw(x)), tiny(x.detach()))
    assert tiny.queries == 1                      # the call above; forward_raw counted nothing
    plain = load_model("tiny_cnn", device="cpu", backend="torch")
    out = plain.forward_raw(x)
    assert plain.backend == "torch" and out.shape == (1, 10) and out.requires_grad and plain.queries == 0
    (g,) = torch.autograd.grad(plain.to_score(out)[0, 3], x)
    assert g.shape == x.shape and float(g.abs().sum()) > 0


def test_http_view_is_an_http_blackbox_with_its_own_counts_and_budget():
    local = load_model("tiny_cnn", device="cpu")
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with serve_in_thread(local, max_batch=8) as srv:
        bb = HttpBlackBox(srv.url, api_key_env=None, max_retries=2, backoff=0.01, timeout=10)
        bb(x[:1])
        v = bb.view(max_queries=4)
        assert type(v) is HttpBlackBox and v.url == bb.url and v.encoding == bb.encoding
        torch.testing.assert_close(v(x), local(x))
        assert (bb.queries, bb.remote_queries) == (1, 1)           # the view's traffic is the view's
        assert (v.queries, v.remote_queries) == (4, 3)             # x[0] came from the shared cache
        assert v.total_remote_queries == bb.total_remote_queries == 4
        with pytest.raises(QueryBudgetExceeded):
            v(x[:1])
        bb(x)                                                       # the parent has no cap
        assert bb.queries == 5 and v.queries == 4
        w = v.view(score_mode="logit")
        assert type(w) is HttpBlackBox and w.max_queries is None
        torch.testing.assert_close(w(x), local.view(score_mode="logit")(x))
        assert (w.queries, w.remote_queries) == (4, 0)
        bb.close()


def test_one_device_picker(monkeypatch):
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device() == pick_device("auto") == pick_device("") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == pick_device(None) == torch.device("cuda")
    assert pick_device("cpu") == torch.device("cpu")              # an explicit choice wins


@pytest.mark.filterwarnings("ignore::FutureWarning")      # torch.jit's deprecation notice
def test_torchscript_loader_uses_the_picker(monkeypatch, tmp_path):
    """No second device rule: a TorchScript file with no device asked for goes where ``pick_device`` says."""
    seen = []
    real = models.base.pick_device
    monkeypatch.setattr(models.loaders, "pick_device", lambda d=None: seen.append(d) or real("cpu"))
    net = torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)))
    path = tmp_path / "m.pt"
    torch.jit.save(net, str(path))
    bb = models.load_torchscript(path, (3, 2, 2), device=None)
    assert seen == [None] and bb.device == torch.device("cpu")


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SALIENCY_CACHE_DIR", str(tmp_path))
    assert cache_root() == tmp_path
