"""``pip install .`` gives the library, its assets and the ``saliency`` command, working outside the checkout."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_installed_package_runs_outside_the_checkout(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True, timeout=300, cwd=tmp_path)
    assert (target / "bin" / "saliency").exists()
    assert sorted(p.name for p in (target / "assets" / "examples").glob("*.png")) == \
        sorted(p.name for p in (ROOT / "assets" / "examples").glob("*.png"))
    assert (target / "assets" / "models" / "sound_events.pt").exists() and (target / "app.py").exists()
    # the installed copy, not the checkout: run from elsewhere, with the checkout off the path
    env = {k: v for k, v in os.environ.items() if k != "SALIENCY_CACHE_DIR"}
    env.update(PYTHONPATH=str(target), HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(target / "bin" / "saliency"), "explain",
                        str(target / "assets" / "examples" / "cat.png"), "--model", "tiny_cnn", "--method", "rise",
                        "--param", "n_masks=16", "--out", str(out)], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert pd.read_parquet(out / "results.parquet")["status"].tolist() == ["done"]
    import json
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "finished"
    # caches go to the user's cache folder, not into site-packages
    assert (tmp_path / "home" / ".cache" / "saliency").is_dir() and not (target / ".cache").exists()
    r = subprocess.run([sys.executable, str(target / "bin" / "saliency"), "methods"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "sobol" in r.stdout and "lr" in r.stdout
