"""The Compare page in AppTest: the real app, the bundled EfficientNet-Lite0, the cat photo.

AppTest cannot fire ``run_every``, so runs are driven to the end by calling ``at.run()`` in a bounded loop.
Small settings keep it quick: Occlusion with 112 px patches (2 x 2 + 1 = 5 queries), Sobol grid 2 with
4 designs (4 x 5 = 20 queries); the scores add 2 x 33 queries per map (µ-fidelity off here; tests/unit covers
it); the control rows (ticked by default) add three maps scored the same way, at 0 explanation queries.
"""
import io
import json
import re
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import torch

from evaluation.metrics import MU_SAMPLES, STEPS, evaluate, metric_query_count
from evaluation.report import CONTROL_LABELS, CONTROLS, check_zip
from models import BlackBox
from ui.compare_plots import MODEBAR_PX, TITLE_PX

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
P = "compare."
CONTROL_ROWS = [CONTROL_LABELS[k] for k in CONTROLS]
RUNS = ["occlusion (patch=112, stride=112)", "sobol (grid_size=2, nb_design=4)"]


def open_compare() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("views/compare.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value.endswith("Compare methods")
    return at


def small_runs(at: AppTest, second: str = "sobol") -> None:
    at.number_input(key=P + "n").set_value(2).run()
    at.selectbox(key=P + "0.method").set_value("occlusion").run()
    at.slider(key=P + "0.occlusion.patch").set_value(112)
    at.slider(key=P + "0.occlusion.stride").set_value(112)
    at.selectbox(key=P + "1.method").set_value(second).run()
    at.slider(key=P + f"1.{second}.grid_size").set_value(2)
    if second == "sobol":
        at.select_slider(key=P + "1.sobol.nb_design").set_value(4)
    at.checkbox(key=P + "mu").uncheck().run()
    assert not at.exception, at.exception


def run_to_end(at: AppTest, max_polls: int = 200) -> None:
    at.button(key=P + "run").click().run()
    for _ in range(max_polls):
        assert not at.exception, at.exception
        if at.download_button:
            return
        time.sleep(0.25)
        at.run()
    raise AssertionError("the runs did not finish")


def test_compare_runs_scores_and_exports(downloads):
    at = open_compare()
    # the defaults offer LR, Sobol, RISE and Occlusion side by side on the cat, the top class explained
    assert [at.selectbox(key=f"{P}{i}.method").value for i in range(4)] == ["lr", "sobol", "rise", "occlusion"]
    assert at.selectbox(key=P + "target").value == 285
    small_runs(at)
    at.radio(key=P + "gt").set_value("Box").run()     # default box: the central half of the image
    # before Run all: what it spends (5 + 20 explanation queries; 2 runs + 3 controls scored at 2 x 33 each)
    plan = plan_line(at)
    assert "**Run all spends 355 queries**: 25 for the explanations + 330 for the scores (5 maps × 66)" in plan, plan
    assert "Expected ≈" in plan and "ms per query" in plan
    run_to_end(at)
    assert not at.error, [e.value for e in at.error]
    df = at.dataframe[0].value
    assert df["queries"].sum() + df["metric_queries"].sum() == 355     # what the runs and the scores really spent
    # the table shows only what says something: no empty µ-fidelity column (off here), no method / control /
    # status columns (the labels say it; every run is done); the data keeps them for the export
    shown = list(at.dataframe[0].proto.column_order)
    assert shown == ["queries", "wall_time_s", "deletion_auc", "insertion_auc", "pointing_game", "iou",
                     "metric_queries"], shown
    # every column the table can show has a set width, and all of them at once (µ-fidelity on, a run stopped)
    # fit the page's main column at 1440 x 900 (980 px, measured in Chromium)
    config = json.loads(at.dataframe[0].proto.columns)
    widths = {name: c.get("width") for name, c in config.items()}
    assert all(isinstance(widths.get(c), int) for c in shown + ["run", "mu_fidelity", "status"]), widths
    assert sum(w for w in widths.values() if isinstance(w, int)) <= 980, widths
    # the control rows (ticked by default) come after the runs, flagged, with no explanation query
    assert list(df.index) == RUNS + CONTROL_ROWS
    assert df["queries"].tolist() == [5, 20, 0, 0, 0]
    assert df["control"].tolist() == [False, False, True, True, True]
    assert df["method"].tolist()[2:] == ["control"] * 3
    assert any("Control rows" in c.value for c in at.caption)
    assert (df["metric_queries"] == 2 * (STEPS + 1)).all()
    assert df["deletion_auc"].between(0, 1).all() and df["insertion_auc"].between(0, 1).all()
    assert df["mu_fidelity"].isna().all()
    assert df["pointing_game"].notna().all() and df["iou"].between(0, 1).all()
    charts = at.get("plotly_chart")
    assert len(charts) == 3                             # grid, curves, rank correlation
    for chart in charts:                                # every title sits below the toolbar's strip
        layout = json.loads(chart.proto.spec)["layout"]
        assert layout["margin"]["t"] >= MODEBAR_PX + TITLE_PX
    grid = json.loads(charts[0].proto.spec)
    assert all(a["y"] >= 1 for a in grid["layout"]["annotations"])    # the panel titles, above their panels
    heat = [t for t in grid["data"] if t["type"] == "heatmap"]
    assert len(heat) == 2 and all(t["coloraxis"] == "coloraxis" for t in heat)   # the runs' maps only
    assert len(json.loads(charts[1].proto.spec)["data"]) == 2 * 5      # both curves of every row, controls too
    assert json.loads(charts[2].proto.spec)["data"][0]["x"] == RUNS   # rank correlation: the runs only
    assert "occlusion" in heat[0]["hovertemplate"] and "sobol" in heat[0]["hovertemplate"]   # linked hover

    data = downloads["saliency-comparison.zip"]
    manifest = check_zip(data)                          # the ZIP holds exactly what its manifest lists
    paths = {f["path"] for f in manifest["files"]}
    for name in ("occlusion_patch_112_stride_112", "sobol_grid_size_2_nb_design_4"):
        assert f"maps/{name}.npy" in paths and f"overlays/{name}.png" in paths
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        report = json.loads(z.read("report.json"))
        assert report["target"]["index"] == 285 and report["ground_truth"] is True
        assert [r["params"]["patch"] for r in report["runs"] if r["method"] == "occlusion"] == [112]
        assert "torch" in report["versions"]
        sal = np.load(io.BytesIO(z.read("maps/sobol_grid_size_2_nb_design_4.npy")))
        assert sal.shape == (224, 224) and np.isfinite(sal).all()
        rows = z.read("metrics.csv").decode().splitlines()
        assert len(rows) == 1 + 2 + 3 and rows[0].startswith("run,method,queries") and rows[0].endswith(",control")
        assert [r.split(",")[-1] for r in rows[1:]] == ["False"] * 2 + ["True"] * 3
        assert [r["control"] for r in report["runs"]] == [False] * 2 + [True] * 3
        assert "maps/control_random_pixels.npy" in paths
        assert Image.open(io.BytesIO(z.read("overlays/occlusion_patch_112_stride_112.png"))).size == (224, 224)

    at.toggle(key=P + "norm").set_value(False).run()    # one shared raw scale
    grid = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert grid["layout"]["coloraxis"]["cmax"] != 1.0

    at.checkbox(key=P + "controls").uncheck().run()     # unticked: the runs alone, nothing re-run
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value.index) == RUNS and not at.dataframe[0].value["control"].any()
    assert not any("Control rows" in c.value for c in at.caption)


