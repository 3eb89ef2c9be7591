"""The ``saliency`` command on real files with the bundled model: outputs, failures, resuming after SIGKILL, rerun."""
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
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "assets" / "examples"
# small budgets: the point is the batch machinery on the real model, not the maps' quality (docs/measurements.md)
METHODS = ["--method", "sobol", "--method", "rise", "--param", "sobol.nb_design=8", "--param", "rise.n_masks=96"]


def cli(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SALIENCY_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, **kw)


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SALIENCY_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, effnet) -> Path:
    """Six photos (the five examples and a mirrored cat) and one file that is not an image.

    ``effnet`` first: the ONNX export and the timing are done once and cached for the subprocesses."""
    d = tmp_path_factory.mktemp("photos")
    for p in sorted(EXAMPLES.glob("*.png")):
        (d / p.name).write_bytes(p.read_bytes())
    Image.open(EXAMPLES / "cat.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(d / "cat_mirrored.jpg")
    (d / "notes.png").write_bytes(b"this is not a PNG at all")
    return d


@pytest.fixture(scope="module")
def whole_run(folder, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The uninterrupted run the other tests compare with."""
    out = tmp_path_factory.mktemp("whole") / "run"
    return out, cli("explain", str(folder), *METHODS, "--score", "deletion,insertion", "--out", str(out))


def maps_of(out: Path) -> dict[str, np.ndarray]:
    table = pd.read_parquet(out / "results.parquet")
    return {r["key"]: np.load(out / r["map"]) for _, r in table.iterrows() if r["status"] == "done"}


def test_folder_two_methods_outputs(whole_run):
    out, r = whole_run
    assert r.returncode == 1, r.stderr                      # one input failed: the status says so
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == 14 and table["key"].is_unique
    assert pd.read_csv(out / "results.csv")["key"].tolist() == table["key"].tolist()
    done, failed = table[table.status == "done"], table[table.status == "failed"]
    assert len(done) == 12 and set(done["method"]) == {"sobol", "rise"}
    assert set(failed["file"].map(lambda f: Path(f).name)) == {"notes.png"}
    assert "not an image" in failed["error"].iloc[0] and "Traceback" not in failed["error"].iloc[0]
    for _, row in done.iterrows():
        sal = np.load(out / row["map"])
        assert sal.shape == (224, 224) and np.isfinite(sal).all() and sal.std() > 0
        assert Image.open(out / row["overlay"]).size == (224, 224)
        assert row["model"] == "efficientnet_lite0:logit" and row["seed"] == 0 and len(row["sha256"]) == 64
        assert row["queries"] == (297 if row["method"] == "sobol" else 97)     # budget + the top-1 query
        assert 0 <= row["deletion"] <= 1 and 0 <= row["insertion"] <= 1
    cat = done[(done.file.str.endswith("cat.png"))]
    assert set(cat["target_label"]) == {"Egyptian cat"}
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "finished" and record["spec"]["methods"][0][0] == "sobol"
    assert "Egyptian cat" not in r.stdout and "tasks done" in r.stderr      # progress on stderr, not stdout


def test_manifest_targets_and_ground_truth(folder, tmp_path):
    """A CSV manifest: per-row targets (id and name) and a box in the photo's pixels -> pointing and IoU."""
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,target,box\n"
                        f"{folder / 'cat.png'},Egyptian cat,\"60,10,330,300\"\n"
                        f"{folder / 'coffee.png'},967,\n")
    out = tmp_path / "run"
    r = cli("explain", str(manifest), "--method", "rise", "--param", "n_masks=96", "--score", "pointing,iou",
            "--json", "--out", str(out))
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert events[0]["event"] == "plan" and events[-1] == {**events[-1], "event": "summary", "done": 2}
    table = pd.read_parquet(out / "results.parquet")
    assert table["target"].tolist() == [285, 967]
    cat, coffee = table.iloc[0], table.iloc[1]
    assert 0 < cat["iou"] <= 1 and cat["pointing"] in (0.0, 1.0)
    assert pd.isna(coffee["iou"]) and pd.isna(coffee["pointing"])      # no box: no score, not a zero
    # the run record reruns the batch, scores included, and the maps come out bitwise the same
    r = cli("rerun", str(out / "run.json"), "--out", str(tmp_path / "again"), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["rerun_against_record"] == {
        "compared": 2, "equal": 2, "max_abs_diff": 0.0, "only_in_record": 0, "only_in_rerun": 0}
    again = pd.read_parquet(tmp_path / "again" / "results.parquet")
    assert again["iou"].iloc[0] == cat["iou"]


@pytest.mark.parametrize("args, message", [
    (["--method", "nope"], "unknown method 'nope'"),
    (["--method", "sobol", "--param", "colour=3"], "no chosen method has a parameter 'colour'"),
    (["--method", "sobol", "--param", "grid_size=0"], "grid_size"),
    (["--method", "sobol", "--target", "zebra crossing"], "neither 'top1'"),
    (["--method", "sobol", "--target", "4000"], "not a class of this model"),
    (["--method", "sobol", "--model", "no_such_model"], "neither a registered model"),
    (["--method", "sobol", "--score", "accuracy"], "unknown score"),
])
def test_usage_errors_are_clear(folder, tmp_path, capsys, args, message):
    from cli.main import main
    with pytest.raises(SystemExit) as e:
        main(["explain", str(folder), *args, "--out", str(tmp_path / "out")])
    assert e.value.code != 0 and message in capsys.readouterr().err
    assert not (tmp_path / "out" / "rows").exists()              # refused before any work


def test_missing_input_is_a_usage_error(tmp_path, capsys):
    from cli.main import main
    with pytest.raises(SystemExit) as e:
        main(["explain", str(tmp_path / "missing"), "--method", "sobol", "--model", "tiny_cnn", "--out",
              str(tmp_path / "out")])
    assert e.value.code == 2 and "no such file or folder" in capsys.readouterr().err


@pytest.mark.slow
def test_killed_run_resumes_with_nothing_lost_or_doubled(folder, whole_run, tmp_path):
    args = [str(folder), *METHODS, "--score", "deletion,insertion"]
    whole = whole_run[0]
    out = tmp_path / "killed"
    proc = start("explain", *args, "--out", str(out))
    deadline = time.time() + 240
    while len(list((out / "rows").glob("*.json"))) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = len(list((out / "rows").glob("*.json")))
    assert 3 <= before < 14, "the kill came too late to interrupt the run"
    assert not (out / "results.parquet").exists()
    r = cli("explain", *args, "--out", str(out), "--json")
    plan = json.loads(r.stdout.splitlines()[0])
    assert plan["skipped"] == before and plan["tasks"] == 14
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == 14 and table["key"].is_unique
    assert list(table["key"]) == list(pd.read_parquet(whole / "results.parquet")["key"])
    a, b = maps_of(whole), maps_of(out)
    assert a.keys() == b.keys() and len(a) == 12
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def _wait_for(url: str, proc: subprocess.Popen, timeout: float = 120) -> bytes:
    import urllib.request
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read()
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer")


@pytest.mark.parametrize("command, path", [(["serve", "tiny_cnn"], "/v1/info"), (["app"], "/_stcore/health")])
def test_serve_and_app_subcommands_start_their_servers(command, path, tmp_path):
    from cli.app_server import free_port
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SALIENCY_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "cli", *command, "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        body = _wait_for(f"http://127.0.0.1:{port}{path}", proc)
        if command[0] == "serve":
            assert json.loads(body)["input_shape"] == [3, 32, 32]
        else:
            assert body.strip() == b"ok"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_model_server_batch_keeps_to_the_rate_limit(tmp_path, tiny):
    """A model behind HTTP explained from the command line: the maps come back and the run keeps to --rate-limit."""
    from models.serve import ServerThread, create_app
    app = create_app(tiny, max_batch=8)                       # 8 inputs per request: many requests
    with ServerThread(app) as srv:
        out = tmp_path / "run"
        r = cli("explain", str(EXAMPLES / "cat.png"), "--model", srv.url, "--method", "rise", "--param",
                "n_masks=48", "--rate-limit", "10", "--out", str(out))
        assert r.returncode == 0, r.stderr
        requests = app.state.stats["requests"]
    table = pd.read_parquet(out / "results.parquet")
    assert table["status"].tolist() == ["done"] and table["queries"].iloc[0] == 49
    assert table["model"].iloc[0].startswith("remote:") or srv.url.split("//")[1] in table["model"].iloc[0]
    # 49 queries in requests of at most 8: at 10 requests a second the task itself takes (requests - 1) / 10 s
    # at least (the tiny model answers them all in a few hundredths without the limit)
    assert requests >= 7 and table["seconds"].iloc[0] >= (requests - 1) / 10 * 0.9, (requests, table["seconds"])
