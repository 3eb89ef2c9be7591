"""Database engine: SQLite in data/ by default (WAL, immediate write transactions), any URL via STUDY_DB_URL.

Tables are created on first use; what was added after the first release (the lifecycle columns, the trigger
that counts answers) is added to an existing database by `migrate` (ALTER TABLE ... ADD COLUMN and CREATE
TRIGGER, guarded by inspecting what is there), so old study files keep working.

Three ways in: `engine` for write transactions (BEGIN IMMEDIATE on SQLite), `reader(engine)` for reads (a
deferred BEGIN: no write lock), `single_statement(engine)` for a write that is one statement (no BEGIN at all
on SQLite).
"""
from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateColumn

from study.schema import Base, Study

ROOT = Path(__file__).resolve().parents[1]
SQLITE_BUSY_MS = 30_000


def default_url() -> str:
    """`STUDY_DB_URL` when set, else a SQLite file data/study.db in the repository."""
    url = os.environ.get("STUDY_DB_URL", "").strip()
    return url or f"sqlite:///{ROOT / 'data' / 'study.db'}"


def _sqlite_events(engine: Engine) -> None:
    # pysqlite's own transaction handling is disabled so that every transaction starts with BEGIN IMMEDIATE:
    # a writer then takes the lock up front and waits (busy_timeout) instead of failing with "database is
    # locked" when a read transaction tries to upgrade (SQLAlchemy's documented pysqlite recipe).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")   # safe with WAL: a crash loses at most whole transactions
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        opts = conn.get_execution_options()
        if opts.get(SINGLE_STATEMENT):
            return        # no BEGIN: SQLite runs the one statement as its own transaction (autocommit)
        # read-only sessions (Repository's reader engine) begin DEFERRED: in WAL mode they then neither wait
        # for nor block the writers
        conn.exec_driver_sql("BEGIN" if opts.get(READ_ONLY) else "BEGIN IMMEDIATE")


READ_ONLY = "study_read_only"
SINGLE_STATEMENT = "study_single_statement"


def reader(engine: Engine) -> Engine:
    """The same engine (same pool) for transactions that only read: on SQLite they take no write lock."""
    return engine.execution_options(**{READ_ONLY: True})


def single_statement(engine: Engine) -> Engine:
    """The same engine for a write that is ONE statement (a save: the INSERT, its trigger does the rest).

    On SQLite the statement runs without BEGIN/COMMIT around it, so the write lock is held only while SQLite
    executes it, never while Python runs between statements (where a busy machine may preempt the holder, and
    SQLite's busy handler then lets the other writers sleep up to 100 ms per try). 50 participant processes
    saving at once on 2 cores (load average 8-18 from other work): save p99 0.5-0.8 s this way, 1.0-2.8 s with
    the same INSERT inside BEGIN IMMEDIATE ... COMMIT. Other databases run it in an ordinary transaction."""
    return engine.execution_options(**{SINGLE_STATEMENT: True})


# Columns added to `studies` after the first release, with how to fill them in for the rows already there.
ADDED_COLUMNS = {
    "closed": None,
    "deadline": None,
    "max_participants": None,
    # the join counter continues after the participants who joined before it existed
    "next_slot": "UPDATE studies SET next_slot = COALESCE((SELECT MAX(p.slot) + 1 FROM participants p "
                 "WHERE p.study_id = studies.id), 0)",
}


# participants.answered / completed_at follow each new response inside the INSERT itself (same statement,
# same transaction, so a kill -9 can never leave a response without its count): a save is one statement.
COUNTER_TRIGGER = "response_counts"
_COUNT_UPDATE = """UPDATE participants SET answered = answered + 1,
    completed_at = CASE WHEN answered + 1 >= (SELECT COUNT(*) FROM trials WHERE trials.study_id = participants.study_id)
                   THEN {now} ELSE completed_at END
  WHERE id = NEW.participant_id;"""
_TRIGGER_DDL = {
    # no IF NOT EXISTS: of several processes adding it at once, exactly one succeeds and the others see the
    # error, find the trigger there and go on (migrate reports it added once)
    "sqlite": [f"CREATE TRIGGER {COUNTER_TRIGGER} AFTER INSERT ON responses BEGIN "
               + _COUNT_UPDATE.format(now="strftime('%Y-%m-%d %H:%M:%f', 'now')") + " END"],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION study_response_counts() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        + _COUNT_UPDATE.format(now="now()") + " RETURN NULL; END $$",
        f"CREATE TRIGGER {COUNTER_TRIGGER} AFTER INSERT ON responses FOR EACH ROW "
        "EXECUTE FUNCTION study_response_counts()"],
}
_TRIGGER_EXISTS = {
    "sqlite": f"SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name = '{COUNTER_TRIGGER}'",
    "postgresql": f"SELECT COUNT(*) FROM pg_trigger WHERE tgname = '{COUNTER_TRIGGER}' "
                  "AND tgrelid = 'responses'::regclass",
}


def has_counter_trigger(engine: Engine) -> bool:
    with reader(engine).connect() as c:
        return bool(c.execute(text(_TRIGGER_EXISTS[engine.dialect.name])).scalar())


def _add_counter_trigger(engine: Engine) -> bool:
    if engine.dialect.name not in _TRIGGER_DDL:
        raise RuntimeError(f"The study database supports SQLite and PostgreSQL, not {engine.dialect.name}.")
    if has_counter_trigger(engine):
        return False
    try:
        with engine.begin() as conn:
            for ddl in _TRIGGER_DDL[engine.dialect.name]:
                conn.execute(text(ddl))       # fixed DDL, no user input
        return True
    except DBAPIError:
        if not has_counter_trigger(engine):  # another process added it meanwhile: fine
            raise
        return False


def migrate(engine: Engine) -> list[str]:
    """Add what an older database lacks: the columns of ADDED_COLUMNS and the counter trigger; returns the
    names added.

    Safe to run from several processes at once: a process that loses the race to add a column or the trigger
    finds it there on re-inspection and goes on."""
    added = []
    for name, backfill in ADDED_COLUMNS.items():
        if name in {c["name"] for c in inspect(reader(engine)).get_columns("studies")}:
            continue
        ddl = CreateColumn(Study.__table__.c[name]).compile(dialect=engine.dialect)
        try:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE studies ADD COLUMN {ddl}"))   # our own column, not user input
                if backfill:
                    conn.execute(text(backfill))
            added.append(name)
        except DBAPIError:
            if name not in {c["name"] for c in inspect(reader(engine)).get_columns("studies")}:
                raise
    if _add_counter_trigger(engine):
        added.append(COUNTER_TRIGGER)
    return added


def open_db(url: str | None = None, *, create: bool = True, **kwargs) -> Engine:
    """An Engine for `url` (default: `default_url()`); creates the tables when `create`."""
    url = url or default_url()
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": SQLITE_BUSY_MS / 1000})
        engine = create_engine(url, **kwargs)
        _sqlite_events(engine)
    else:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 60)
        kwargs.setdefault("pool_pre_ping", True)
        engine = create_engine(url, **kwargs)
    if create:
        Base.metadata.create_all(engine)
        migrate(engine)
    return engine
