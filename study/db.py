"""Database engine: SQLite in data/ by default (WAL, immediate write transactions), any URL via STUDY_DB_URL."""
from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event

from study.schema import Base

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
        conn.exec_driver_sql("BEGIN IMMEDIATE")


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
    return engine
