"""50 participants x 20 answers from concurrent threads, and a writer killed with SIGKILL mid-transaction.

Wall times are printed (run with -s) for the README: see `python -m pytest tests/study/test_concurrency.py -s -k threads`.
"""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from study.db import open_db
from study.repo import Repository, StimulusSpec
from study.schema import Participant, Response
from study_helpers import centre_map, photo

N_PARTICIPANTS, N_TRIALS = 50, 20
ROOT = Path(__file__).resolve().parents[2]


def likert_study(repo, n=N_TRIALS):
    img = photo("chelsea", 16)
    specs = [StimulusSpec("chelsea", img, "tiny_cnn", f"m{i}", centre_map(16) + i) for i in range(n)]
    return repo.create_study("Load", specs, question="Rate", pairwise=False)


def test_threads_50x20_exactly_1000_rows(db_url):
    engine = open_db(db_url)
    repo = Repository(engine)
    code = likert_study(repo)
    errors, start = [], threading.Barrier(N_PARTICIPANTS)

    def participant():
        try:
            start.wait()
            token = repo.join(code)           # joins race too: each gets its own slot
            repo.consent(code, token)
            for k, (tid, _) in enumerate(repo.order(code, token)):
                saved = repo.save_response(code, token, tid, rating=1 + k % 5)
                if k % 4 == 0:          # a double-clicked submit: must return the same row
                    again = repo.save_response(code, token, tid, rating=5)
                    assert again.id == saved.id and not again.created
        except Exception as e:     # noqa: BLE001 - collected and asserted below
            errors.append(repr(e))

    threads = [threading.Thread(target=participant) for _ in range(N_PARTICIPANTS)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    print(f"\n[study concurrency] {engine.dialect.name}: {N_PARTICIPANTS} threads x {N_TRIALS} responses "
          f"(+{N_PARTICIPANTS * N_TRIALS // 4} duplicate submits) in {wall:.2f} s")
    assert errors == []
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
    rows = repo.response_rows(code)
    assert sorted(r["rating"] for r in rows) == sorted([1 + k % 5 for k in range(N_TRIALS)] * N_PARTICIPANTS)
    engine.dispose()


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
