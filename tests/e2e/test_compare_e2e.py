"""The Compare page in a real browser: two small runs on the cat, linked hover, scores, and the ZIP export
(opened and checked against its manifest). Saves docs/screenshot-compare.png."""
import io
import re
import json
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from evaluation.report import check_zip

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "screenshot-compare.png"


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1440, "height": 1100}, "accept_downloads": True}


def test_compare_two_methods_and_export(page, app_url, wait_for_app, slider_key, tmp_path):
    page.goto(f"{app_url}/compare")
    wait_for_app(page, timeout=120_000)
    expect(page.get_by_role("heading", name="Compare methods")).to_be_visible(timeout=120_000)
    target = page.get_by_role("combobox", name="Class to explain")
    expect(target).to_have_value(re.compile(r"^Egyptian cat \(285\)"), timeout=60_000)   # the cat photo and its top class by default

    panels = page.get_by_test_id("stNumberInput").filter(has_text="Panels").locator("input")
    panels.fill("2")
    panels.press("Enter")
    wait_for_app(page)
    page.get_by_test_id("stSelectbox").filter(has_text="Panel 1").click()
    page.get_by_role("option", name="Occlusion").click()
    wait_for_app(page)
    page.get_by_text("parameters").nth(0).click()
    page.get_by_text("parameters").nth(1).click()
    slider_key(page, "patch", "End")       # one 224 px patch: 1 + 1 queries
    slider_key(page, "stride", "End")
    slider_key(page, "grid size", "Home")  # Sobol 2 x 2, 4 designs (the minimum): 20 queries
    slider_key(page, "nb design", "Home")
    expect(page.get_by_text("20 queries ·")).to_be_visible()
    page.get_by_text("µ-fidelity").click()               # off: keeps the test short (unit tests cover it)
    wait_for_app(page)

    page.get_by_role("button", name="Run all").click()
    download = page.get_by_role("button", name="Download everything (ZIP)")
    expect(download).to_be_visible(timeout=300_000)  # generous: CI machines are shared
    wait_for_app(page)
    expect(page.get_by_test_id("stDataFrame")).to_be_visible()
    expect(page.get_by_text("Control rows are maps that know nothing")).to_be_visible()   # ticked by default
    charts = page.get_by_test_id("stPlotlyChart")
    expect(charts).to_have_count(3)                      # grid, curves, rank correlation

    # linked hover: one pixel of the first panel shows the values of both maps
    heat = charts.first.locator(".nsewdrag").first
    box = heat.bounding_box()
    charts.first.scroll_into_view_if_needed()
    box = heat.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.4)
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5, steps=5)
    hover = charts.first.locator(".hoverlayer")
    expect(hover).to_contain_text("occlusion", timeout=10_000)
    expect(hover).to_contain_text("sobol")

    with page.expect_download() as info:
        download.click()
    path = tmp_path / "comparison.zip"
    info.value.save_as(path)
    data = path.read_bytes()
    manifest = check_zip(data)                           # opens, and holds exactly what the manifest lists
    paths = {f["path"] for f in manifest["files"]}
    assert {"report.json", "metrics.csv", "curves.csv", "rank_correlation.csv", "input.png"} <= paths
    # two runs and three control rows (random pixels, random blocks, centre Gaussian)
    assert sum(p.startswith("maps/") for p in paths) == 5 and sum(p.startswith("overlays/") for p in paths) == 5
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        report = json.loads(z.read("report.json"))
    runs = [r for r in report["runs"] if not r["control"]]
    assert [r["method"] for r in runs] == ["occlusion", "sobol"] and report["target"]["index"] == 285
    assert [r["queries"] for r in runs] == [2, 20]
    assert [r["queries"] for r in report["runs"] if r["control"]] == [0, 0, 0]

    page.mouse.move(0, 0)
    page.wait_for_timeout(500)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
