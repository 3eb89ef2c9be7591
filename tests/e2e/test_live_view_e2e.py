"""The live view in a real browser at a laptop's 1440 x 900: Run and the converging map on screen together for
the method with the most parameters, and a finished map no longer presented as the result once a parameter
changes."""
import re

import pytest
from playwright.sync_api import expect

from explainers import explainer_class, list_explainers

VIEWPORT = {"width": 1440, "height": 900}


@pytest.fixture(scope="module")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": VIEWPORT}


def inside(page, locator) -> bool:
    box = locator.bounding_box()
    return (box is not None and box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORT["height"]
            and box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORT["width"])


def choose_method(page, wait_for_app, title: str) -> None:
    box = page.get_by_role("combobox", name="Method", exact=True)
    if box.input_value() == title:
        return
    box.click()
    box.fill(title)                   # typing filters the list: the option is then on screen
    page.get_by_role("option", name=title, exact=True).click()
    expect(box).to_have_value(title)
    wait_for_app(page)


def test_run_and_the_map_share_the_screen_for_the_method_with_most_parameters(page, app_url, wait_for_app):
    black_box = list_explainers(modality="image", white_box=False)
    most = max(black_box, key=lambda m: len(explainer_class(m).param_specs))
    page.goto(f"{app_url}/explore")
    wait_for_app(page)
    choose_method(page, wait_for_app, explainer_class(most).title)
    run = page.get_by_role("button", name="Run")
    run.click()
    live = page.get_by_test_id("stImage").or_(page.get_by_test_id("stPlotlyChart")).first
    expect(page.get_by_test_id("stProgress")).to_be_visible(timeout=60_000)
    expect(live).to_be_visible(timeout=60_000)
    assert inside(page, run), f"Run is off screen: {run.bounding_box()}"
    assert inside(page, live), f"the map is off screen: {live.bounding_box()}"
    page.get_by_role("button", name="■ Stop").click()
    wait_for_app(page)


def test_a_changed_parameter_retires_the_finished_map(page, app_url, wait_for_app, small_sobol):
    page.goto(f"{app_url}/explore")
    wait_for_app(page)
    choose_method(page, wait_for_app, "Sobol attribution")
    small_sobol(page)                                            # 68 queries
    page.get_by_role("button", name="Run").click()
    expect(page.get_by_test_id("stProgress")).to_contain_text("68 / 68 queries", timeout=150_000)
    expect(page.get_by_role("button", name="Overlay PNG")).to_be_visible(timeout=60_000)
    wait_for_app(page)
    thumb = page.get_by_test_id("stSlider").filter(has_text="grid size").get_by_role("slider")
    thumb.focus()
    thumb.press("ArrowRight")                                    # grid size 4 -> 5
    wait_for_app(page)
    expect(page.get_by_text(re.compile("settings changed since the last run"))).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("stProgress")).to_have_count(0)
    expect(page.get_by_role("button", name="Overlay PNG")).to_have_count(0)
