"""The Explore / Audio "diagnostics" chart: each method's live metrics with the name and unit it declares."""
import torch

from explainers import explainer_class, get_explainer, list_explainers
from tests.analytic import presence_box
from ui.plots import metric_names, metrics_figure


def _history(method: str, **params) -> list[dict]:
    """What the engine records per estimate: queries, elapsed, rel_change and the method's metrics."""
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    bb = presence_box(x, (slice(8, 20), slice(10, 24)))
    return [{"queries": e.queries, "elapsed": 0.0, "rel_change": None, **e.metrics}
            for e in get_explainer(method, seed=0, **params).stream(bb, x, 0, min_interval=0)]


def test_chart_names_each_diagnostic_with_its_unit_and_the_method():
    history = _history("lr", n_samples=600, block_size=8)
    fig = metrics_figure(history, metric_names(history), method="lr")
    assert fig.layout.title.text == "LR diagnostics"
    by_name = {t.name.replace("<br>", " "): t for t in fig.data}
    rse = by_name["relative standard error of the gradient estimate (%)"]
    draws = by_name["noise draws per block (draws)"]
    # shown in the declared unit: the fraction the method reports, in percent
    assert list(rse.y) == [h["gradient_rse"] * 100 for h in history]
    assert 0 < rse.y[-1] <= 120
    # different units never share an axis, and each axis names what it shows
    assert rse.yaxis != draws.yaxis
    titles = {fig.layout[t.yaxis.replace("y", "yaxis")].title.text for t in fig.data}
    assert titles == {"%", "draws"}


def test_metrics_of_one_unit_share_a_panel():
    history = _history("decam", population=6, generations=4, grid_size=3)
    fig = metrics_figure(history, method="decam")
    assert fig.layout.title.text == "DE-CAM diagnostics"
    by_name = {t.name.replace("<br>", " "): t for t in fig.data}
    best, mean = by_name["best (fitness)"], by_name["population mean (fitness)"]
    assert best.yaxis == mean.yaxis and fig.layout[best.yaxis.replace("y", "yaxis")].title.text == "fitness"
    assert by_name["population diversity (gene std)"].yaxis != best.yaxis


def test_undeclared_keys_and_unknown_methods_fall_back_to_the_key():
    history = [{"queries": q, "elapsed": 0.0, "rel_change": 0.1, "my_score": q / 10} for q in (10, 20, 30)]
    fig = metrics_figure(history, method="not_a_method")
    assert fig.layout.title.text == "Method diagnostics"
    assert [t.name for t in fig.data] == ["my_score"] and list(fig.data[0].y) == [1.0, 2.0, 3.0]
    assert fig.layout.yaxis.title.text == "my_score"                           # no unit: the axis says what
    assert metrics_figure(history).layout.title.text == "Method diagnostics"   # no method given: as before


def test_every_black_box_method_has_a_titled_chart():
    for name in list_explainers(white_box=False):
        specs = explainer_class(name).metric_specs
        history = [{"queries": q, "elapsed": 0.0, "rel_change": None, **{m.key: 0.5 for m in specs}}
                   for q in (1, 2)]
        fig = metrics_figure(history, method=name)
        assert fig.layout.title.text.endswith(" diagnostics") and fig.layout.title.text != "Method diagnostics"
        assert {t.name.replace("<br>", " ") for t in fig.data} == {m.title() for m in specs}
        assert all(len(line) <= 34 for t in fig.data for line in t.name.split("<br>"))  # LEGEND_CHARS
