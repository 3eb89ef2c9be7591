"""The shared pieces of explainers/: the score-function estimator and the batching plan."""
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
