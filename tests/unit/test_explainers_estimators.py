"""The shared pieces of explainers/: the score-function estimator and the batching plan."""
import math

import pytest
import torch

from explainers import get_explainer
from explainers.estimators import ScoreFunctionEstimator, central_difference, control_variate
from models import BlackBox


def test_estimator_recovers_a_linear_gradient():
    """f(x) = w.x: pairs and control-variate singles both average to w (the smoothed gradient of a linear f)."""
    g = torch.Generator().manual_seed(0)
    w, x, sigma = torch.randn(6, generator=g), torch.randn(6, generator=g), 0.1
    f = lambda b: b @ w                                                   # noqa: E731
    for paired in (True, False):
        est = ScoreFunctionEstimator(sigma, 6)
        eps = torch.randn(20_000, 6, generator=g)
        coef = (central_difference(f(x + sigma * eps), f(x - sigma * eps)) if paired
                else control_variate(f(x + sigma * eps), f(x)))
        est.add(eps, coef)
        assert est.count.item() == 20_000
        torch.testing.assert_close(est.gradient()[0], w, atol=0.05, rtol=0.05)


def test_groups_rounds_and_one_group_agree():
    """A draw counts only for its own group; whole rounds (the lab's toy) equal the same draws added one by one."""
    g = torch.Generator().manual_seed(1)
    eps, coef = torch.randn(5, 3, 2, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g,
                                                                                     dtype=torch.float64)
    rounds = ScoreFunctionEstimator(0.5, 2, groups=3, dtype=torch.float64)
    rounds.add_rounds(eps, coef)
    grouped = ScoreFunctionEstimator(0.5, 2, groups=3, dtype=torch.float64)
    grouped.add(eps.reshape(-1, 2), coef.reshape(-1), torch.arange(3).repeat(5))
    torch.testing.assert_close(rounds.gradient(), grouped.gradient())
    for j in range(3):
        one = ScoreFunctionEstimator(0.5, 2, dtype=torch.float64)
        one.add(eps[:, j], coef[:, j])
        torch.testing.assert_close(one.gradient()[0], grouped.gradient()[j])
    empty = ScoreFunctionEstimator(0.5, 2, groups=4)
    empty.add(torch.ones(1, 2), torch.ones(1), torch.tensor([1]))
    assert empty.gradient()[0].abs().sum() == 0 and empty.gradient()[1].tolist() == [2.0, 2.0]


def box(shape, bs):
    return BlackBox(lambda b: b.flatten(1)[:, :2], labels=["a", "b"], input_shape=shape, batch_size=bs)


@pytest.mark.parametrize("bs", [1, 3, 8, 32, 64, 100, 300])
@pytest.mark.parametrize("hw", [32, 64, 65, 224])
def test_batching_plan_keeps_each_methods_numbers(bs, hw):
    """The one plan gives every method the forward-call sizes it had before the plan was shared."""
    x, bb = torch.zeros(3, hw, hw), box((3, hw, hw), bs)
    small = hw * hw <= 64 * 64
    e = get_explainer("rise")
    default = bs * (max(4, 256 // bs) if small else 4)                    # RISE, occlusion, LR (per query)
    assert e.per_call(bb, x) == default
    assert e.per_call(bb, x, per_item=2) == max(1, default // 2)          # LR's antithetic pairs
    assert e.per_call(bb, x, min_batches=1) == (bs * max(1, 256 // bs) if small else bs * 4)          # Sobol
    assert e.per_call(bb, x, small_queries=0) == bs * 4                                               # DAX
    assert e.per_call(bb, x, per_item=64, small_queries=0, large_batches=0) == (                       # GEEX
        max(1, (bs * 4) // 64) if small else 1)


def test_relative_standard_error_matches_the_spread_over_seeds():
    """The reported |standard error| / |mean| is what independent repetitions actually scatter by: over 12
    seeds of 200 pairs each on a linear f, the rms distance of the estimates from their mean is within 25 %
    of the mean reported standard error; with groups, the same holds over all groups together."""
    g = torch.Generator().manual_seed(3)
    w, x, sigma = torch.randn(40, generator=g), torch.randn(40, generator=g), 0.1
    f = lambda b: b @ w + 0.5 * (b ** 2).sum(-1)                         # noqa: E731
    for groups in (1, 4):
        grads, ses = [], []
        for _ in range(12):
            est = ScoreFunctionEstimator(sigma, 10 if groups > 1 else 40, groups=groups)
            eps = torch.randn(200, 40, generator=g)
            coef = central_difference(f(x + sigma * eps), f(x - sigma * eps))
            if groups == 1:
                est.add(eps, coef)
            else:   # the same 40 dims as 4 blocks of 10, one block perturbed per draw (LR's blockwise)
                blocks = torch.arange(200) % 4
                mask = (torch.arange(40)[None, :] // 10 == blocks[:, None]).float()
                coef = central_difference(f(x + sigma * eps * mask), f(x - sigma * eps * mask))
                est.add(eps.view(200, 4, 10)[torch.arange(200), blocks], coef, blocks)
            grad = est.gradient().flatten()
            grads.append(grad)
            ses.append(est.relative_standard_error() * float(grad.norm()))
        spread = float(((torch.stack(grads) - torch.stack(grads).mean(0)) ** 2).sum(1).mean() * 12 / 11) ** 0.5
        mean_se = sum(ses) / len(ses)
        assert 0.75 < mean_se / spread < 1.25, (groups, mean_se, spread)
    assert math.isnan(ScoreFunctionEstimator(sigma, 3).relative_standard_error())    # NaN before two draws


@pytest.mark.parametrize("name,params", [
    ("lr", dict(n_samples=3200)),
    ("lr", dict(n_samples=3200, block_size=8)),                 # blockwise, orthogonal draws
    ("geex", dict(n_masks=1600)),
])
def test_streamed_gradient_error_falls_like_one_over_sqrt_queries(name, params):
    """On an analytic black box (class 0 = how much of a region's content is present), the relative standard
    error LR and GEEX report falls like 1/sqrt(queries): 10 x the queries, ~sqrt(10) = 3.2 x smaller."""
    from tests.analytic import presence_box
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    bb = presence_box(x, (slice(8, 20), slice(10, 24)))
    ests = list(get_explainer(name, seed=0, **params).stream(bb, x, 0, min_interval=0))
    rse = [(e.queries, e.metrics["gradient_rse"]) for e in ests]
    q_last, r_last = rse[-1]
    q_early, r_early = min(rse, key=lambda qr: abs(qr[0] - q_last / 10))
    expected = (q_last / q_early) ** 0.5
    assert 0.7 * expected < r_early / r_last < 1.4 * expected, (q_early, r_early, q_last, r_last)
    assert r_last < 1.0                  # not a dimensionless constant: below 100 % at a few thousand queries
