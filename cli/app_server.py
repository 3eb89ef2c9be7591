"""The web app as a process: ``saliency app``, the browser tests and bench/live_view.py all start it here.

``app_command`` is ``make run``'s command line from wherever the package lives; ``running_app`` starts it on a
free port, yields its URL once the health endpoint answers (which runs no page) and stops it afterwards.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 90


def app_command(host: str = "127.0.0.1", port: int = 8501, python: str | None = None) -> list[str]:
    # runner.postScriptGC also sits in .streamlit/config.toml; given here so an installed copy (no config file
    # beside it) keeps watched runs as fast as headless ones
    return [python or sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
            "--server.address", host, "--server.port", str(port), "--browser.gatherUsageStats", "false",
            "--runner.postScriptGC", "false", "--server.fileWatcherType", "none"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200 and r.read().strip() == b"ok"
    except OSError:
        return False


@contextlib.contextmanager
def running_app(env: dict[str, str] | None = None, log: Path | None = None, python: str | None = None,
                timeout: float = STARTUP_TIMEOUT_S) -> Iterator[str]:
    """The app on a free 127.0.0.1 port with ``env`` (default: this process's); its output to ``log``."""
    port = free_port()
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(app_command(port=port, python=python), cwd=ROOT, env=env or dict(os.environ),
                            stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:] if log else ""
                raise RuntimeError(f"streamlit did not start (rc={proc.poll()}):\n{tail}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()
