"""The three study pages in AppTest: admin gate (unset / weak / wrong / right password, brute-force back-off
through the real form, logout, expiry), designer computing real maps with the bundled model into a study and
handing out the participant page's link, lifecycle controls (close / reopen, deadline, cap) on the designer
and results pages, a participant run with resume and a foreign token, closed / ended / full studies, a
refused comment shown as a message, results and CSV."""
import csv
import io
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from study import Repository, open_db
from study.auth import default_limiter

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "views"
DESIGNER, PARTICIPANT, RESULTS = (str(PAGES / f"study_{n}.py") for n in ("designer", "participant", "results"))
sys_path = str(ROOT / "tests" / "study")


ADMIN = "study_admin_login"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture(autouse=True)
def fresh_limiter(monkeypatch):
    """The login back-off is per process (one server): every test starts with none, on a clock it controls."""
    limiter, clock = default_limiter(), FakeClock()
    limiter.reset()
    monkeypatch.setattr(limiter, "clock", clock)
    yield clock
    limiter.reset()


@pytest.fixture
def db(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    monkeypatch.setenv("STUDY_DB_URL", url)
    monkeypatch.setenv("STUDY_ADMIN_PASSWORD", "correct horse")
    engine = open_db(url)
    yield Repository(engine)
    engine.dispose()


def small_study(repo, **kw):
    import sys
    sys.path.insert(0, sys_path)
    from study_helpers import make_specs
    return repo.create_study("Pilot", make_specs(inputs=("chelsea",), methods=("sobol", "rise")),
                             question="How well does the highlighted region explain the decision?", **kw)


def login(at, prefix, password):
    at.text_input(key=f"{prefix}password").input(password)
    at.button[0].click().run()        # the form's submit button
    return at


@pytest.mark.parametrize("page,prefix", [(DESIGNER, "study_designer."), (RESULTS, "study_results.")])
def test_admin_pages_need_a_password(page, prefix, db, monkeypatch):
    monkeypatch.delenv("STUDY_ADMIN_PASSWORD")
    at = AppTest.from_file(page, default_timeout=30).run()
    assert not at.exception
    assert "STUDY_ADMIN_PASSWORD" in at.warning[0].value and not at.text_input and not at.dataframe
    monkeypatch.setenv("STUDY_ADMIN_PASSWORD", "correct horse")
    at = AppTest.from_file(page, default_timeout=30).run()
    login(at, prefix, "wrong horse")
    assert at.error[0].value == "Wrong password." and not at.tabs and not at.selectbox
    login(at, prefix, "correct horse")
    assert not at.exception and not at.error and all(t.key != f"{prefix}password" for t in at.text_input)
    assert at.session_state[ADMIN]["fingerprint"]
    # logout: back to the login form
    at.sidebar.button(key=f"{prefix}logout").click().run()
    assert ADMIN not in at.session_state and at.text_input(key=f"{prefix}password")


@pytest.mark.parametrize("weak", ["a", "0", "   ", "short-pw", "aaaaaaaaaaaa", " 1212121212 "])
def test_weak_admin_password_keeps_pages_closed(weak, db, monkeypatch):
    monkeypatch.setenv("STUDY_ADMIN_PASSWORD", weak)
    for page in (DESIGNER, RESULTS):
        at = AppTest.from_file(page, default_timeout=30).run()
        assert not at.exception
        assert "admin pages stay closed" in at.error[0].value and "STUDY_ADMIN_PASSWORD" in at.error[0].value
        assert not at.text_input and not at.tabs and not at.selectbox          # no login form at all
        assert ADMIN not in at.session_state


def test_brute_force_through_the_form_is_slowed(db, fresh_limiter):
    P = "study_results."
    at = AppTest.from_file(RESULTS, default_timeout=30).run()
    for i in range(5):                                      # the first five wrong tries cost nothing
        login(at, P, f"guess-{i}")
        assert at.error[0].value == "Wrong password."
    login(at, P, "guess-5")                                 # the sixth starts a back-off: 2 s
    assert "wait 2 s" in at.error[0].value
    login(at, P, "correct horse")                          # refused unchecked while it lasts
    assert "wait 2 s" in at.error[0].value and ADMIN not in at.session_state
    fresh_limiter.now += 2.1
    login(at, P, "guess-6")                                 # each further wrong one doubles it
    assert "wait 4 s" in at.error[0].value
    waits = []
    for i in range(10):                                     # an attacker waiting out every back-off ...
        fresh_limiter.now += 901
        login(at, P, f"guess-{7 + i}")
        waits.append(at.error[0].value)
    assert "wait 15 min" in waits[-1]                       # ... gets one try per 15 minutes
    fresh_limiter.now += 901                                # the real password still works after the wait
    login(at, P, "correct horse")
    assert not at.error and at.session_state[ADMIN]


def test_admin_login_expires(db):
    P = "study_results."
    small_study(db)
    at = AppTest.from_file(RESULTS, default_timeout=30).run()
    login(at, P, "correct horse")
    assert at.selectbox(key=P + "study")
    stale = dict(at.session_state[ADMIN])
    stale["seen"] = time.time() - 31 * 60                    # half an hour without use
    at.session_state[ADMIN] = stale
    at.run()
    assert "expired after 30 minutes without use" in at.info[0].value
    assert at.text_input(key=P + "password") and not at.selectbox
    login(at, P, "correct horse")
    stale = dict(at.session_state[ADMIN])
    stale["at"] = time.time() - 9 * 3600                     # in use all along, but logged in 9 h ago
    at.session_state[ADMIN] = stale
    at.run()
    assert "expired after 8 hours" in at.info[0].value


def _set_param(at, key, target):
    for kind in ("select_slider", "slider", "number_input"):
        try:
            w = getattr(at, kind)(key=key)
        except KeyError:
            continue
        if kind == "select_slider":
            opts = [type(target)(float(o)) for o in w.options]
            w.set_value(w.options[int(np.argmin([abs(o - target) for o in opts]))])
        else:
            w.set_value(target)
        return
    raise KeyError(key)


@pytest.mark.slow
def test_designer_computes_and_freezes_a_study(db):
    at = AppTest.from_file(DESIGNER, default_timeout=120).run()
    login(at, "study_designer.", "correct horse")
    P = "study_designer."
    at.multiselect(key=P + "inputs").set_value(["cat"])
    at.multiselect(key=P + "methods").set_value(["occlusion", "sobol"]).run()
    _set_param(at, P + "occlusion.patch", 112)
    _set_param(at, P + "occlusion.stride", 112)
    _set_param(at, P + "sobol.grid_size", 2)
    _set_param(at, P + "sobol.nb_design", 4)
    at.run()
    at.button(key=P + "create").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    code = at.session_state[P + "created"]
    assert at.code[0].value.endswith(f"study_participant?study={code}")     # the participant page's link
    summary = db.study_summary(code)
    # cat x (occlusion, sobol) + 1 attention check; 3 ratings + 1 pair
    assert [s["method"] for s in summary["stimuli"]] == ["occlusion", "sobol", "attention_check"]
    assert summary["trials"] == 4 and summary["stimuli"][0]["params"]["patch"] == 112
    token = db.join(code)
    db.consent(code, token)
    maps = set()
    while (tv := db.next_trial(code, token)) is not None:
        assert tv.left.saliency.shape == (224, 224) and np.isfinite(tv.left.saliency).all()
        maps.add(tv.left.saliency.tobytes())
        db.save_response(code, token, tv.trial_id, **({"rating": 3} if tv.kind == "likert" else {"choice": 0}))
    assert len(maps) >= 3        # the frozen maps differ per method


def test_participant_flow_resume_and_foreign_token(db):
    code = small_study(db, ask_comment=True)
    at = AppTest.from_file(PARTICIPANT, default_timeout=30)
    at.query_params["study"] = code
    at.run()
    assert at.title[0].value == "Pilot" and at.button(key="study_participant.start").disabled
    at.checkbox(key="study_participant.agree").check().run()
    at.button(key="study_participant.start").click().run()
    token = at.query_params["token"][0] if isinstance(at.query_params["token"], list) else at.query_params["token"]
    assert db.participant_state(code, token).consented
    # submit without an answer: told, nothing saved
    at.button[0].click().run()
    assert "choose an answer" in at.error[0].value and db.participant_state(code, token).answered == 0
    total = db.participant_state(code, token).total
    for i in range(2):
        assert f"Screen {i + 1} of {total}" in at.get("progress")[0].proto.text
        assert not any(m in str(at.markdown) + str(at.caption) for m in ("sobol", "rise", "attention"))
        if at.radio[0].label == "Your rating":
            at.radio[0].set_value(4)
        else:
            at.radio[0].set_value("Map B")
        at.text_input[0].input("=1+1")
        at.button[0].click().run()
        assert not at.exception and not at.error
    assert db.participant_state(code, token).answered == 2
    # reload: a fresh session with the token in the URL resumes at screen 3
    at2 = AppTest.from_file(PARTICIPANT, default_timeout=30)
    at2.query_params["study"] = code
    at2.query_params["token"] = token
    at2.run()
    assert f"Screen 3 of {total}" in at2.get("progress")[0].proto.text
    # another participant's token, and a token of another study
    other_code = small_study(db)
    other_token = db.join(other_code)
    for c, t in [(code, other_token), (code, "A" * 32)]:
        at3 = AppTest.from_file(PARTICIPANT, default_timeout=30)
        at3.query_params["study"] = c
        at3.query_params["token"] = t
        at3.run()
        assert "not valid for this study" in at3.error[0].value and not at3.radio and not at3.image
    at4 = AppTest.from_file(PARTICIPANT, default_timeout=30)
    at4.query_params["study"] = "no-such-study"
    at4.run()
    assert "No study with this code" in at4.error[0].value
    # finishing: remaining screens, then thanks
    while at2.radio:
        at2.radio[0].set_value(1 if at2.radio[0].label == "Your rating" else "Map A")
        at2.button[0].click().run()
    assert "Thank you" in at2.success[0].value and db.participant_state(code, token).done


def test_results_page_stats_exclusion_and_csv(db, monkeypatch):
    code = small_study(db)
    stim = {x["id"]: x for x in db.study_summary(code)["stimuli"]}
    # participants 0, 1: sobol 5, rise 2, attention check 1, prefer sobol; participant 2 rates everything 5
    # and prefers rise -> fails the attention check and is excluded by default
    for p in range(3):
        token = db.join(code)
        db.consent(code, token)
        while (tv := db.next_trial(code, token)) is not None:
            a = stim[(tv.right if tv.swapped else tv.left).id]["method"]
            if tv.kind == "pairwise":
                db.save_response(code, token, tv.trial_id, choice=int((a == "sobol") == (p == 2)))
            else:
                db.save_response(code, token, tv.trial_id,
                                 rating=5 if p == 2 else {"sobol": 5, "rise": 2, "attention_check": 1}[a])
    downloads = {}
    orig = MediaFileManager.add

    def capture(self, data, mimetype, coordinates, file_name=None, is_for_static_download=False):
        downloads[file_name] = data
        return orig(self, data, mimetype, coordinates, file_name, is_for_static_download)

    monkeypatch.setattr(MediaFileManager, "add", capture)
    at = AppTest.from_file(RESULTS, default_timeout=30).run()
    login(at, "study_results.", "correct horse")
    assert not at.exception
    assert "1 participant(s) failed" in at.warning[0].value
    ratings = at.dataframe[1].value.set_index("method")
    assert ratings.loc["sobol", "mean"] == 5 and ratings.loc["rise", "mean"] == 2 and ratings.loc["sobol", "n"] == 2
    wins = at.dataframe[2].value
    assert wins.loc["sobol", "rise"] == 2 and wins.loc["rise", "sobol"] == 0
    csv_bytes = downloads[f"study_{code}_responses.csv"]
    table = list(csv.DictReader(io.StringIO(csv_bytes.decode())))
    assert len(table) == 3 * db.study_summary(code)["trials"]
    assert {r["participant"] for r in table} == {"0", "1", "2"}
    at.checkbox(key="study_results.exclude").uncheck().run()
    assert not at.exception and at.metric[0].label.startswith("Krippendorff")
    ratings = at.dataframe[1].value.set_index("method")
    assert ratings.loc["rise", "mean"] == 3 and ratings.loc["rise", "n"] == 3
    assert at.dataframe[2].value.loc["rise", "sobol"] == 1


def _participant_page(code, token=None):
    at = AppTest.from_file(PARTICIPANT, default_timeout=30)
    at.query_params["study"] = code
    if token:
        at.query_params["token"] = token
    return at.run()


def _start(repo, code):
    token = repo.join(code)
    repo.consent(code, token)
    return token


def test_closed_ended_and_full_studies_show_why(db):
    code = small_study(db)
    token = _start(db, code)
    db.close_study(code)
    for at in (_participant_page(code), _participant_page(code, token)):
        assert not at.exception and at.title[0].value == "Pilot"
        assert "closed and no longer accepts answers" in at.warning[0].value
        assert not at.radio and not at.image and not at.button and not at.checkbox
    assert "answers you gave are saved" in _participant_page(code, token).caption[0].value
    db.reopen_study(code)
    db.set_lifecycle(code, deadline=datetime.now(timezone.utc) - timedelta(hours=1))
    assert "ended on" in _participant_page(code, token).warning[0].value
    db.set_lifecycle(code, deadline=None, max_participants=1)
    at = _participant_page(code)                            # full: nobody new ...
    assert "all the participants it needs" in at.warning[0].value and not at.checkbox
    at = _participant_page(code, token)                     # ... but the one who joined goes on
    assert not at.warning and at.radio
    # a study closed while a participant looks at a screen: the submit is not saved, the page says why
    db.close_study(code)
    if at.radio[0].label == "Your rating":
        at.radio[0].set_value(3)
    else:
        at.radio[0].set_value("Map A")
    at.button[0].click().run()
    assert not at.exception and "closed" in at.warning[0].value and not at.radio
    assert db.participant_state(code, token).answered == 0
    # a participant who finished still gets their thanks after closing
    db.reopen_study(code)
    while (tv := db.next_trial(code, token)) is not None:
        db.save_response(code, token, tv.trial_id, **({"rating": 2} if tv.kind == "likert" else {"choice": 0}))
    db.close_study(code)
    assert "Thank you" in _participant_page(code, token).success[0].value


def test_refused_comment_is_a_message_not_a_traceback(db):
    code = small_study(db, ask_comment=True)
    token = _start(db, code)
    at = _participant_page(code, token)
    # (a lone surrogate cannot travel through the page's protocol at all: UTF-8; test_validation covers it)
    for bad, words in [("nice\x00map", "NUL character"), ("beep\x07", "control")]:
        if at.radio[0].label == "Your rating":
            at.radio[0].set_value(4)
        else:
            at.radio[0].set_value("Map B")
        at.text_input[0].input(bad)
        at.button[0].click().run()
        assert not at.exception and words in at.error[0].value and "comment" in at.error[0].value
        assert "Traceback" not in str(at) and "sqlalchemy" not in str(at).lower()
        assert db.participant_state(code, token).answered == 0
    at.text_input[0].input("fine, thanks")
    at.button[0].click().run()
    assert not at.error and db.participant_state(code, token).answered == 1
    assert db.response_rows(code)[0]["comment"] == "fine, thanks"


def test_lifecycle_controls_on_designer_and_results(db):
    code = small_study(db)
    _start(db, code)
    at = AppTest.from_file(DESIGNER, default_timeout=120).run()
    login(at, "study_designer.", "correct horse")
    P = f"study_designer.{code}."
    assert any(c.value.endswith(f"/study_participant?study={code}") for c in at.code)
    assert any("open" in m.value and "1 joined" in m.value for m in at.markdown)
    at.button(key=P + "close").click().run()
    assert not at.exception and db.lifecycle(code).state == "closed"
    at.button(key=P + "reopen").click().run()
    assert db.lifecycle(code).state == "open"
    at.checkbox(key=P + "has_deadline").check()
    at.date_input(key=P + "deadline_date").set_value(datetime(2031, 3, 4).date())
    at.time_input(key=P + "deadline_time").set_value(datetime(2031, 3, 4, 17, 30).time())
    at.number_input(key=P + "cap").set_value(40)
    save_limits(at)
    lc = db.lifecycle(code)
    assert not at.exception and (lc.cap, lc.deadline) == (40, datetime(2031, 3, 4, 17, 30, tzinfo=timezone.utc))
    # results page: same controls; a closed study's results stay readable and exportable
    token = _start(db, code)
    tv = db.next_trial(code, token)
    db.save_response(code, token, tv.trial_id, **({"rating": 5} if tv.kind == "likert" else {"choice": 0}))
    db.close_study(code)
    at = AppTest.from_file(RESULTS, default_timeout=30).run()
    login(at, "study_results.", "correct horse")
    P = f"study_results.{code}."
    assert not at.exception and at.button(key=P + "reopen")
    assert "2 participants, 0 completed; 1 responses." in at.caption[0].value
    assert not at.get("download_button")[0].proto.disabled
    at.number_input(key=P + "cap").set_value(0)
    at.checkbox(key=P + "has_deadline").uncheck()
    save_limits(at)
    lc = db.lifecycle(code)
    assert not at.exception and (lc.state, lc.cap, lc.deadline) == ("closed", None, None)
    at.button(key=P + "reopen").click().run()
    assert db.lifecycle(code).state == "open" and at.button(key=P + "close")


def save_limits(at):
    next(b for b in at.button if b.label == "Save deadline and cap").click().run()


def test_designer_refuses_bad_texts_before_computing(db):
    P = "study_designer."
    at = AppTest.from_file(DESIGNER, default_timeout=60).run()
    login(at, P, "correct horse")
    at.text_input(key=P + "title").input("Cats\x00and coffee")
    at.button(key=P + "create").click().run()
    assert not at.exception and "NUL character" in at.error[0].value and "title" in at.error[0].value
    assert not at.get("progress")                        # no map was computed
    at.text_input(key=P + "title").input("Cats and coffee")
    at.text_area(key=P + "question").input("   ")
    at.button(key=P + "create").click().run()
    assert "question must not be empty" in at.error[0].value
    assert db.list_studies() == []
