"""A participant completes a short study in Chromium: consent, rating and choice screens, a reload that
resumes from the URL token, the thank-you screen; every answer is in the database exactly once."""
import re
import sys
from pathlib import Path

from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "study"))

from study import Repository, open_db  # noqa: E402
from study_helpers import make_specs  # noqa: E402


def app_db_url(tmp_path_factory) -> str:
    """The SQLite file the `app_url` fixture points the app at (STUDY_DB_URL in its e2e-app tmp dir)."""
    app_dir = sorted(tmp_path_factory.getbasetemp().glob("e2e-app*"), key=lambda p: p.stat().st_mtime)[-1]
    return f"sqlite:///{app_dir / 'study.db'}"


def answer_screen(page, rating: str, side: str, wait_for_app) -> None:
    wait_for_app(page)
    radios = page.get_by_test_id("stRadio")
    expect(radios).to_be_visible(timeout=30_000)
    name = rating if page.get_by_role("radiogroup", name="Your rating").count() else side
    radios.get_by_text(name, exact=True).click()
    expect(radios.get_by_role("radio", name=name, exact=True)).to_be_checked()
    page.get_by_role("button", name="Submit").click()


def test_participant_completes_a_study(page, app_url, wait_for_app, tmp_path_factory):
    repo = Repository(open_db(app_db_url(tmp_path_factory)))
    code = repo.create_study("E2E pilot", make_specs(inputs=("chelsea",), methods=("sobol", "rise")),
                             question="How well does the highlighted region explain the decision?")
    total = repo.study_summary(code)["trials"]           # 3 ratings + 1 choice
    page.goto(f"{app_url}/?study={code}")
    wait_for_app(page)
    expect(page.get_by_role("heading", name="E2E pilot")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("sobol")).to_have_count(0)     # no method names anywhere
    page.get_by_text("I have read the above and agree to take part.").click()
    wait_for_app(page)
    page.get_by_role("button", name="Start the study").click()
    expect(page.get_by_text(f"Screen 1 of {total}")).to_be_visible(timeout=30_000)
    assert re.search(r"[?&]token=[A-Za-z0-9_-]{32,}", page.url)

    answer_screen(page, "4", "Map A", wait_for_app)
    expect(page.get_by_text(f"Screen 2 of {total}")).to_be_visible(timeout=30_000)
    answer_screen(page, "2", "Map B", wait_for_app)
    expect(page.get_by_text(f"Screen 3 of {total}")).to_be_visible(timeout=30_000)

    page.reload()                                           # resume from the token in the URL
    wait_for_app(page)
    expect(page.get_by_text(f"Screen 3 of {total}")).to_be_visible(timeout=60_000)
    for screen in range(3, total + 1):
        expect(page.get_by_text(f"Screen {screen} of {total}")).to_be_visible(timeout=30_000)
        answer_screen(page, "5 - very well", "Map A", wait_for_app)
        if screen < total:     # the next screen must replace this one before answering again
            expect(page.get_by_text(f"Screen {screen + 1} of {total}")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Thank you! All your answers are saved.")).to_be_visible(timeout=30_000)

    # the admin sees it on the results page (password from the app_url fixture)
    page.goto(f"{app_url}/study_results")
    wait_for_app(page)
    page.get_by_label("Admin password").fill("test-admin")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text(f"1 participants, 1 completed; {total} responses.")).to_be_visible(timeout=60_000)
    expect(page.get_by_role("button", name="Download all raw responses (CSV)")).to_be_enabled()

    rows = repo.response_rows(code)
    assert len(rows) == total and len({r["trial"] for r in rows}) == total
    assert [r["participant"] for r in rows] == [0] * total
    repo.engine.dispose()
