"""Convergence-lab math (explainers/_lab.py) and gradient_fidelity (explainers/_fidelity.py).

The toy gradient is checked against central finite differences; the LR estimator against the analytic
gradient (variance falls with n, bias grows with sigma); gradient_fidelity against autograd on tiny_cnn.
"""
import numpy as np
import pytest
import torch

import explainers  # noqa: F401  (registers the methods)
from runtime.lab_run import LabRun
from evaluation.lab import (cosine_curves, step_band, grid, lr_toy_gradient, mean_cosine, toy_f, toy_grad,
                             with_budget)
from evaluation.fidelity import true_gradient
from evaluation.metrics import gradient_fidelity
from models import BlackBox


def test_toy_gradient_matches_finite_differences():
    p = grid(9) + 0.013   # off-grid so no point sits on a bump centre
    h = 1e-5
    fd = np.stack([(toy_f(p + [h, 0]) - toy_f(p - [h, 0])) / (2 * h),
                   (toy_f(p + [0, h]) - toy_f(p - [0, h])) / (2 * h)], -1)
    np.testing.assert_allclose(toy_grad(p), fd, atol=1e-7)
    assert np.abs(toy_grad(p)).max() > 0.5      # a field with real slopes, not near zero


def test_lr_toy_estimate_converges_with_samples():
    p, g = grid(12), toy_grad(grid(12))
    err = [np.mean([np.linalg.norm(lr_toy_gradient(p, 0.1, n, seed=s) - g) for s in range(3)])
           for n in (20, 200, 2000)]
    assert err[0] > 2 * err[1] > 4 * err[2]     # roughly 1/sqrt(n): sqrt(10) per step
    assert mean_cosine(lr_toy_gradient(p, 0.1, 4000, seed=1), g) > 0.99


def test_small_sigma_has_lower_bias():
    """With many samples the error left is the bias of the Gaussian-smoothed gradient: it grows with sigma."""
    p, g = grid(10), toy_grad(grid(10))
    bias = {s: np.linalg.norm(lr_toy_gradient(p, s, 20000, seed=0) - g) for s in (0.05, 0.5, 1.0)}
    assert bias[0.05] < bias[0.5] < bias[1.0]
    assert mean_cosine(lr_toy_gradient(p, 1.0, 20000, seed=0), g) < 0.9 < mean_cosine(
        lr_toy_gradient(p, 0.05, 20000, seed=0), g)


def test_lr_toy_rejects_bad_settings():
    with pytest.raises(ValueError, match="sigma"):
        lr_toy_gradient(grid(3), 0.0, 10)
    with pytest.raises(ValueError, match="n_samples"):
        lr_toy_gradient(grid(3), 0.1, 1)


@pytest.mark.parametrize("mode", ["logit", "prob", "logprob"])
def test_gradient_fidelity_on_tiny_cnn(tiny, mode):
    bb = tiny.view(score_mode=mode)
    x = torch.rand(bb.input_shape, generator=torch.Generator().manual_seed(0))
    g = true_gradient(bb, x, 3)
    assert gradient_fidelity(bb, x, 3, g) == pytest.approx(1.0, abs=1e-9)
    assert gradient_fidelity(bb, x, 3, -g) == pytest.approx(-1.0, abs=1e-9)
    noisy = g + torch.randn(g.shape, generator=torch.Generator().manual_seed(1)) * g.std() * 3
    assert 0.05 < gradient_fidelity(bb, x, 3, noisy) < 0.9
    assert bb.queries == 0                      # autograd is not a query


