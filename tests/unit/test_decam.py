"""DE-CAM: localisation on analytic black boxes, determinism, exact budget, early stop, streaming."""
import pytest
import torch

from explainers import get_explainer
from models import BlackBox
from tests import analytic

H = 64
REGION = (slice(16, 40), slice(32, 56))          # rows 2-4, cols 4-6 of an 8x8 grid of 8-pixel cells


def region_box(x, region=REGION, modality="image"):
    return analytic.region_box(x, region, modality)


def noise_image(seed=1, shape=(3, H, H)):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def mass_in(sal, region):
    return float(sal[region[0], region[1]].sum() / sal.sum())


def test_grid_genome_puts_the_map_on_the_region():
    x = noise_image()
    bb = region_box(x)
    e = get_explainer("decam", seed=0, grid_size=8, upsampling="nearest", population=24, generations=300)
    sal = e.explain(bb, x, 0)
    assert sal.shape == (H, H)
    assert mass_in(sal, REGION) >= 0.8


def test_superpixel_genome_finds_a_coloured_object():
    # a structured picture (smooth background, one distinct square): SLIC segments follow the square
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, H), indexing="ij")
    x = torch.stack([0.3 * xx, 0.3 * yy, 0.2 * xx * yy])
    x[0, REGION[0], REGION[1]] = 0.9
    x[1, REGION[0], REGION[1]] = -0.8
    bb = region_box(x)
    e = get_explainer("decam", seed=0, genome="slic", n_segments=30, population=16, generations=80,
                      baseline="mean", smooth=0.0)
    sal = e.explain(bb, x, 0)
    assert mass_in(sal, REGION) >= 0.8


def test_spectrogram_input_uses_time_frequency_patches():
    x = noise_image(2, (1, 32, 48))
    region = (slice(8, 16), slice(24, 40))             # cells of the 4 x 6 rectangle grid
    bb = region_box(x, region, modality="audio")
    e = get_explainer("decam", seed=0, genome="slic", n_segments=24, population=16, generations=150,
                      baseline="zero", smooth=0.0)
    sal = e.explain(bb, x, 0)
    assert sal.shape == (32, 48)
    assert mass_in(sal, region) >= 0.8


def test_relative_score_keeps_lambda_meaningful_for_a_weak_class():
    # a class the model gives 5 % (ranked fifth, say): with the raw score lam x area outweighs anything the
    # mask can keep, the empty mask wins and the map says nothing; the share of the decision kept does not care
    x = noise_image()
    strong = region_box(x)
    weak = BlackBox(lambda b: 0.05 * strong.forward_raw(b), labels=["a", "b"], input_shape=x.shape)
    kw = dict(grid_size=8, upsampling="nearest", population=24, generations=150, map_from="best")
    relative = get_explainer("decam", seed=0, **kw).explain(weak, x, 0)
    raw = get_explainer("decam", seed=0, score="raw", **kw).explain(weak, x, 0)
    print(f"mass in the region: relative {mass_in(relative, REGION):.2f}, raw {mass_in(raw, REGION):.2f}")
    assert mass_in(relative, REGION) >= 0.7
    assert mass_in(raw, REGION) < 0.4


def test_regression_map_recovers_each_genes_effect():
    # the default map: least squares of the decision on the genes, accumulated batch by batch as the search goes
    from explainers.decam import _Effects
    g = torch.Generator().manual_seed(0)
    genes = torch.rand(300, 4, generator=g)
    truth = torch.tensor([1.0, -2.0, 0.0, 3.0])
    effects = _Effects(4, "cpu")
    for part in genes.split(24):          # one generation at a time
        effects.add(part, 0.5 + part @ truth)
    torch.testing.assert_close(effects.solve(), truth, atol=0.03, rtol=0)   # the ridge shrinks a little


def test_same_seed_same_map_other_seed_other_map():
    x = noise_image()
    bb = region_box(x)
    kw = dict(grid_size=6, population=8, generations=10)
    a = get_explainer("decam", seed=3, **kw).explain(bb, x, 0)
    b = get_explainer("decam", seed=3, **kw).explain(bb, x, 0)
    c = get_explainer("decam", seed=4, **kw).explain(bb, x, 0)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("params", [dict(population=5, generations=3), dict(population=4, generations=1),
                                    dict(population=6, generations=2, deletion_weight=0.5),
                                    dict(population=5, generations=2, score="raw")])
def test_budget_is_exact_without_early_stop(params):
    x = noise_image()
    bb = region_box(x)
    e = get_explainer("decam", seed=0, grid_size=4, **params)
    last = list(e.stream(bb, x, 0))[-1]
    per = 2 if params.get("deletion_weight") else 1
    reference = 2 if params.get("score", "relative") == "relative" else 0    # f(x) and f(x0)
    assert e.query_budget(x.shape) == params["population"] * (params["generations"] + 1) * per + reference
    assert bb.queries == e.query_budget(x.shape) == last.queries
    assert last.done and last.progress == 1.0


def test_early_stop_after_patience_generations_without_improvement():
    # the score never changes and lambda = 0: fitness cannot improve, so the search stops after `patience`
    x = noise_image()
    bb = BlackBox(lambda b: torch.ones(b.shape[0], 2) * 0.5, labels=["a", "b"], input_shape=x.shape)
    e = get_explainer("decam", seed=0, grid_size=4, population=6, generations=50, lam=0.0, patience=3)
    ests = list(e.stream(bb, x, 0, min_interval=0))
    assert bb.queries == ests[-1].queries == 6 * (1 + 3) + 2 < e.query_budget(x.shape)
    assert ests[-1].done and ests[-1].extras["generation"] == 3


def test_streams_one_estimate_per_generation_with_fitness_metrics():
    x = noise_image()
    bb = region_box(x)
    e = get_explainer("decam", seed=0, grid_size=4, population=8, generations=6)
    ests = list(e.stream(bb, x, 0, min_interval=0))
    gens = [est.extras["generation"] for est in ests[:-1]]
    assert gens == list(range(7))
    best = [est.metrics["best_fitness"] for est in ests]
    assert all(b2 >= b1 for b1, b2 in zip(best, best[1:]))        # greedy selection never loses the best
    for est in ests:
        assert set(est.metrics) == {"best_fitness", "mean_fitness", "diversity"}
        assert est.metrics["mean_fitness"] <= est.metrics["best_fitness"]
        assert 0.0 <= float(est.saliency.min()) and float(est.saliency.max()) <= 1.0
    assert [est.queries for est in ests[:-1]] == [8 * (g + 1) + 2 for g in range(7)]


def test_population_mean_map_and_bad_parameters():
    x = noise_image()
    bb = region_box(x)
    sal = get_explainer("decam", seed=0, grid_size=4, population=8, generations=3,
                        map_from="population_mean").explain(bb, x, 0)
    assert sal.shape == (H, H) and torch.isfinite(sal).all()
    with pytest.raises(ValueError, match="population"):
        get_explainer("decam", population=3)
    with pytest.raises(ValueError, match="baseline"):
        get_explainer("decam", baseline="noise")


def test_runs_on_the_bundled_model(effnet, cat_x):
    bb = effnet.view()
    e = get_explainer("decam", seed=0, grid_size=4, population=4, generations=1)
    sal = e.explain(bb, cat_x, 285)
    assert sal.shape == (224, 224) and torch.isfinite(sal).all()
    assert bb.queries == 8 + 2
