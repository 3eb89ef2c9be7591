"""The Dataset page in a real browser: upload a ZIP of two photos, run Sobol at a small budget, see the gallery,
download the results ZIP and open it."""
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "assets" / "examples"


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1440, "height": 1400}, "accept_downloads": True}


def test_dataset_zip_run_gallery_and_download(page, app_url, wait_for_app, slider_key, tmp_path):
    photos = tmp_path / "photos.zip"
    with zipfile.ZipFile(photos, "w") as z:
        for name in ("cat.png", "coffee.png"):
            z.write(EXAMPLES / name, f"photos/{name}")

    page.goto(f"{app_url}/dataset")
    wait_for_app(page, timeout=120_000)
    expect(page.get_by_role("heading", name="Dataset")).to_be_visible(timeout=120_000)
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="ZIP of images")
    uploader.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(photos))
    expect(page.get_by_text("photos.zip: 2 images")).to_be_visible(timeout=60_000)
    wait_for_app(page)

    # Sobol (the default method) on a 2 x 2 grid with 4 designs: 4 x (4 + 1) + 1 = 21 queries per image
    page.get_by_text("Sobol attribution: parameters").click()
    slider_key(page, "grid size", "Home")
    slider_key(page, "nb design", "Home")
    expect(page.get_by_text(re.compile(r"42 queries for the explanations \+ 132 for the scores"))).to_be_visible(
        timeout=30_000)
    expect(page.get_by_text(re.compile(r"Expected ≈"))).to_be_visible()

    page.get_by_role("button", name="Run").click()
    download = page.get_by_role("button", name="Results and maps (ZIP)")
    expect(download).to_be_visible(timeout=120_000)
    wait_for_app(page)
    expect(page.get_by_test_id("stDataFrame")).to_be_visible()
    expect(page.get_by_test_id("stImage")).to_have_count(2)               # the gallery: one overlay per map
    expect(page.get_by_test_id("stProgress")).to_contain_text("2 / 2 maps · 0 failed")

    with page.expect_download() as info:
        download.click()
    path = tmp_path / "results.zip"
    info.value.save_as(path)
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        assert {"results.csv", "results.parquet", "run.json"} <= names, names
        table = pd.read_csv(io.BytesIO(z.read("results.csv")))
        assert len(table) == 2 and set(table["status"]) == {"done"} and set(table["method"]) == {"sobol"}
        assert set(table["queries"]) == {21}
        for rel in table["map"]:
            sal = np.load(io.BytesIO(z.read(rel)))
            assert sal.shape == (224, 224) and np.isfinite(sal).all()
        assert all(rel in names for rel in table["overlay"])
