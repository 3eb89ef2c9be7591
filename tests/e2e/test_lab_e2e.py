"""The Convergence lab in a real browser: open it from the sidebar, see the toy contour, run a tiny budget on
tiny_cnn and see the cosine curves drawn (plotly) and the run finish."""
import re

from playwright.sync_api import expect


def test_lab_from_sidebar_toy_and_run(page, app_url, wait_for_app):
    page.goto(app_url)
    wait_for_app(page, timeout=120_000)
    page.get_by_test_id("stSidebarNav").get_by_text("Convergence lab").click()
    expect(page.get_by_role("heading", name="Convergence lab")).to_be_visible(timeout=60_000)
    wait_for_app(page)

    budget = page.get_by_test_id("stNumberInput").filter(has_text="Queries per run").locator("input")
    budget.fill("100")
    budget.press("Enter")
    wait_for_app(page)
    seeds = page.get_by_test_id("stNumberInput").filter(has_text="Seeds").locator("input")
    seeds.fill("2")
    seeds.press("Enter")
    wait_for_app(page)
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.get_by_text(re.compile(r"Done in [\d.]+ s"))).to_be_visible(timeout=90_000)
    expect(page.get_by_test_id("stPlotlyChart").first).to_be_visible()
    expect(page.locator(".js-plotly-plot .scatterlayer .trace").first).to_be_attached()

    page.get_by_role("tab", name="Toy 2-D function").click()
    expect(page.get_by_text("Mean cosine (estimate vs true gradient)")).to_be_visible()
    expect(page.get_by_test_id("stImage").first).to_be_visible()
