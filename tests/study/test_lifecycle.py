"""Study lifecycle on SQLite and PostgreSQL: close / reopen, deadline, participant cap; results stay readable;
an older database without the lifecycle columns is migrated in place and keeps its participants."""
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, text

from study import lifecycle
from study.analysis import to_csv
from study.db import ADDED_COLUMNS, COUNTER_TRIGGER, has_counter_trigger, migrate, open_db
from study.lifecycle import StudyClosed
from study.repo import Repository
from study_helpers import make_specs


def new_study(repo, **kw):
    return repo.create_study("Lifecycle", make_specs(attention=False), question="Rate it", **kw)


def start(repo, code):
    token = repo.join(code)
    repo.consent(code, token)
    return token


def answer_next(repo, code, token):
    tv = repo.next_trial(code, token)
    return repo.save_response(code, token, tv.trial_id, **({"rating": 4} if tv.kind == "likert" else {"choice": 1}))


def test_close_refuses_joins_and_answers_results_stay(repo):
    code = new_study(repo)
    assert repo.lifecycle(code).state == "open" and repo.public_info(code)["accepts_joins"]
    token = start(repo, code)
    first = answer_next(repo, code, token)
    lc = repo.close_study(code)
    assert lc.state == "closed" and not lc.accepts_joins and not lc.accepts_answers
    info = repo.public_info(code)
    assert (info["state"], info["accepts_joins"], info["accepts_answers"]) == ("closed", False, False)
    assert "closed" in info["message"]
    with pytest.raises(StudyClosed, match="closed"):
        repo.join(code)
    tv = repo.next_trial(code, token)             # reading the next screen is harmless ...
    with pytest.raises(StudyClosed, match="closed"):   # ... answering it is refused
        repo.save_response(code, token, tv.trial_id, **({"rating": 2} if tv.kind == "likert" else {"choice": 0}))
    # a repeated submit of an answer saved before closing still returns it (nothing new is written)
    again = repo.save_response(code, token, first.trial_id,
                               **({"rating": first.rating} if first.rating else {"choice": first.choice}))
    assert again.id == first.id and not again.created
    # results and export unchanged
    rows = repo.response_rows(code)
    assert len(rows) == 1 and to_csv(rows).count(b"\n") == 2
    assert repo.participants(code)[0]["answered"] == 1
    assert [s["status"] for s in repo.list_studies()] == ["closed"]
    # reopening accepts again
    assert repo.reopen_study(code).state == "open"
    answer_next(repo, code, token)
    assert repo.participant_state(code, token).answered == 2
    assert repo.join(code)


def test_deadline(repo):
    past = datetime.now(timezone.utc) - timedelta(minutes=1)
    code = new_study(repo, deadline=datetime.now(timezone.utc) + timedelta(days=1))
    token = start(repo, code)
    lc = repo.set_lifecycle(code, deadline=past)
    assert lc.state == "ended" and lc.deadline == past
    assert "ended on" in repo.public_info(code)["message"]
    with pytest.raises(StudyClosed, match="ended on"):
        repo.join(code)
    with pytest.raises(StudyClosed, match="ended on"):
        answer_next(repo, code, token)
    # a deadline given in another zone is stored in UTC and compared as such on both engines
    later = datetime.now(timezone(timedelta(hours=-5))) + timedelta(hours=1)
    lc = repo.set_lifecycle(code, deadline=later)
    assert lc.state == "open" and lc.deadline == later.astimezone(timezone.utc)
    answer_next(repo, code, token)
    assert repo.set_lifecycle(code, deadline=None).deadline is None
    assert repo.lifecycle(code).state == "open"


