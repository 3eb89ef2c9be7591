"""Study test fixtures: every `db_url` test runs against SQLite (WAL file) and a real throwaway PostgreSQL.

The PostgreSQL cluster is made with initdb/pg_ctl in a temp dir on a free local port (trust auth, fsync off),
as the `postgres` user when the tests run as root (postgres refuses to run as root), and stopped at the end.
When no PostgreSQL binaries exist, the postgres cases are skipped with the command that installs them.
"""
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from study.db import open_db
from study.repo import Repository


def _pg_bin() -> Path | None:
    for cand in [shutil.which("pg_ctl"), *sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)]:
        if cand and Path(cand).exists():
            return Path(os.path.realpath(cand)).parent
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_user() -> str:
    """PostgreSQL refuses to run as root: use Debian's `postgres` account, else `nobody`."""
    import pwd
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        return "nobody"


def _as_pg_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    return [runuser, "-u", _pg_user(), "--", *cmd] if runuser else ["su", _pg_user(), "-s", "/bin/sh", "-c",
                                                                    " ".join(cmd)]


@pytest.fixture(scope="session")
def postgres_server():
    """A running throwaway PostgreSQL; yields a function that creates a fresh database and returns its URL."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL binaries not found: `apt-get install -y postgresql` (make system-deps)")
    # not under pytest's tmp dir: that is private to root (0700), and the server runs as `postgres`
    root = Path(tempfile.mkdtemp(prefix="study-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, _pg_user())
        os.chmod(root, 0o755)
    data, port = root / "data", _free_port()
    init = subprocess.run(_as_pg_user([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                       "--no-sync", "-E", "UTF8"]), capture_output=True, text=True)
    if init.returncode:
        raise RuntimeError(f"initdb failed: {init.stdout}{init.stderr}")
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run(_as_pg_user([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"),
                                "-w", "start"]), check=True, capture_output=True)
    admin = open_db(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", create=False,
                    isolation_level="AUTOCOMMIT")

    def new_database() -> str:
        name = "study_" + uuid.uuid4().hex[:12]
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')   # test-only name from uuid hex
        return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{name}"

    try:
        yield new_database
    finally:
        admin.dispose()
        subprocess.run(_as_pg_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres_server")()


@pytest.fixture
def repo(db_url):
    engine = open_db(db_url)
    yield Repository(engine)
    engine.dispose()
