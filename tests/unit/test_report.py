"""The comparison table and ZIP export (explainers/report.py) on an analytic black box: no streamlit, no model."""
import io
import json
import zipfile

import numpy as np
import pytest
import torch

from explainers.engine import Engine
from explainers.metrics import STEPS, box_mask
from explainers.report import TABLE_COLUMNS, check_zip, compare, export_zip, slug, unique_labels
from models import BlackBox

H = W = 16


def additive_box() -> BlackBox:
    a = torch.zeros(H, W)
    a[4:8, 4:8] = 1.0                                   # the model reads one 4 x 4 square only
    return BlackBox(lambda b: (b[:, 0] * a).flatten(1).sum(1, keepdim=True), labels=["f"], input_shape=(1, H, W))


@pytest.fixture()
def comparison(tmp_path):
    bb = additive_box()
    specs = [("occlusion", "occlusion", {"patch": 4, "stride": 4}, 0),
             ("occlusion", "occlusion", {"patch": 8, "stride": 8}, 0),
             ("rise", "rise", {"n_masks": 64, "grid_size": 4}, 1)]
    return compare(bb, torch.ones(1, H, W), 0, specs, engine=Engine(cache_dir=tmp_path), mask=box_mask((H, W), (4, 4, 8, 8)))


def test_compare_runs_and_scores_every_spec(comparison):
    rows = comparison.table()
    assert [r["run"] for r in rows] == ["occlusion", "occlusion #2", "rise"]     # distinct labels, distinct files
    assert [r["queries"] for r in rows] == [17, 5, 64]
    assert all(set(r) == set(TABLE_COLUMNS) for r in rows)
    assert all(r["metric_queries"] == 2 * (STEPS + 1) + 201 for r in rows)
    fine = rows[0]                                    # 4 px occlusion finds the square exactly
    assert fine["pointing_game"] is True and fine["iou"] == pytest.approx(1.0)
    assert fine["mu_fidelity"] > 0.9 and fine["deletion_auc"] < fine["insertion_auc"]
    r = comparison.correlation()
    assert r.shape == (3, 3) and r[0, 1] > 0.3


def test_zip_holds_what_its_manifest_lists(comparison):
    data = export_zip(comparison)
    manifest = check_zip(data)
    paths = [f["path"] for f in manifest["files"]]
    for lab in ("occlusion", "occlusion_2", "rise"):
        assert f"maps/{lab}.npy" in paths and f"overlays/{lab}.png" in paths
    assert {"report.json", "metrics.csv", "curves.csv", "rank_correlation.csv", "input.png", "ground_truth.png"} <= set(paths)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        report = json.loads(z.read("report.json"))
        np.testing.assert_array_equal(np.load(io.BytesIO(z.read("maps/rise.npy"))), comparison.runs[2].saliency)
        curves = z.read("curves.csv").decode().splitlines()
    assert len(curves) == 1 + 3 * 2 * (STEPS + 1)
    assert report["runs"][2]["seed"] == 1 and report["runs"][2]["params"]["n_masks"] == 64
    assert report["metric_protocol"]["steps"] == STEPS and "numpy" in report["versions"]

    tampered = io.BytesIO()                            # a file the manifest does not list is caught
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.namelist():
            dst.writestr(item, src.read(item))
        dst.writestr("extra.txt", b"x")
    with pytest.raises(ValueError, match="extra.txt"):
        check_zip(tampered.getvalue())


def test_labels_become_safe_distinct_file_names():
    assert unique_labels(["a", "b", "a", "a"]) == ["a", "b", "a #2", "a #3"]
    assert slug("sobol (grid_size=4, nb_design=8)") == "sobol_grid_size_4_nb_design_8"
    assert slug("../../etc") == "etc"
