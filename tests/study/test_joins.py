"""Bursts of joins from separate processes on SQLite and PostgreSQL: none refused while the study is open, one
slot each; with a cap, exactly `cap` get in however many arrive together."""
import time

from study.db import open_db
from study.lifecycle import FULL_MESSAGE
from study.repo import Repository, StudyError
from study_helpers import in_processes, make_specs, percentile

BURST = 150


def _join(i, barrier, url, code):
    engine = open_db(url, create=False)
    repo = Repository(engine)
    with engine.connect():               # connected before the burst: the burst measures joins
        pass
    barrier.wait(timeout=120)
    t0 = time.perf_counter()
    try:
        token = repo.join(code)
        return ("joined", token, time.perf_counter() - t0)
    except StudyError as e:
        return ("refused", str(e), time.perf_counter() - t0)
    finally:
        engine.dispose()


def _burst(db_url, n, **study_kw):
    engine = open_db(db_url)
    repo = Repository(engine)
    code = repo.create_study("Burst", make_specs(attention=False), question="Rate it", **study_kw)
    engine.dispose()                     # no open connection crosses the fork
    t0 = time.perf_counter()
    results = in_processes(_join, n, db_url, code)
    wall = time.perf_counter() - t0
    repo = Repository(open_db(db_url, create=False))
    return repo, code, results, wall


def test_150_simultaneous_joins_refuse_none(db_url):
    repo, code, results, wall = _burst(db_url, BURST)
    errors = [r for r in results if not isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, tuple) and r[0] == "refused"]
    joined = [r for r in results if isinstance(r, tuple) and r[0] == "joined"]
    secs = [r[2] for r in joined]
    print(f"\n[study joins] {repo.engine.dialect.name}: {BURST} simultaneous joins from separate processes: "
          f"{len(joined)} joined, {len(refused)} refused; join p50 {percentile(secs, 50):.3f} s, "
          f"p99 {percentile(secs, 99):.3f} s; {wall:.1f} s with process start-up")
    assert errors == [] and refused == []
    assert len({r[1] for r in joined}) == BURST                       # one token each
    assert [p["participant"] for p in repo.participants(code)] == list(range(BURST))   # one slot each, no gap
    assert repo.lifecycle(code).joined == BURST
    repo.engine.dispose()


def test_cap_holds_under_a_burst(db_url):
    cap, n = 25, 40
    repo, code, results, _ = _burst(db_url, n, max_participants=cap)
    assert [r for r in results if not isinstance(r, tuple)] == []
    joined = [r for r in results if r[0] == "joined"]
    refused = [r for r in results if r[0] == "refused"]
    assert len(joined) == cap and len(refused) == n - cap
    assert {r[1] for r in refused} == {FULL_MESSAGE}
    assert [p["participant"] for p in repo.participants(code)] == list(range(cap))
    assert repo.lifecycle(code).state == "full"
    repo.engine.dispose()
