"""GEEX and iGEEX against analytic truths: a smooth black box of 64 inputs with a known gradient."""
import pytest
import torch

from explainers import get_explainer
from models import BlackBox

# GEEX / iGEEX as gradient estimators: additive full-resolution noise (the paper); the defaults draw contrast
# noise on a coarse grid
GRADIENT = dict(perturbation="additive", noise_resolution=0)

G = torch.Generator().manual_seed(0)
W = torch.randn(64, generator=G)
A = torch.randn(64, 64, generator=G) * 0.05
X = torch.randn(1, 8, 8, generator=G) * 0.5


def smooth(b: torch.Tensor) -> torch.Tensor:
    v = b.reshape(b.shape[0], -1)
    return (torch.tanh(0.3 * v @ W) + 0.05 * torch.sin(v @ A).sum(1))[:, None]


def true_gradient(x: torch.Tensor) -> torch.Tensor:
    xv = x.clone().requires_grad_(True)
    smooth(xv.unsqueeze(0))[0, 0].backward()
    return xv.grad


def box() -> BlackBox:
    return BlackBox(smooth, labels=["y"], input_shape=(1, 8, 8))


def cosine(a, b) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))


def test_geex_reaches_cosine_090_with_the_true_gradient_in_20000_queries():
    bb = box()
    est = list(get_explainer("geex", seed=0, n_masks=10_000, sigma=0.05, **GRADIENT).stream(bb, X, 0))[-1]
    assert est.queries == bb.queries == 20_000
    c = cosine(est.gradient, true_gradient(X))
    print(f"GEEX cosine with the true gradient, 20,000 queries: {c:.4f}")
    assert c >= 0.9


def test_geex_scale_is_exact():
    """The reference code's 1/(4 sigma) scaling error would make this ratio far from 1."""
    est = get_explainer("geex", seed=1, n_masks=10_000, sigma=0.05, **GRADIENT)
    g = list(est.stream(box(), X, 0))[-1].gradient
    t = true_gradient(X)
    assert 0.9 < float((g * t).sum() / (t * t).sum()) < 1.1


def test_igeex_completeness_gap_below_5_percent_in_20000_queries():
    bb = box()
    est = list(get_explainer("igeex", seed=0, n_masks=10_000, sigma=0.05, baseline="zero", **GRADIENT)
               .stream(bb, X, 0))[-1]
    assert est.queries == 20_002
    delta = float(smooth(X[None]) - smooth(torch.zeros(1, 1, 8, 8)))
    gap = abs(float(est.extras["attribution"].sum()) - delta) / abs(delta)
    print(f"iGEEX completeness gap, 20,000 queries: {gap:.4f} of |f(x) - f(x0)| = {abs(delta):.3f}")
    assert gap < 0.05
    assert est.metrics["completeness_gap"] == pytest.approx(gap, rel=1e-4)
    assert float(est.saliency.sum()) == pytest.approx(float(est.extras["attribution"].sum()), rel=1e-4)


def test_igeex_gap_shrinks_as_queries_accrue():
    ests = list(get_explainer("igeex", seed=2, n_masks=4000, sigma=0.05, baseline="zero", **GRADIENT)
                .stream(box(), X, 0, min_interval=0))
    early = [e.metrics["completeness_gap"] for e in ests if e.queries <= 300]
    assert ests[-1].metrics["completeness_gap"] < max(early)


def test_smoothed_noise_keeps_unit_variance_and_shared_noise_estimates_the_channel_sum():
    e = get_explainer("geex", n_masks=2, smooth_sigma=2.0, **GRADIENT)
    eps = e._noise(4000, e._layout(torch.zeros(3, 16, 16)), torch.Generator().manual_seed(0))
    assert eps.shape == (4000, 1, 16, 16)
    assert abs(float(eps[:, :, 4:12, 4:12].var()) - 1.0) < 0.1
    # a linear model over 3 channels: shared noise estimates the per-pixel channel sum of the weights
    w = torch.randn(3, 4, 4, generator=G)
    bb = BlackBox(lambda b: (b * w).sum(dim=(1, 2, 3))[:, None], labels=["y"], input_shape=(3, 4, 4))
    g = list(get_explainer("geex", seed=0, n_masks=3000, sigma=0.1, **GRADIENT)
             .stream(bb, torch.zeros(3, 4, 4), 0))[-1]
    assert g.gradient.shape == (1, 4, 4)
    assert cosine(g.gradient[0], w.sum(0)) > 0.97
    gi = list(get_explainer("geex", seed=0, n_masks=3000, sigma=0.1, channel_noise="independent", **GRADIENT)
              .stream(bb, torch.zeros(3, 4, 4), 0))[-1]
    assert gi.gradient.shape == (3, 4, 4)
    assert cosine(gi.gradient, w) > 0.97


@pytest.mark.parametrize("resolution", [0, 4])
def test_igeex_contrast_noise_keeps_completeness(resolution):
    """Contrast noise along x - x0 estimates gradient x (x - x0) per cell directly: its cells still add up to
    f(x) - f(x0), at full resolution and on a coarse grid."""
    est = list(get_explainer("igeex", seed=0, n_masks=6000, sigma=0.1, baseline="zero",
                             noise_resolution=resolution).stream(box(), X, 0))[-1]
    print(f"iGEEX contrast, grid {resolution}: completeness gap {est.metrics['completeness_gap']:.3f}")
    assert est.metrics["completeness_gap"] < 0.1
