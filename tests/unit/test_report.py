"""The comparison table and ZIP export (evaluation/report.py, runtime/compare.py) on an analytic black box: no streamlit, no model."""
import io
import json
import zipfile

import numpy as np
import pytest
import torch

from runtime.engine import Engine
from evaluation.metrics import STEPS, box_mask
from evaluation.report import (CONTROL_LABELS, CONTROLS, TABLE_COLUMNS, Comparison, add_controls, check_zip,
                               control_map, export_zip, slug, unique_labels)
from maps import overlay_png
from runtime.compare import compare
from models import BlackBox
from tests.analytic import region_box

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


CONTROL_ROWS = [CONTROL_LABELS[k] for k in CONTROLS]


def test_compare_runs_and_scores_every_spec(comparison):
    rows = comparison.table()
    # distinct labels, distinct files; the control rows (on by default) after the runs
    assert [r["run"] for r in rows] == ["occlusion", "occlusion #2", "rise"] + CONTROL_ROWS
    assert [r["queries"] for r in rows] == [17, 5, 64, 0, 0, 0]
    assert [r["control"] for r in rows] == [False] * 3 + [True] * 3
    assert all(set(r) == set(TABLE_COLUMNS) for r in rows)
    assert all(r["metric_queries"] == 2 * (STEPS + 1) + 201 for r in rows)   # controls pay the same metric cost
    fine = rows[0]                                    # 4 px occlusion finds the square exactly
    assert fine["pointing_game"] is True and fine["iou"] == pytest.approx(1.0)
    assert fine["mu_fidelity"] > 0.9 and fine["deletion_auc"] < fine["insertion_auc"]
    r = comparison.correlation()
    assert r.shape == (3, 3) and r[0, 1] > 0.3        # the explanations only, not the controls


def test_control_maps_are_deterministic_model_free_references():
    for kind in ("random", "blocks"):
        a, b = control_map(kind, (16, 20), seed=3), control_map(kind, (16, 20), seed=3)
        assert a.shape == (16, 20) and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)                          # same seed, same map
        assert not np.array_equal(a, control_map(kind, (16, 20), seed=4))
    assert len(np.unique(control_map("random", (16, 16)))) == 256    # i.i.d. pixels: no ties
    blocks = control_map("blocks", (14, 14))
    assert len(np.unique(blocks)) == 49 and (blocks[::2, ::2].repeat(2, 0).repeat(2, 1) == blocks).all()
    centre = control_map("centre", (16, 16), seed=9)
    np.testing.assert_array_equal(centre, control_map("centre", (16, 16)))   # no randomness
    np.testing.assert_allclose(centre, centre[::-1, ::-1])                   # centred and symmetric
    assert centre[7, 7] == centre.max() and centre[0, 0] == centre.min()
    with pytest.raises(ValueError, match="unknown control"):
        control_map("noise", (4, 4))


def test_a_good_map_beats_the_controls_which_cost_no_explanation_query(tmp_path):
    """The score of class 0 depends on one 8 x 8 region of a 32 x 32 binary-noise image only (the blur of
    insertion destroys it, the zeros of deletion too): 8 px occlusion, which finds that region, must beat every
    control on all three scores; the controls are flagged, reproducible and spend only their metric queries."""
    x = (torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    bb = region_box(x, (slice(8, 16), slice(8, 16)))
    comp = compare(bb, x, 0, [("occlusion", "occlusion", {"patch": 8, "stride": 8}, 0)],
                   engine=Engine(cache_dir=tmp_path))
    assert bb.queries == 0                            # the engine and the metrics count on their own views
    good, *controls = comp.runs
    assert controls == comp.controls and comp.explanations == [good]
    assert [r.label for r in controls] == CONTROL_ROWS and [r.params["kind"] for r in controls] == list(CONTROLS)
    assert all(r.control and r.method == "control" and r.queries == 0 for r in controls)
    assert all(r.scores["metric_queries"] == 2 * (STEPS + 1) + 201 for r in comp.runs)
    for r in controls:
        assert good.scores["insertion_auc"] > r.scores["insertion_auc"] + 0.1, r.label
        assert good.scores["deletion_auc"] < r.scores["deletion_auc"], r.label
        assert good.scores["mu_fidelity"] > r.scores["mu_fidelity"] + 0.3, r.label
    assert comp.correlation() is None                 # one explanation: nothing to correlate, controls left out

    again = Comparison(model=bb.id, target=0, target_label="", input_name="noise", input_sha256="-",
                       background=np.zeros((32, 32, 3), np.uint8))
    before = bb.queries
    added = add_controls(again, bb, x)                # same seed: the same maps and the same scores
    assert bb.queries == before
    for a, b in zip(added, controls):
        np.testing.assert_array_equal(a.saliency, b.saliency)
        assert (a.scores["deletion_auc"], a.scores["mu_fidelity"]) == (b.scores["deletion_auc"],
                                                                       b.scores["mu_fidelity"])
    other = add_controls(again, bb, x, ["random"], seed=1)[0]
    assert other.label == "control: random pixels #2" and not np.array_equal(other.saliency, controls[0].saliency)


def test_compare_controls_option(tmp_path):
    bb = additive_box()
    specs = [("occlusion", "occlusion", {"patch": 8, "stride": 8}, 0)]
    none = compare(bb, torch.ones(1, H, W), 0, specs, engine=Engine(cache_dir=tmp_path), mu=False, controls=False)
    assert [r.label for r in none.runs] == ["occlusion"] and none.controls == []
    one = compare(bb, torch.ones(1, H, W), 0, specs, engine=Engine(cache_dir=tmp_path), mu=False,
                  controls=["centre"], control_seed=5)
    assert [r.label for r in one.runs] == ["occlusion", "control: centre Gaussian"]
    assert one.runs[1].seed == 5 and one.runs[1].params == {"kind": "centre", "sigma_px": 4.0}


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
        # one rendering: the ZIP's overlay is the Explore download's (maps.overlay_png, jet, opacity 0.5)
        assert z.read("overlays/rise.png") == overlay_png(comparison.background, comparison.runs[2].saliency)
        curves = z.read("curves.csv").decode().splitlines()
        metrics_csv = z.read("metrics.csv").decode().splitlines()
        corr_csv = z.read("rank_correlation.csv").decode().splitlines()
    assert len(curves) == 1 + 6 * 2 * (STEPS + 1)      # the controls' curves too
    assert metrics_csv[0].split(",")[-1] == "control"
    assert [line.split(",")[-1] for line in metrics_csv[1:]] == ["False"] * 3 + ["True"] * 3
    assert corr_csv[0] == ",occlusion,occlusion #2,rise" and len(corr_csv) == 4
    assert [r["control"] for r in report["runs"]] == [False] * 3 + [True] * 3
    assert [r["method"] for r in report["runs"][3:]] == ["control"] * 3
    assert report["runs"][3]["params"] == {"kind": "random", "seed": 0}
    assert set(report["controls"]) == set(CONTROLS)                    # what each control is
    assert "maps/control_random_pixels.npy" in paths
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
