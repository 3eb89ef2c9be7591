"""The study in Chromium.

- On a freshly started server (nobody has opened `/` yet), the participant link the designer hands out is the
  first page ever requested: it opens the study (no sidebar, no admin login); the designer shows that same
  link; closing the study there turns the link into the "closed" page.
- A participant completes a short study: consent, rating and choice screens, a reload that resumes from the
  URL token, the thank-you screen; every answer is in the database exactly once.
"""
import re
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "study"))

from study import Repository, open_db  # noqa: E402
from study_helpers import make_specs  # noqa: E402


ADMIN_PASSWORD = "e2e-admin-pw"


@pytest.fixture
def fresh_server(tmp_path, running_app):
    """A `streamlit run app.py` of its own, started for this test only, with a study already in its database;
    yields (url, repo, code). Nothing is requested from it before the test's first page."""
    db_url = f"sqlite:///{tmp_path / 'study.db'}"
    repo = Repository(open_db(db_url))
    code = repo.create_study("Fresh-server pilot", make_specs(inputs=("chelsea",), methods=("sobol", "rise")),
                             question="How well does the highlighted region explain the decision?")
    try:
        with running_app(tmp_path, STUDY_DB_URL=db_url, STUDY_ADMIN_PASSWORD=ADMIN_PASSWORD) as url:
            yield url, repo, code
    finally:
        repo.engine.dispose()


def test_participant_link_works_on_a_fresh_server(browser, fresh_server, wait_for_app):
    url, repo, code = fresh_server
    link = f"{url}/study_participant?study={code}"          # what the designer hands out (checked below)
    participant = browser.new_context(viewport={"width": 1280, "height": 1200})
    page = participant.new_page()
    page.goto(link)                                          # the server's very first page
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Fresh-server pilot")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("I have read the above and agree to take part.")).to_be_visible()
    expect(page.get_by_test_id("stSidebarNav")).to_have_count(0)        # no page list, no raw file names
    expect(page.get_by_text("Admin password")).to_have_count(0)
    expect(page.get_by_text("Page not found")).to_have_count(0)         # (made the page inert before)
    page.get_by_text("I have read the above and agree to take part.").click()
    wait_for_app(page)
    page.get_by_role("button", name="Start the study").click()
    expect(page.get_by_text(re.compile(r"Screen 1 of \d+"))).to_be_visible(timeout=30_000)
    assert len(repo.participants(code)) == 1

    # the designer shows exactly this link, and closes the study
    admin = browser.new_context(viewport={"width": 1440, "height": 1700})
    apage = admin.new_page()
    apage.goto(f"{url}/study_designer")
    wait_for_app(apage)
    apage.get_by_label("Admin password").fill(ADMIN_PASSWORD)
    apage.get_by_role("button", name="Log in").click()
    wait_for_app(apage)
    apage.get_by_role("tab", name="Studies").click()
    expect(apage.get_by_test_id("stCode").filter(has_text=f"study_participant?study={code}")).to_be_visible(
        timeout=60_000)
    shown = apage.get_by_test_id("stCode").filter(has_text=f"study_participant?study={code}").inner_text().strip()
    assert shown == link
    apage.get_by_role("button", name="Close the study").click()
    expect(apage.get_by_role("button", name="Reopen the study")).to_be_visible(timeout=30_000)
    assert repo.lifecycle(code).state == "closed"

    # a new participant opening the link now sees why they cannot take part
    late = browser.new_context().new_page()
    late.goto(link)
    wait_for_app(late)
    expect(late.get_by_text("This study is closed and no longer accepts answers.")).to_be_visible(timeout=60_000)
    expect(late.get_by_role("button", name="Start the study")).to_have_count(0)
    late.goto(f"{url}/study_designer?study={code}")        # a link of the earlier designer: the study, not a login
    wait_for_app(late)
    expect(late.get_by_text("This study is closed and no longer accepts answers.")).to_be_visible(timeout=60_000)
    expect(late.get_by_text("Admin password")).to_have_count(0)
    expect(late.get_by_text("Page not found")).to_have_count(0)
    for ctx in (participant, admin, late.context):
        ctx.close()


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
    page.get_by_label("Admin password").fill("test-admin")      # tests/e2e/conftest.py: 10 characters, valid
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text(f"1 participants, 1 completed; {total} responses.")).to_be_visible(timeout=60_000)
    expect(page.get_by_role("button", name="Download all raw responses (CSV)")).to_be_enabled()

    rows = repo.response_rows(code)
    assert len(rows) == total and len({r["trial"] for r in rows}) == total
    assert [r["participant"] for r in rows] == [0] * total
    repo.engine.dispose()