def plan_line(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Run all spends"))


def test_metric_query_count_is_what_evaluate_spends():
    """The count the Compare page adds up before Run all, against the queries ``evaluate`` really makes."""
    x = torch.rand(3, 16, 16)
    bb = BlackBox(lambda b: torch.stack([b.mean((1, 2, 3)), 1 - b.mean((1, 2, 3))], 1), input_shape=(3, 16, 16))
    sal = torch.rand(16, 16)
    for mu in (False, True):
        for steps in (STEPS, 8):
            spent = evaluate(bb, x, 0, sal, mu=mu, steps=steps)["metric_queries"]
            assert metric_query_count(mu=mu, steps=steps) == spent, (mu, steps, spent)
    assert metric_query_count(mu=True) - metric_query_count(mu=False) == MU_SAMPLES + 1
    assert bb.queries == 0                                  # the metrics query views, not the caller's box


def test_plan_follows_the_settings():
    """The total before Run all follows the panels, µ-fidelity and the controls; a 1-query method says
    "1 query", not "1 queries"."""
    at = open_compare()
    budgets = [int(re.match(r"([\d,]+) quer", c.value).group(1).replace(",", "")) for c in at.caption
               if re.match(r"[\d,]+ quer(y|ies) ·", c.value)]
    assert len(budgets) == 4                              # the four default panels
    maps = 4 + len(CONTROLS)
    per_map = 2 * (STEPS + 1) + MU_SAMPLES + 1            # µ-fidelity and the control rows are on by default
    assert f"**Run all spends {sum(budgets) + maps * per_map:,} queries**" in plan_line(at)
    assert f"({maps} maps × {per_map})" in plan_line(at)
    at.checkbox(key=P + "mu").uncheck().run()
    at.checkbox(key=P + "controls").uncheck().run()
    assert f"{sum(budgets) + 4 * 2 * (STEPS + 1):,} queries**" in plan_line(at)
    assert "(4 maps × 66)" in plan_line(at) and "Expected ≈" in plan_line(at)
    assert any(o.startswith("Gradient") for o in at.selectbox(key=P + "0.method").options)   # a torch model
    at.selectbox(key=P + "0.method").set_value("gradient").run()          # white-box: one forward pass
    assert any(c.value.startswith("1 query ·") for c in at.caption), [c.value for c in at.caption]
    assert not any(re.search(r"(?<![\d,])1 queries", c.value) for c in at.caption)
    assert not at.exception, at.exception


def test_an_svg_upload_is_refused_in_words():
    at = open_compare()
    at.radio(key=P + "source").set_value("Upload an image").run()
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"></svg>'
    at.file_uploader(key=P + "upload").set_value(("logo.svg", svg, "image/svg+xml")).run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any("logo.svg" in e and "SVG" in e and "not supported" in e and "PNG" in e for e in errors), errors
    assert not any("No file yet" in c.value for c in at.caption)
    # the same drawing under a .png name is recognised by its content
    at.file_uploader(key=P + "upload").set_value(("drawing.png", svg, "image/png")).run()
    assert any("drawing.png" in e.value and "SVG" in e.value for e in at.error)


def test_two_settings_of_one_method_and_a_bad_mask():
    at = open_compare()
    at.number_input(key=P + "n").set_value(2).run()
    for i, grid in ((0, 2), (1, 3)):
        at.selectbox(key=f"{P}{i}.method").set_value("sobol").run()
        at.slider(key=f"{P}{i}.sobol.grid_size").set_value(grid)
        at.select_slider(key=f"{P}{i}.sobol.nb_design").set_value(4)
    at.checkbox(key=P + "mu").uncheck().run()
    at.checkbox(key=P + "controls").uncheck().run()     # no control rows from the start
    at.radio(key=P + "gt").set_value("Mask image").run()
    at.file_uploader(key=P + "mask_file").set_value(("mask.png", b"not a png at all", "image/png")).run()
    assert not at.exception and any("could not be read" in e.value for e in at.error)
    black = io.BytesIO()
    Image.new("L", (50, 50)).save(black, format="PNG")
    at.file_uploader(key=P + "mask_file").set_value(("black.png", black.getvalue(), "image/png")).run()
    assert any("no white pixel" in e.value for e in at.error)
    run_to_end(at)
    df = at.dataframe[0].value
    assert list(df.index) == ["sobol (grid_size=2, nb_design=4)", "sobol (grid_size=3, nb_design=4)"]
    assert df["queries"].tolist() == [20, 40] and df["pointing_game"].isna().all() and not df["control"].any()
