"""The Vision-language API source in a real browser: the Explore page asks the reference chat server (the bundled
EfficientNet-Lite0 answering "cat, dog or car?" with genuine log-probabilities, on 127.0.0.1 in this process) about
the cat photo, shows the candidates' probabilities with "cat" on top, and runs a small Sobol explanation through
the API (68 queries, 68 / 68 counted)."""
import re

from playwright.sync_api import expect

from models.chat_server import serve_in_thread


def test_explain_a_vision_language_api(page, app_url, wait_for_app, small_sobol, effnet):
    with serve_in_thread(effnet) as srv:
        page.goto(f"{app_url}/explore")
        wait_for_app(page)
        expect(page.get_by_role("heading", name="Explore")).to_be_visible(timeout=120_000)
        page.get_by_text("Vision-language API", exact=True).click()
        wait_for_app(page)
        for label, value in (("API key variable", ""), ("API base URL", srv.url + "/v1")):   # no key: loopback
            box = page.get_by_role("textbox", name=label)
            box.fill(value)
            box.press("Enter")
            wait_for_app(page)
        expect(page.get_by_text("Candidate answers", exact=True)).to_be_visible(timeout=60_000)
        # the target defaults to the top candidate: the photo's cat, scored by the API's first-token logprobs
        target = page.get_by_role("combobox", name="Class to explain (type to search)")
        expect(target).to_have_value(re.compile(r"cat\s+·\s+0"), timeout=60_000)
        wait_for_app(page)

        small_sobol(page)                        # 4 x 4 grid, 4 designs: 68 queries, 68 API calls at most
        expect(page.get_by_text(re.compile(r"sends at most 68 queries to the endpoint"))).to_be_visible()
        page.get_by_role("button", name="Run").click()
        progress = page.get_by_test_id("stProgress").get_by_role("progressbar")
        expect(progress).to_have_attribute("aria-valuenow", "100", timeout=150_000)
        expect(page.get_by_test_id("stProgress")).to_contain_text("68 / 68 queries")
        expect(page.get_by_role("button", name="Overlay PNG")).to_be_visible(timeout=30_000)
        assert 0 < srv.server.config.app.state.stats["requests"] <= 1 + 68
