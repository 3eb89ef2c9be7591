"""LR gradient estimation against the true gradient (autograd is used only here, in the test).

Figures (seed 0): smooth 64-dim function, 4,000 queries: cosine printed by the first test; tiny CNN on the cat
photo at 4,000 queries: plain vs blockwise printed by the second (README "core" section).
"""
import pytest
import torch
import torch.nn.functional as F

from explainers import get_explainer
from models import BlackBox, load_model

A = torch.linspace(-1.5, 1.5, 64).view(1, 8, 8)
B = torch.cos(torch.arange(64.0)).view(1, 8, 8) / 4


def smooth(batch: torch.Tensor) -> torch.Tensor:
    """A smooth analytic function of 64 inputs (N, 1, 8, 8) -> (N, 1)."""
    lin = (A * torch.sin(batch)).flatten(1).sum(1)
    quad = (B * batch).flatten(1).sum(1) ** 2 / 2
    return (lin + quad + 0.3 * torch.tanh(batch.flatten(1).mean(1) * 4)).unsqueeze(1)


def true_grad(fn, x, target=0):
    x = x.clone().requires_grad_(True)
    fn(x.unsqueeze(0))[0, target].backward()
    return x.grad.detach()


def cos(a, b):
    return F.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


# LR as an input-gradient estimator: additive full-resolution noise (the defaults draw contrast noise on a grid)
GRADIENT = dict(perturbation="additive", noise_resolution=0, channel_noise="independent", readout="abs_max")


def x64():
    return torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1


def test_lr_matches_the_gradient_of_a_smooth_64_dim_function():
    bb = BlackBox(smooth, labels=["f"], input_shape=(1, 8, 8), name="smooth64")
    x = x64()
    g = true_grad(smooth, x)
    e = get_explainer("lr", seed=0, n_samples=3999, sigma=0.05, **GRADIENT)   # + f(x) = 4,000 queries
    est = list(e.stream(bb, x, 0, min_interval=0))
    assert bb.queries == 4000
    ghat = est[-1].gradient
    c = cos(ghat, g)
    print(f"LR, smooth 64-dim function, 4000 queries: cosine {c:.3f}")
    assert c >= 0.9
    # exact score-function scaling with the true noise std: the estimate has the gradient's size, not a multiple
    scale = float((ghat * g).sum() / (g * g).sum())
    assert 0.9 < scale < 1.1, scale
    # the running mean improves along the stream
    first = cos(est[0].gradient, g)
    assert first < c
    # readouts
    assert torch.allclose(est[-1].saliency, ghat.abs().amax(0))
    gx = get_explainer("lr", seed=0, n_samples=3999, sigma=0.05, **{**GRADIENT, "readout": "grad_x_input"}).explain(bb, x, 0)
    assert torch.allclose(gx, (ghat * x).sum(0), atol=1e-6)


def test_coarse_noise_estimates_the_cell_mean_gradient():
    bb = BlackBox(smooth, labels=["f"], input_shape=(1, 8, 8), name="smooth64")
    x = x64()
    g = true_grad(smooth, x)
    cell_mean = F.avg_pool2d(g.unsqueeze(0), 2)[0].repeat_interleave(2, 1).repeat_interleave(2, 2)
    est = list(get_explainer("lr", seed=0, n_samples=2000, sigma=0.05,
                                    **{**GRADIENT, "noise_resolution": 4, "upsampling": "nearest"})
               .stream(bb, x, 0, min_interval=0))[-1]
    ghat = est.gradient
    assert cos(ghat, cell_mean) > 0.97
    scale = float((ghat * cell_mean).sum() / (cell_mean * cell_mean).sum())
    assert 0.9 < scale < 1.1, scale


@pytest.mark.slow   # 12,000 queries: a few seconds on a quiet 2-core CPU, over 20 s on a loaded one
def test_blockwise_beats_plain_on_the_tiny_cnn_at_equal_budget(cat_image):
    bb = load_model("tiny_cnn", device="cpu", score_mode="logit", batch_size=32)   # no measuring in a test
    x = bb.preprocess(cat_image)
    target = int(bb(x.unsqueeze(0))[0].argmax())
    g = true_grad(bb.module, x, target)
    out = {}
    for label, kw in [("plain", {}), ("blockwise 8 px", dict(block_size=8)),
                      ("blockwise 8 px, iid draws", dict(block_size=8, orthogonal=False))]:
        v = bb.view()
        est = list(get_explainer("lr", seed=0, n_samples=3999, sigma=0.2, **GRADIENT, **kw).stream(v, x, target, min_interval=0))[-1]
        assert v.queries == 4000
        out[label] = cos(est.gradient, g)
    print("LR on tiny_cnn, 4000 queries, cosine with the true gradient:",
          ", ".join(f"{k} {v:.3f}" for k, v in out.items()))
    assert out["blockwise 8 px"] > out["plain"] + 0.05
    assert out["plain"] > 0.4   # the plain estimate is a real (noisier) estimate, not noise


def test_blockwise_perturbs_one_block_per_query():
    seen = []

    def f(batch):
        seen.append(batch.clone())
        return batch.flatten(1).sum(1, keepdim=True)

    bb = BlackBox(f, labels=["sum"], input_shape=(1, 8, 8), name="sum")
    x = torch.zeros(1, 8, 8)
    ghat = list(get_explainer("lr", n_samples=128, block_size=4, sigma=0.1, **GRADIENT).stream(bb, x, 0, min_interval=0))[-1]
    batch = torch.cat(seen[1:])                                      # seen[0] is f(x), the control variate
    touched = (batch[:, 0].reshape(-1, 2, 4, 2, 4) != 0).any(dim=(2, 4)).sum(dim=(1, 2))
    assert (touched == 1).all()
    # a linear function: 16 orthogonal draws per 16-pixel block span it, so they beat 16 iid draws by far (the
    # chi-distributed lengths that keep every draw exactly Gaussian are what is left of the error)
    c_ortho = cos(ghat.gradient, torch.ones(1, 8, 8))
    iid = get_explainer("lr", n_samples=128, block_size=4, sigma=0.1, orthogonal=False, **GRADIENT)
    c_iid = cos(list(iid.stream(bb, x, 0, min_interval=0))[-1].gradient, torch.ones(1, 8, 8))
    assert c_ortho > 0.85 and c_ortho > c_iid + 0.1, (c_ortho, c_iid)


def test_every_block_has_an_estimate_in_the_first_streamed_map():
    """Blockwise LR goes round-robin over the blocks; its first map waits for one full round, so no part of the
    image is blank at the start (a 128 x 128 input in 16 px blocks: 64 blocks, several forward calls)."""
    bb = BlackBox(lambda b: b.flatten(1).sum(1, keepdim=True), labels=["sum"], input_shape=(1, 128, 128),
                  name="sum", batch_size=4)
    x = torch.rand(1, 128, 128, generator=torch.Generator().manual_seed(0)) + 0.5
    for params in (dict(block_size=16, noise_resolution=0), dict(block_size=16, noise_resolution=32),
                   dict(block_size=16, **GRADIENT)):
        e = get_explainer("lr", seed=0, n_samples=400, **params)
        assert e.per_call(bb, x, per_item=2) < 64          # a round takes several calls
        first = next(iter(e.stream(bb.view(), x, 0, min_interval=0)))
        cells = first.saliency.reshape(8, 16, 8, 16).permute(0, 2, 1, 3).reshape(64, -1)
        assert (cells.abs().amax(1) > 0).all(), params
        assert first.metrics["draws_per_block"] >= 1
