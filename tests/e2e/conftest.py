"""Browser tests: the real app under `streamlit run`, driven by Playwright with Debian's Chromium.

Never `playwright install`: the browser is /usr/bin/chromium (`make system-deps` installs it).
"""
import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Iterator

import pytest

from cli import app_server

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"


def pytest_collection_modifyitems(config, items):
    """Every test under tests/e2e is an `e2e` test (`-m "not e2e"` skips the browser)."""
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@contextlib.contextmanager
def running_app(tmp: Path, **env_vars: str) -> Iterator[str]:
    """The app (``cli.app_server``) with a private cache under ``tmp`` and ``env_vars``; yields its URL."""
    env = dict(os.environ, SALIENCY_CACHE_DIR=str(tmp / "cache"), **env_vars)
    # One torch thread: on an oversubscribed CI box (load >> cores) 2-thread OpenMP regions stall at their
    # barriers and 10 queries took > 150 s in the server; with one thread the same run takes seconds.
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("SALIENCY_THREADS", "1")          # ONNX Runtime's threads likewise
    # the model's ONNX export, made once for the whole test run (the results cache stays private)
    shared = Path(os.environ["SALIENCY_CACHE_DIR"]) / "onnx"
    if shared.is_dir():
        shutil.copytree(shared, tmp / "cache" / "onnx", dirs_exist_ok=True)
    python = ROOT / ".venv" / "bin" / "python"
    with app_server.running_app(env, log=tmp / "streamlit.log",
                                python=str(python if python.exists() else sys.executable)) as url:
        yield url


@pytest.fixture(name="running_app")
def _running_app_fixture():
    """The `running_app` context manager as a fixture (conftest modules are not importable by name)."""
    return running_app


@pytest.fixture(scope="session")
def app_url(tmp_path_factory):
    """The app for the whole session, with a private cache and study DB; yields its URL."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: run `make system-deps` (apt-get install chromium)")
    tmp = tmp_path_factory.mktemp("e2e-app")
    with running_app(tmp, STUDY_DB_URL=f"sqlite:///{tmp / 'study.db'}", STUDY_ADMIN_PASSWORD="test-admin") as url:
        yield url


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch options plus the system Chromium and quiet flags (no network side traffic)."""
    return {**browser_type_launch_args,
            "executable_path": CHROMIUM,
            "args": ["--disable-gpu", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--no-first-run", "--disable-quic"]}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """A tall window: the pages' controls, map and charts fit without scrolling (a module may override it)."""
    return {**browser_context_args, "viewport": {"width": 1440, "height": 1700}}


def set_slider(page, label: str, steps_above_min: int) -> None:
    """Keyboard, not mouse: Home puts a Streamlit slider at its lowest value, each ArrowRight one step up."""
    thumb = page.get_by_test_id("stSlider").filter(has_text=label).get_by_role("slider")
    thumb.focus()
    thumb.press("Home")
    for _ in range(steps_above_min):
        thumb.press("ArrowRight")


def small_sobol(page) -> None:
    """Sobol's parameters at a small budget that still gives a readable map: a 4 x 4 grid and 4 designs,
    4 x (16 + 1) = 68 queries; checks the page's budget line says so."""
    import re

    from playwright.sync_api import expect

    set_slider(page, "grid size", 2)         # 2 -> 4
    wait_for_app(page)
    set_slider(page, "nb design", 0)         # the lowest power of two: 4
    wait_for_app(page)
    expect(page.get_by_text(re.compile(r"Query budget:\s*68 queries"))).to_be_visible(timeout=30_000)


@pytest.fixture(name="small_sobol")
def _small_sobol_fixture():
    return small_sobol


def wait_for_app(page, timeout: float = 60_000):
    """Wait until the Streamlit script run has finished (the app is idle)."""
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']",
                           state="attached", timeout=timeout)


@pytest.fixture(name="wait_for_app")
def _wait_for_app_fixture():
    """The `wait_for_app` helper as a fixture (conftest modules are not importable by name)."""
    return wait_for_app


def slider_key(page, label: str, key: str) -> None:
    """Move the slider labelled ``label`` by a key press: Home / End put it at its lowest / highest value (the
    keyboard, not the mouse: a drag lands wherever the layout put the track)."""
    thumb = page.get_by_test_id("stSlider").filter(has_text=label).get_by_role("slider")
    thumb.focus()
    thumb.press(key)
    wait_for_app(page)


@pytest.fixture(name="slider_key")
def _slider_key_fixture():
    return slider_key
