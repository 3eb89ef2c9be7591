"""``saliency explain`` against a vision-language chat API: the reference server on loopback, the bundled model behind
it. The maps come back, the key shows nowhere, and a batch over the spending cap sends no request."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-batch-31415926535-never-write-me"


@pytest.fixture(scope="module")
def server(effnet):
    from models.chat_server import create_app
    from models.serve import ServerThread
    app = create_app(effnet, api_key=KEY)
    srv = ServerThread(app)
    srv.stats = app.state.stats
    yield srv
    srv.stop()


def explain(server, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BATCH_TEST_KEY": KEY}
    args = [sys.executable, "-m", "cli", "explain", str(ROOT / "assets/examples/cat.png"),
            str(ROOT / "assets/examples/coffee.png"), "--model", server.url + "/v1", "--chat-model", "reference-vlm",
            "--prompt", "What is in this image?", "--candidates", "cat,espresso,rocket",
            "--api-key-env", "BATCH_TEST_KEY", "--method", "sobol", "--param", "grid_size=4",
            "--param", "nb_design=4", "--out", str(out), *extra]
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_chat_api_batch(server, tmp_path):
    out = tmp_path / "run"
    r = explain(server, out, "--price-in", "2.5", "--price-out", "10", "--max-cost", "5")
    assert r.returncode == 0, r.stderr
    table = pd.read_parquet(out / "results.parquet")
    assert list(table["status"]) == ["done", "done"]
    assert list(table["target_label"]) == ["cat", "espresso"]        # the top candidate answer per photo
    assert all(table["model"].str.startswith("chat:reference-vlm@"))
    text = r.stdout + r.stderr + "".join(p.read_text() for p in out.rglob("*.json")) + (out / "results.csv").read_text()
    assert KEY not in text and "BATCH_TEST_KEY" in (out / "run.json").read_text()


def test_spending_cap_refuses_the_batch(server, tmp_path):
    before = server.stats["requests"]
    r = explain(server, tmp_path / "run", "--price-in", "1000", "--max-cost", "0.01")
    assert r.returncode == 2 and "over the spending cap" in r.stderr
    assert not (tmp_path / "run" / "rows").exists()
    assert server.stats["requests"] == before          # refused before a single request
