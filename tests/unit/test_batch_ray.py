"""``--engine ray`` on a local Ray started by the run: the local engine's maps, and a worker killed mid-task retried."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "assets" / "examples"
ARGS = ["--method", "sobol", "--method", "rise", "--param", "sobol.nb_design=16", "--param", "rise.n_masks=256"]


@pytest.mark.slow
def test_ray_engine_equals_local_and_survives_a_killed_worker(effnet, tmp_path, monkeypatch):
    monkeypatch.setenv("SALIENCY_THREADS", "1")        # both engines on one ONNX Runtime thread per model
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted(EXAMPLES.glob("*.png"))[:4]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")

    from cli.commands import build_spec                       # the local engine, in this process
    from cli.main import parser
    from runtime.batch_run import run_batch
    args = parser().parse_args(["explain", str(folder), *ARGS, "--out", str(tmp_path / "local")])
    local, _ = run_batch(build_spec(args))
    assert len(local) == 10

    out = tmp_path / "ray"
    proc = subprocess.Popen([sys.executable, "-m", "cli", "explain", str(folder), *ARGS, "--engine", "ray",
                             "--workers", "2", "--out", str(out), "--json"], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    busy, victim = out / ".running", None
    deadline = time.time() + 300
    while victim is None and time.time() < deadline and proc.poll() is None:
        rows = len(list((out / "rows").glob("*.json"))) if (out / "rows").exists() else 0
        running = sorted(busy.glob("*.json")) if busy.exists() else []
        if rows >= 1 and running:                      # a worker in the middle of a task, after a first row
            victim = (int(running[0].stem), json.loads(running[0].read_text())["key"])
            os.kill(victim[0], signal.SIGKILL)
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=400)
    assert victim is not None, f"no worker was caught mid-task: {stderr[-2000:]}"
    assert proc.returncode == 1, stderr[-2000:]          # 1: the broken file's failed rows, nothing else
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == 10 and table["key"].is_unique and list(table["key"]) == list(local["key"])
    assert table.set_index("key").at[victim[1], "status"] == "done"     # the killed task was run again
    assert set(table["engine"]) == {"ray"}
    done = table[table.status == "done"]
    assert len(done) == 8
    for (_, a), (_, b) in zip(local[local.status == "done"].iterrows(), done.iterrows()):
        np.testing.assert_array_equal(np.load(tmp_path / "local" / a["map"]), np.load(out / b["map"]))
    failed = table[table.status == "failed"]
    assert all("not an image" in e or "truncated" in e for e in failed["error"]), failed["error"].tolist()
    summary = json.loads(stdout.splitlines()[-1])
    assert summary["event"] == "summary" and summary["done"] == 8 and summary["failed"] == 2
