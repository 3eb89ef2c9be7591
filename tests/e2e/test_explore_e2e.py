"""The Explore page in a real browser: upload the cat photo, run Sobol with a small budget (10 queries), watch it finish.

Saves docs/screenshot-explore.png (the README shows it).
"""
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "screenshot-explore.png"


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1440, "height": 1700}}


def set_slider(page, label: str, steps_above_min: int) -> None:
    """Keyboard, not mouse: Home puts a Streamlit slider at its lowest value, each ArrowRight one step up."""
    thumb = page.get_by_test_id("stSlider").filter(has_text=label).get_by_role("slider")
    thumb.focus()
    thumb.press("Home")
    for _ in range(steps_above_min):
        thumb.press("ArrowRight")


def test_upload_cat_and_run_sobol(page, app_url, wait_for_app):
    page.goto(app_url)
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Explore")).to_be_visible(timeout=120_000)

    page.get_by_text("Upload an image", exact=True).click()
    wait_for_app(page)
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(ROOT / "assets/examples/cat.png"))
    # the target defaults to the model's top-1 class for the uploaded photo
    target = page.get_by_role("combobox", name="Class to explain (type to search)")
    expect(target).to_have_value(re.compile(r"Egyptian cat\s+·\s+285"), timeout=60_000)
    wait_for_app(page)

    # the smallest budget: a 2 x 2 grid, 2 designs = 2 x (4 + 1) = 10 queries (the shared 2-core CI box is slow)
    set_slider(page, "grid size", 0)         # 2
    wait_for_app(page)
    set_slider(page, "nb design", 0)         # 2
    wait_for_app(page)
    expect(page.get_by_text(re.compile(r"Query budget:\s*10 queries"))).to_be_visible(timeout=30_000)

    page.get_by_role("button", name="Run").click()
    progress = page.get_by_test_id("stProgress").get_by_role("progressbar")
    expect(progress).to_have_attribute("aria-valuenow", "100", timeout=150_000)
    expect(page.get_by_test_id("stProgress")).to_contain_text("10 / 10 queries")
    expect(page.get_by_test_id("stPlotlyChart").first).to_be_visible()
    expect(page.get_by_role("button", name="Overlay PNG")).to_be_visible(timeout=30_000)
    wait_for_app(page)
    page.wait_for_timeout(1000)  # let Plotly finish drawing before the screenshot
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
