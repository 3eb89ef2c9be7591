"""The bundled models on real photographs, and the BlackBox contract (counting, chunking, score modes, views)."""
from pathlib import Path

import pytest
import torch

from models import BlackBox, QueryBudgetExceeded, decode_image, list_models, load_model

EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "examples"


def fixed_batch(bb, n=4):
    """A view with a fixed chunk size: no batch-size measurement inside a unit test."""
    v = bb.view()
    v.batch_size = n
    return v


def test_bundled_model_on_real_photos(effnet, cat_image, coffee_image):
    effnet = fixed_batch(effnet)
    assert "efficientnet_lite0" in list_models() and "tiny_cnn" not in list_models()
    assert "tiny_cnn" in list_models(include_hidden=True)
    top = effnet.predict(effnet.preprocess(cat_image), k=3)
    assert top[0][0] == 285 and top[0][1] == "Egyptian cat"
    assert effnet.predict(effnet.preprocess(coffee_image), k=1)[0][0] == 967


@pytest.mark.parametrize("name,cls", [("cat.png", 285), ("coffee.png", 967)])
def test_bundled_model_on_example_files(effnet, name, cls):
    effnet = fixed_batch(effnet)
    img = decode_image((EXAMPLES / name).read_bytes()).image
    x = effnet.preprocess(img)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    scores = effnet(x.unsqueeze(0))
    assert scores.shape == (1, 1000) and int(scores.argmax()) == cls


def test_blackbox_counts_chunks_and_views():
    chunks = []

    def fn(b):
        chunks.append(b.shape[0])
        return b.flatten(1)[:, :4] * 2

    bb = BlackBox(fn, labels=list("abcd"), input_shape=(1, 2, 2), batch_size=3, name="double")
    x = torch.arange(28.0).view(7, 1, 2, 2)
    out = bb(x)
    assert chunks == [3, 3, 1] and bb.queries == 7
    torch.testing.assert_close(out, x.flatten(1) * 2)          # chunks are re-assembled in order
    v = bb.view()
    v(x[:2])
    assert v.queries == 2 and bb.queries == 7                   # a view has its own counter, shares the model
    bb.reset_queries()
    assert bb.queries == 0 and bb.num_classes == 4 and not bb.is_white_box
    capped = bb.view(max_queries=5)
    capped(x[:4])
    with pytest.raises(QueryBudgetExceeded, match="budget of 5"):
        capped(x[:2])
    assert capped.queries == 4                                  # the refused call served nothing


def test_score_modes():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    mk = lambda mode, outputs="logits": BlackBox(lambda b: logits.expand(b.shape[0], 3), labels=list("abc"),
                                                 input_shape=(1, 1, 1), outputs=outputs, score_mode=mode)
    x = torch.zeros(2, 1, 1, 1)
    p = mk("prob")(x)
    torch.testing.assert_close(p.sum(1), torch.ones(2))
    torch.testing.assert_close(mk("logit")(x), logits.expand(2, 3))
    torch.testing.assert_close(mk("logprob")(x), p.log())
    probs = logits.softmax(-1)
    pb = BlackBox(lambda b: probs.expand(b.shape[0], 3), labels=list("abc"), input_shape=(1, 1, 1),
                  outputs="probs", score_mode="logprob")
    torch.testing.assert_close(pb(x), p.log())
    assert mk("prob").view(score_mode="logit")(x)[0, 0] == 2.0
    with pytest.raises(ValueError, match="score_mode"):
        mk("softmax")


def test_tiny_cnn_is_a_module_backed_box(tiny):
    assert tiny.is_white_box and tiny.input_shape == (3, 32, 32) and tiny.num_classes == 10
    x = torch.randn(5, 3, 32, 32)
    out = tiny(x)
    assert out.shape == (5, 10) and not out.requires_grad and tiny.queries == 5
    # same inputs, same outputs (fixed weights): tests and caches can rely on it
    torch.testing.assert_close(load_model("tiny_cnn", device="cpu")(x), out)
