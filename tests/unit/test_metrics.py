"""Metrics against black boxes whose best ordering is known, hand-made masks, and the real model on the cat."""
import numpy as np
import pytest
import torch

from explainers import get_explainer
from explainers.masks import make_baseline
from evaluation.metrics import (STEPS, box_mask, deletion_auc, deletion_curve, evaluate, insertion_auc,
                                insertion_curve, iou, mu_fidelity, mu_fidelity_result, pointing_game,
                                rank_correlation)
from models import BlackBox

H = W = 24


def additive(a: torch.Tensor) -> BlackBox:
    """f(x) = sum a * x: removing pixel i costs exactly a_i x_i, so the best deletion order is known."""
    return BlackBox(lambda b: (b[:, 0] * a).flatten(1).sum(1, keepdim=True), labels=["f"], input_shape=(1, H, W))


@pytest.fixture()
def case():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(H, W, generator=g) ** 3          # a few strong pixels, many weak ones
    x = torch.rand(1, H, W, generator=g) + 0.1
    return a, x


def test_auc_is_the_trapezoid_of_the_curve_by_hand():
    bb = BlackBox(lambda b: (b[:, 0, 0] * torch.tensor([2.0, 1.0])).sum(1, keepdim=True), labels=["f"],
                  input_shape=(1, 1, 2))
    x = torch.ones(1, 1, 2)
    r = deletion_curve(bb, x, 0, np.array([[2.0, 1.0]]), steps=2)
    np.testing.assert_allclose(r.curve, [3.0, 1.0, 0.0])      # remove the weight-2 pixel first, then the other
    assert r.value == pytest.approx((3 / 2 + 1 + 0 / 2) / 2)
    r = deletion_curve(bb, x, 0, np.array([[1.0, 2.0]]), steps=2)   # the wrong order
    np.testing.assert_allclose(r.curve, [3.0, 2.0, 0.0])
    ins = insertion_curve(bb, x, 0, np.array([[2.0, 1.0]]), steps=2, substrate="zero")
    np.testing.assert_allclose(ins.curve, [0.0, 2.0, 3.0])


def test_perfect_map_beats_random_and_inverted_on_deletion_and_insertion(case):
    a, x = case
    bb = additive(a)
    perfect = a * x[0]
    rand = torch.rand(H, W, generator=torch.Generator().manual_seed(5))
    d = {k: deletion_auc(bb, x, 0, m) for k, m in [("perfect", perfect), ("random", rand), ("inverted", -perfect)]}
    assert d["perfect"] < d["random"] < d["inverted"]
    # insertion from the default blurred substrate: pixel i adds a_i (x_i - blur_i), so that is the best order
    best_ins = a * (x[0] - make_baseline(x, "blur")[0])
    i = {k: insertion_auc(bb, x, 0, m) for k, m in [("perfect", best_ins), ("random", rand),
                                                     ("inverted", -best_ins)]}
    assert i["perfect"] > i["random"] > i["inverted"]
    # with a zero substrate the contribution map is the best insertion order too
    assert insertion_auc(bb, x, 0, perfect, substrate="zero") > insertion_auc(bb, x, 0, rand, substrate="zero")


def test_curves_have_fixed_steps_and_count_queries_apart(case):
    a, x = case
    bb = additive(a)
    r = deletion_curve(bb, x, 0, a)
    assert len(r.curve) == len(r.fractions) == STEPS + 1 and r.queries == STEPS + 1
    assert r.fractions[0] == 0 and r.fractions[-1] == 1
    assert r.curve[0] == pytest.approx(float((a * x[0]).sum()), rel=1e-5) and r.curve[-1] == pytest.approx(0, abs=1e-5)
    assert bb.queries == 0                              # the caller's counter (the explanation's) did not move
    m = mu_fidelity_result(bb, x, 0, a)
    assert m.queries == 201 and bb.queries == 0