def test_gradient_fidelity_uses_the_score_mode(tiny):
    """The softmax gradient differs from the logit gradient: the score space matters."""
    x = torch.rand(tiny.input_shape, generator=torch.Generator().manual_seed(2))
    g_logit = true_gradient(tiny.view(score_mode="logit"), x, 3)
    g_prob = true_gradient(tiny.view(score_mode="prob"), x, 3)
    assert gradient_fidelity(tiny.view(score_mode="prob"), x, 3, g_logit) < 0.999
    # the finite-difference slope of the served prob score agrees with the prob gradient
    bb = tiny.view(score_mode="prob")
    d = g_prob / g_prob.norm()
    h = 1e-2
    fd = (bb((x + h * d).unsqueeze(0))[0, 3] - bb((x - h * d).unsqueeze(0))[0, 3]) / (2 * h)
    assert float(fd) == pytest.approx(float(g_prob.norm()), rel=0.05)


def test_gradient_fidelity_refuses_a_black_box(tiny):
    fn = BlackBox(lambda b: tiny(b), labels=tiny.labels, input_shape=tiny.input_shape)
    with pytest.raises(ValueError, match="open torch model"):
        gradient_fidelity(fn, torch.rand(tiny.input_shape), 0, torch.rand(tiny.input_shape))
    x = torch.rand(tiny.input_shape)
    with pytest.raises(ValueError, match="shape"):
        gradient_fidelity(tiny, x, 0, torch.rand(3, 8, 8))


def test_cosine_curves_lr_improves_with_queries(tiny):
    bb = tiny.view(score_mode="logit")
    x = torch.rand(bb.input_shape, generator=torch.Generator().manual_seed(0))
    seen = []
    curves = cosine_curves(bb, x, 3, {"LR plain": {"method": "lr", "sigma": 0.05, "n_samples": 3000}},
                           seeds=[0, 1], checkpoints=[300, 3000],
                           on_point=lambda *a: seen.append(a))
    c = curves["LR plain"]
    assert c.queries == [300, 3000] and c.cosine.shape == (2, 2) and c.gap is None
    mean, lo, hi = c.band()
    assert mean[1] > mean[0] + 0.1 and lo[1] > 0.3     # more queries, closer to the true gradient
    assert {a[1] for a in seen} == {0, 1} and max(a[2] for a in seen) == 3001


def test_cosine_curves_geex_igeex_gap(tiny):
    bb = tiny.view(score_mode="logit")
    x = torch.rand(bb.input_shape, generator=torch.Generator().manual_seed(0))
    curves = cosine_curves(bb, x, 3, {"GEEX": {"method": "geex", "sigma": 0.05}, "iGEEX": {"method": "igeex"}},
                           seeds=[0], checkpoints=[2000])
    assert curves["GEEX"].cosine[0, 0] > 0.2            # well above chance (|cos| ~ 0.02 in 3072 dimensions)
    assert curves["iGEEX"].gap is not None and np.isfinite(curves["iGEEX"].gap).all()


def test_with_budget_and_white_box_check(tiny):
    assert with_budget("lr", {}, 1000) == {"n_samples": 1000}
    assert with_budget("geex", {}, 1000) == {"n_masks": 500}
    fn = BlackBox(lambda b: tiny(b), labels=tiny.labels, input_shape=tiny.input_shape)
    with pytest.raises(ValueError, match="open torch model"):
        cosine_curves(fn, torch.rand(tiny.input_shape), 0, {"lr": {}}, [0], [10])


def test_step_band_and_lab_run(tiny):
    mean, lo, hi = step_band([[(10, 0.2), (20, 0.6)], [(15, 0.4)]], [5, 10, 15, 25])
    assert np.isnan(mean[0]) and mean[1] == pytest.approx(0.2)
    assert (lo[2], hi[2]) == pytest.approx((0.2, 0.4)) and (lo[3], hi[3]) == pytest.approx((0.4, 0.6))
    bb = tiny.view(score_mode="logit")
    run = LabRun(bb, torch.rand(bb.input_shape), 3, {"LR": {"method": "lr", "sigma": 0.05}}, [0, 1], 200)
    run.wait(60)
    assert run.done and run.error is None and run.progress() == 1.0
    m, lo, hi = run.bands([201])["LR"]   # 200 samples + the control-variate query
    assert lo[0] <= m[0] <= hi[0] and np.isfinite(m[0])
