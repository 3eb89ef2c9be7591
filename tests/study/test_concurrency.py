"""50 participants as separate processes x 20 answers (+ duplicate submits) on 224 px stimuli, and a writer
killed with SIGKILL mid-transaction.

The save latencies are printed (run with -s): `python -m pytest tests/study/test_concurrency.py -s -k processes`
prints `[study concurrency] ...` with the wall time and the save p50 / p99 per database.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from study.db import open_db
from study.repo import Repository, StimulusSpec
from study.schema import Participant, Response
from study_helpers import centre_map, in_processes, percentile, photo

N_PARTICIPANTS, N_TRIALS, SIDE = 50, 20, 224
SQLITE_P99_LIMIT_S = 1.0
ROOT = Path(__file__).resolve().parents[2]


def likert_study(repo, n=N_TRIALS, side=SIDE):
    """n rating trials on real-size stimuli (a 224 px photo and a 224 x 224 float32 map each)."""
    img = photo("chelsea", side)
    specs = [StimulusSpec("chelsea", img, "tiny_cnn", f"m{i}", centre_map(side, side / 5) + i) for i in range(n)]
    return repo.create_study("Load", specs, question="Rate", pairwise=False)


def _participant(i, barrier, url, code):
    """What the participant page does per screen: read the next trial (its images), then save the answer;
    every fourth answer is submitted twice (a double click), which must return the first row."""
    engine = open_db(url, create=False)
    repo = Repository(engine)
    with engine.connect():
        pass
    barrier.wait(timeout=120)
    token = repo.join(code)           # joins race too: each gets its own slot
    repo.consent(code, token)
    saves, k = [], 0
    while (tv := repo.next_trial(code, token)) is not None:
        assert tv.left.saliency.shape == (SIDE, SIDE)
        t0 = time.perf_counter()
        saved = repo.save_response(code, token, tv.trial_id, rating=1 + k % 5)
        saves.append(time.perf_counter() - t0)
        if k % 4 == 0:
            again = repo.save_response(code, token, tv.trial_id, rating=5)
            assert again.id == saved.id and not again.created and again.rating == saved.rating
        k += 1
    engine.dispose()
    return saves


def test_processes_50x20_exactly_1000_rows(db_url):
    engine = open_db(db_url)
    repo = Repository(engine)
    code = likert_study(repo)
    engine.dispose()                  # no open connection crosses the fork
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    results = in_processes(_participant, N_PARTICIPANTS, db_url, code)
    wall = time.perf_counter() - t0
    errors = [r for r in results if not isinstance(r, list)]
    assert errors == []
    saves = [x for r in results for x in r]
    p50, p99 = percentile(saves, 50), percentile(saves, 99)
    engine = open_db(db_url, create=False)
    print(f"\n[study concurrency] {engine.dialect.name}: {N_PARTICIPANTS} processes x {N_TRIALS} answers "
          f"(+{N_PARTICIPANTS * N_TRIALS // 4} duplicate submits), {SIDE} px stimuli: {wall:.1f} s; "
          f"save p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {max(saves) * 1000:.0f} ms "
          f"(load average before: {load_before:.1f} on {os.cpu_count()} CPUs)")
    assert len(saves) == N_PARTICIPANTS * N_TRIALS
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Response)) == N_PARTICIPANTS * N_TRIALS
        pairs = s.execute(select(Response.participant_id, Response.trial_id)).all()
        assert len(set(pairs)) == len(pairs)
        assert sorted(s.scalars(select(Participant.slot))) == list(range(N_PARTICIPANTS))
        answered = s.scalars(select(Participant.answered)).all()
        assert answered == [N_TRIALS] * N_PARTICIPANTS
        assert s.scalar(select(func.count()).select_from(Participant)
                        .where(Participant.completed_at.is_not(None))) == N_PARTICIPANTS
    # ratings stored are the first submits (1 + k % 5), never the duplicates' 5
    rows = Repository(engine).response_rows(code)
    assert sorted(r["rating"] for r in rows) == sorted([1 + k % 5 for k in range(N_TRIALS)] * N_PARTICIPANTS)
    assert all(r["position"] == k for p in range(N_PARTICIPANTS)
               for k, r in enumerate(x for x in rows if x["participant"] == p))
    engine.dispose()
    # The bound is for a machine that runs this test, not one already oversubscribed by other work (there
    # the 50 processes wait for a core, not for the database): asserted when the load average before the
    # run was at most 4 x the number of CPUs, printed otherwise.
    if engine.dialect.name == "sqlite":
        if load_before <= 4 * (os.cpu_count() or 1):
            assert p99 < SQLITE_P99_LIMIT_S, f"SQLite save p99 {p99:.2f} s"
        else:
            print(f"[study concurrency] p99 bound of {SQLITE_P99_LIMIT_S} s not asserted: load average "
                  f"{load_before:.1f} > 4 x {os.cpu_count()} CPUs before the run")


WRITER = """
import sys
from study.db import open_db
from study.repo import Repository
repo = Repository(open_db(sys.argv[1]))
code = sys.argv[2]
n = 0
while True:
    token = repo.join(code)
    repo.consent(code, token)
    for tid, _ in repo.order(code, token):
        repo.save_response(code, token, tid, rating=3, comment="x" * 500)
        n += 1
        if n == 30:
            print("ready", flush=True)
"""


def test_sigkill_mid_writes_leaves_db_consistent(db_url, tmp_path):
    engine = open_db(db_url)
    repo = Repository(engine)
    code = likert_study(repo)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, db_url, code], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read()
        time.sleep(0.3)                          # well inside the write loop
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    engine.dispose()
    engine = open_db(db_url)                     # a fresh connection, as after a crash
    with engine.connect() as c:
        if engine.dialect.name == "sqlite":
            assert c.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
            assert c.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
    with Session(engine) as s:
        n = s.scalar(select(func.count()).select_from(Response))
        assert n >= 30
        # no partial response: every row complete, and each participant's counter (written in the same
        # transaction as the response) equals their rows
        assert s.scalar(select(func.count()).select_from(Response).where(
            (Response.rating.is_(None)) | (Response.comment != "x" * 500))) == 0
        for p in s.scalars(select(Participant)):
            rows = s.scalar(select(func.count()).select_from(Response).where(Response.participant_id == p.id))
            assert p.answered == rows
    # the database keeps working: a new participant completes the study
    repo = Repository(engine)
    token = repo.join(code)
    repo.consent(code, token)
    while (tv := repo.next_trial(code, token)) is not None:
        repo.save_response(code, token, tv.trial_id, rating=2)
    assert repo.participant_state(code, token).done
    engine.dispose()