def test_participant_cap(repo):
    code = new_study(repo, max_participants=2)
    a, b = start(repo, code), start(repo, code)
    lc = repo.lifecycle(code)
    assert (lc.state, lc.joined, lc.cap, lc.accepts_answers) == ("full", 2, 2, True)
    with pytest.raises(StudyClosed, match="all the participants it needs"):
        repo.join(code)
    answer_next(repo, code, a)                      # those who joined may finish
    answer_next(repo, code, b)
    assert repo.set_lifecycle(code, max_participants=3).state == "open"
    start(repo, code)
    with pytest.raises(StudyClosed):
        repo.join(code)
    assert repo.set_lifecycle(code, max_participants=1).state == "full"     # lowering never removes anyone
    assert len(repo.participants(code)) == 3
    assert repo.set_lifecycle(code, max_participants=None).state == "open"
    assert [p["participant"] for p in repo.participants(code)] == [0, 1, 2]
    start(repo, code)
    assert [p["participant"] for p in repo.participants(code)] == [0, 1, 2, 3]


def test_lifecycle_status_rules():
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    st = lambda **kw: lifecycle.status(**{"closed": False, "deadline": None, "cap": None, "joined": 0,
                                          "now": now, **kw}).state
    assert st() == "open" and st(closed=True, cap=1, joined=5) == "closed"
    assert st(deadline=now) == "ended" and st(deadline=now + timedelta(seconds=1)) == "open"
    assert st(deadline=datetime(2029, 12, 31, 23)) == "ended"         # naive (SQLite) read as UTC
    assert st(cap=3, joined=3) == "full" and st(cap=3, joined=2) == "open"


def _make_it_old(engine):
    """Make the database look like one created before the lifecycle columns and the counting trigger."""
    with engine.begin() as c:
        for name in ADDED_COLUMNS:
            c.execute(text(f"ALTER TABLE studies DROP COLUMN {name}"))
        if engine.dialect.name == "sqlite":
            c.execute(text(f"DROP TRIGGER {COUNTER_TRIGGER}"))
        else:
            c.execute(text(f"DROP TRIGGER {COUNTER_TRIGGER} ON responses"))
            c.execute(text("DROP FUNCTION study_response_counts()"))


def test_old_database_is_migrated(db_url):
    engine = open_db(db_url)
    repo = Repository(engine)
    code = new_study(repo)
    tokens = [start(repo, code) for _ in range(3)]
    answer_next(repo, code, tokens[0])
    _make_it_old(engine)
    engine.dispose()
    old = open_db(db_url, create=False)
    assert not set(ADDED_COLUMNS) & {c["name"] for c in inspect(old).get_columns("studies")}
    assert not has_counter_trigger(old)
    old.dispose()
    # several processes opening the old file at once: each either adds a column or finds it added
    engines = [open_db(db_url, create=False) for _ in range(4)]
    added, errors = [], []

    def run(e):
        try:
            added.extend(migrate(e))
        except Exception as exc:      # noqa: BLE001 - asserted below
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sorted(added) == sorted([*ADDED_COLUMNS, COUNTER_TRIGGER])
    for e in engines:
        e.dispose()
    engine = open_db(db_url)                      # and once more: nothing left to add
    assert migrate(engine) == []
    repo = Repository(engine)
    lc = repo.lifecycle(code)
    assert (lc.state, lc.joined, lc.cap, lc.deadline) == ("open", 3, None, None)
    assert repo.participant_state(code, tokens[0]).answered == 1
    answer_next(repo, code, tokens[1])            # old participants go on, counted by the new trigger
    assert [p["answered"] for p in repo.participants(code)] == [1, 1, 0]
    new = start(repo, code)                       # a new one takes the next slot, not a used one
    assert [p["participant"] for p in repo.participants(code)] == [0, 1, 2, 3]
    assert repo.participant_state(code, new).answered == 0
    assert repo.close_study(code).state == "closed"
    engine.dispose()


def test_repository_upgrades_an_old_database_opened_without_create(db_url):
    engine = open_db(db_url)
    code = new_study(Repository(engine))
    _make_it_old(engine)
    engine.dispose()
    engine = open_db(db_url, create=False)        # as a script might: no create_all, no migrate
    repo = Repository(engine)
    assert has_counter_trigger(engine) and repo.lifecycle(code).state == "open"
    token = start(repo, code)
    answer_next(repo, code, token)
    assert repo.participant_state(code, token).answered == 1
    engine.dispose()