def test_mu_fidelity_is_one_for_the_true_map_and_minus_one_inverted(case):
    a, x = case
    bb = additive(a)
    perfect = a * x[0]
    assert mu_fidelity(bb, x, 0, perfect) == pytest.approx(1.0)
    assert mu_fidelity(bb, x, 0, -perfect) == pytest.approx(-1.0)
    # a positive random map still correlates (bigger subsets drop more and sum more); a centred one should not
    rand = torch.rand(H, W, generator=torch.Generator().manual_seed(9)) - 0.5
    assert abs(mu_fidelity(bb, x, 0, rand)) < 0.5
    assert mu_fidelity(bb, x, 0, perfect, correlation="pearson") == pytest.approx(1.0)
    assert mu_fidelity(bb, x, 0, rand, seed=1) == mu_fidelity(bb, x, 0, rand, seed=1)   # seeded
    assert mu_fidelity(bb, x, 0, torch.zeros(H, W)) == 0.0                              # constant map: no signal


def test_pointing_game_on_hand_made_masks():
    sal = np.zeros((64, 64))
    sal[10, 10] = 1.0
    mask = box_mask((64, 64), (20, 10, 40, 30))          # x 20..39, y 10..29: 10 px right of the peak
    assert pointing_game(sal, mask, tolerance=15) and not pointing_game(sal, mask, tolerance=5)
    assert pointing_game(sal, box_mask((64, 64), (5, 5, 15, 15)), tolerance=0)     # peak inside
    with pytest.raises(ValueError, match="empty"):
        pointing_game(sal, np.zeros((64, 64), bool))
    with pytest.raises(ValueError, match="shape"):
        pointing_game(sal, np.ones((32, 32), bool))


def test_iou_on_hand_made_masks():
    sal = np.zeros((20, 20))
    sal[0:10, 0:10] = 1.0                                # 100 px selected after normalisation
    mask = box_mask((20, 20), (5, 0, 15, 10))            # x 5..14, y 0..9: 50 px overlap
    assert iou(sal, mask) == pytest.approx(50 / 150)
    assert iou(sal, box_mask((20, 20), (0, 0, 10, 10))) == 1.0
    sal[0:10, 0:10] = 0.1                                # below 0.2 of the range: nothing is selected...
    sal[19, 19] = 1.0
    assert iou(sal, mask) == 0.0
    assert iou(sal, mask, threshold=0.05) == pytest.approx(50 / 151)   # ...unless the threshold is lower
    assert iou(np.ones((20, 20)), mask) == 0.0                          # a constant map selects nothing
    assert iou(sal, (mask * 255).astype(np.uint8), threshold=0.05) == pytest.approx(50 / 151)  # PNG-like mask


def test_rank_correlation_matrix():
    g = torch.Generator().manual_seed(2)
    m = torch.rand(H, W, generator=g)
    r = rank_correlation({"a": m, "b": m ** 3, "c": -m, "d": torch.rand(H, W, generator=g)})
    assert r.shape == (4, 4) and np.allclose(r, r.T) and np.allclose(np.diag(r), 1)
    assert r[0, 1] == pytest.approx(1.0) and r[0, 2] == pytest.approx(-1.0) and abs(r[0, 3]) < 0.2
    with pytest.raises(ValueError):
        rank_correlation([m])


def test_bad_input_is_named():
    a = torch.ones(H, W)
    bb = additive(a)
    x = torch.ones(1, H, W)
    with pytest.raises(ValueError, match="shape"):
        deletion_auc(bb, x, 0, torch.ones(H, W + 1))
    with pytest.raises(ValueError, match="NaN"):
        insertion_auc(bb, x, 0, torch.full((H, W), float("nan")))
    with pytest.raises(ValueError, match="target"):
        deletion_auc(bb, x, 3, a)
    with pytest.raises(ValueError, match="steps"):
        deletion_auc(bb, x, 0, a, steps=0)
    with pytest.raises(ValueError, match="empty"):
        box_mask((H, W), (5, 5, 5, 9))


def test_real_model_occlusion_map_beats_its_inverse_on_the_cat(effnet, cat_x):
    bb = effnet.view()
    sal = get_explainer("occlusion", patch=56, stride=56).explain(bb, cat_x, 285)
    good = evaluate(effnet, cat_x, 285, sal, mu=False)
    bad = evaluate(effnet, cat_x, 285, -sal, mu=False)
    assert good["deletion_auc"] < bad["deletion_auc"] and good["insertion_auc"] > bad["insertion_auc"]
    assert good["metric_queries"] == 2 * (STEPS + 1)
    assert 0 <= good["deletion_auc"] <= 1 and good["deletion_curve"][0] > 0.3       # probabilities of "Egyptian cat"
