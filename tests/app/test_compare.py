"""The Compare page in AppTest: the real app, the bundled EfficientNet-Lite0, the cat photo.

AppTest cannot fire ``run_every``, so runs are driven to the end by calling ``at.run()`` in a bounded loop.
Small settings keep it quick: Occlusion with 112 px patches (2 x 2 + 1 = 5 queries), Sobol grid 2 with
4 designs (4 x 5 = 20 queries); the scores add 2 x 33 queries per map (µ-fidelity off here; tests/unit covers
it); the control rows (ticked by default) add three maps scored the same way, at 0 explanation queries.
"""
import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from evaluation.metrics import STEPS
from evaluation.report import CONTROL_LABELS, CONTROLS, check_zip

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
    run_to_end(at)
    assert not at.error, [e.value for e in at.error]
    df = at.dataframe[0].value
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
    grid = json.loads(charts[0].proto.spec)
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
