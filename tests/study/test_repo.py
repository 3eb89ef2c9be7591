"""Repository behaviour on SQLite and PostgreSQL: create, join, order, idempotent saves, validation, isolation."""
import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from study.design import trial_order
from study.schema import Response
from study.repo import StudyError
from study_helpers import make_specs


def new_study(repo, **kw):
    kw.setdefault("question", "How well does the highlighted region explain the decision?")
    return repo.create_study("Cats and coffee", make_specs(), **kw)


def answer(repo, code, token, tv):
    if tv.kind == "likert":
        return repo.save_response(code, token, tv.trial_id, rating=3)
    return repo.save_response(code, token, tv.trial_id, choice=0)


def test_create_trials_and_frozen_maps(repo):
    code = new_study(repo)
    summary = repo.study_summary(code)
    # 2 inputs x (3 methods + 1 attention check) ratings + 2 inputs x C(3,2) pairs
    assert len(summary["stimuli"]) == 8 and summary["trials"] == 8 + 6
    token = repo.join(code)
    repo.consent(code, token)
    tv = repo.next_trial(code, token)
    assert tv.position == 0 and tv.total == 14
    assert tv.left.saliency.dtype == np.float32 and tv.left.saliency.shape == (32, 32)
    assert tv.left.image_png.startswith(b"\x89PNG")
    assert not hasattr(tv.left, "method")          # participants never get method names


def test_codes_and_tokens_unguessable(repo):
    codes = {new_study(repo) for _ in range(3)}
    assert len(codes) == 3 and all(len(c) >= 12 for c in codes)
    tokens = {repo.join(next(iter(codes))) for _ in range(5)}
    assert len(tokens) == 5 and all(len(t) >= 32 for t in tokens)


def test_idempotent_save_and_full_run(repo):
    code = new_study(repo, ask_comment=True)
    token = repo.join(code)
    with pytest.raises(StudyError, match="consent"):
        repo.next_trial(code, token)
    repo.consent(code, token)
    first = repo.next_trial(code, token)
    saved = repo.save_response(code, token, first.trial_id,
                               **({"rating": 2} if first.kind == "likert" else {"choice": 1}), comment="ok")
    again = repo.save_response(code, token, first.trial_id,
                               **({"rating": 5} if first.kind == "likert" else {"choice": 0}))
    assert saved.created and not again.created and again.id == saved.id
    assert (again.rating, again.choice) == (saved.rating, saved.choice)     # the first answer stands
    n = 1
    while (tv := repo.next_trial(code, token)) is not None:
        assert tv.position == n
        answer(repo, code, token, tv)
        n += 1
    state = repo.participant_state(code, token)
    assert state.done and state.answered == 14
    rows = repo.response_rows(code)
    assert len(rows) == 14 and len({r["trial"] for r in rows}) == 14
    assert all(token not in str(r) for r in rows)              # exports never carry tokens


def test_foreign_and_bad_tokens(repo):
    a, b = new_study(repo), new_study(repo)
    ta, tb = repo.join(a), repo.join(b)
    for code, token in [(a, tb), (b, ta), (a, "x" * 32)]:
        with pytest.raises(StudyError, match="not valid for this study"):
            repo.participant_state(code, token)
    for code, token in [("'; DROP TABLE studies; --", ta), (a, "short"), (a, None), (None, ta)]:
        with pytest.raises(StudyError, match="Invalid"):
            repo.participant_state(code, token)
    with pytest.raises(StudyError, match="No study"):
        repo.join("A" * 12)
    repo.consent(b, tb)
    tv_b = repo.next_trial(b, tb)
    repo.consent(a, ta)
    with pytest.raises(StudyError, match="not part of your study"):     # study b's trial with a's token
        repo.save_response(a, ta, tv_b.trial_id, rating=3)


