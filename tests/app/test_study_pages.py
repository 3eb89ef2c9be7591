"""The three study pages in AppTest: admin gate (unset / wrong / right password), designer computing real maps
with the bundled model into a study, a participant run with resume and a foreign token, results and CSV."""
import csv
import io
from pathlib import Path

import numpy as np
import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from study import Repository, open_db

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "views"
DESIGNER, PARTICIPANT, RESULTS = (str(PAGES / f"study_{n}.py") for n in ("designer", "participant", "results"))
sys_path = str(ROOT / "tests" / "study")


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
    assert at.session_state["study_admin_ok"]


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
    assert f"?study={code}" in at.code[0].value
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
