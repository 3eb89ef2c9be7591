"""The Explore page in a real browser: upload the cat photo, run Sobol with a small budget (68 queries), watch it finish.

Saves docs/screenshot-explore.png (the README shows it).
"""
import re
from pathlib import Path

from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "screenshot-explore.png"


def test_upload_cat_and_run_sobol(page, app_url, wait_for_app, small_sobol):
    page.goto(f"{app_url}/explore")
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Explore")).to_be_visible(timeout=120_000)

    page.get_by_text("Upload an image", exact=True).click()
    wait_for_app(page)
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(ROOT / "assets/examples/cat.png"))
    # the target defaults to the model's top-1 class for the uploaded photo
    target = page.get_by_role("combobox", name="Class to explain (type to search)")
    expect(target).to_have_value(re.compile(r"Egyptian cat\s+·\s+285"), timeout=60_000)
    wait_for_app(page)

    # a small budget that still gives a readable map: a 4 x 4 grid, 4 designs = 4 x (16 + 1) = 68 queries
    small_sobol(page)                        # 68 queries

    page.get_by_role("button", name="Run").click()
    progress = page.get_by_test_id("stProgress").get_by_role("progressbar")
    expect(progress).to_have_attribute("aria-valuenow", "100", timeout=150_000)
    expect(page.get_by_test_id("stProgress")).to_contain_text("68 / 68 queries")
    expect(page.get_by_test_id("stPlotlyChart").first).to_be_visible()
    expect(page.get_by_role("button", name="Overlay PNG")).to_be_visible(timeout=30_000)
    wait_for_app(page)
    page.wait_for_timeout(1000)  # let Plotly finish drawing before the screenshot
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