@pytest.mark.parametrize("kwargs", [{"rating": 0}, {"rating": 6}, {"rating": "3"}, {"rating": 3.5},
                                    {"rating": True}, {"choice": 2}, {}, {"rating": 3, "choice": 0},
                                    {"rating": 3, "comment": "x" * 5000}])
def test_invalid_answers_rejected(db_url, kwargs):
    from study.db import open_db
    from study.repo import Repository
    repo = Repository(open_db(db_url))
    code = repo.create_study("Ratings", make_specs(attention=False), question="Q?", pairwise=False)
    token = repo.join(code)
    repo.consent(code, token)
    tv = repo.next_trial(code, token)
    with pytest.raises(StudyError):
        repo.save_response(code, token, tv.trial_id, **kwargs)
    assert repo.participant_state(code, token).answered == 0
    repo.engine.dispose()


def test_study_validation(repo):
    with pytest.raises(StudyError, match="title"):
        repo.create_study("  ", make_specs(), question="Q")
    with pytest.raises(StudyError, match="question type"):
        repo.create_study("T", make_specs(), question="Q", likert=False, pairwise=False)
    with pytest.raises(StudyError, match="no trials"):
        repo.create_study("T", make_specs(methods=("sobol",), attention=False), question="Q", likert=False)
    bad = make_specs()
    bad[0].saliency = np.full((4, 4), np.nan)
    with pytest.raises(StudyError, match="finite"):
        repo.create_study("T", bad, question="Q")
    assert repo.list_studies() == []          # nothing half-created


def test_order_counterbalanced():
    trials = [(i, i % 2 == 0) for i in range(10, 16)]
    orders = [trial_order(trials, seed=7, slot=k) for k in range(6)]
    for pos in range(6):      # within one cycle every trial appears once at each position
        assert sorted(o[pos][0] for o in orders) == list(range(10, 16))
    swaps = [dict(o)[10] for o in orders]          # pairwise trial 10 shown both ways, half and half
    assert sum(swaps) == 3
    assert trial_order(trials, 7, 3) == trial_order(trials, 7, 3)       # seeded: reproducible
    assert [t for t, _ in trial_order(trials, 7, 6)] != [t for t, _ in trial_order(trials, 8, 6)]


def test_unique_constraint_in_database(repo):
    """The database itself refuses a duplicate response (not only the repository's check)."""
    code = new_study(repo)
    token = repo.join(code)
    repo.consent(code, token)
    tv = repo.next_trial(code, token)
    answer(repo, code, token, tv)
    with Session(repo.engine) as s:
        r = s.scalar(select(Response))
        with pytest.raises(Exception):
            with s.begin():
                s.add(Response(participant_id=r.participant_id, trial_id=r.trial_id, position=0, rating=1))
    with Session(repo.engine) as s:
        assert s.scalar(select(func.count()).select_from(Response)) == 1


def test_sqlite_default_is_wal_in_data_dir(tmp_path, monkeypatch):
    from study.db import default_url, open_db
    monkeypatch.delenv("STUDY_DB_URL", raising=False)
    assert default_url().endswith("/data/study.db")
    monkeypatch.setenv("STUDY_DB_URL", f"sqlite:///{tmp_path / 'sub' / 's.db'}")
    engine = open_db()
    with engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert (tmp_path / "sub" / "s.db").exists()
    engine.dispose()


def test_admin_password_check(monkeypatch):
    from study.auth import expected_password, password_ok
    monkeypatch.delenv("STUDY_ADMIN_PASSWORD", raising=False)
    assert expected_password(None) is None and expected_password({}) is None
    assert not password_ok("", None) and not password_ok("anything", None)
    assert expected_password({"study_admin_password": "from-secrets"}) == "from-secrets"
    monkeypatch.setenv("STUDY_ADMIN_PASSWORD", "from-env")
    assert expected_password({"study_admin_password": "from-secrets"}) == "from-env"
    assert password_ok("from-env", "from-env") and not password_ok("from-env ", "from-env")
    assert not password_ok(None, "from-env") and not password_ok("Fröm", "from-env")
