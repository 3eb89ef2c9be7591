"""Images per hour of a dataset run: Sobol at its CPU defaults on the bundled model, through the ``saliency`` command,
with the local engine and with Ray (1 and 2 workers), interleaved in one run.

    .venv/bin/python bench/dataset.py --images 8 --reps 2

Each configuration runs the same command line on the same images into a fresh output folder; the wall time is the
whole command's (model load and, for Ray, starting the local cluster and its actors included), and the "steady"
rate leaves out the time to the first finished image. It also times the model's forward passes alone at the batch
size the run uses, for the per-query cost that the GPU arithmetic at the end starts from.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"local": [], "ray-1": ["--engine", "ray", "--workers", "1"], "ray-2": ["--engine", "ray", "--workers", "2"]}


def images(n: int, folder: Path) -> list[Path]:
    """``n`` photos: the bundled examples, then mirrored and rotated copies (distinct bytes, distinct tasks)."""
    from PIL import Image
    src = sorted((ROOT / "assets" / "examples").glob("*.png"))
    out = []
    for i in range(n):
        img = Image.open(src[i % len(src)]).convert("RGB")
        img = img.rotate(90 * (i // len(src)), expand=True) if i >= len(src) else img
        out.append(folder / f"{i:03d}.png")
        img.save(out[-1])
    return out


def run(config: str, folder: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "cli", "explain", str(folder), "--method", "sobol", "--out", str(out), "--json",
           *CONFIGS[config]]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = None
    lines = []
    for line in p.stdout:
        lines.append(json.loads(line))
        if lines[-1]["event"] == "row" and first is None:
            first = time.perf_counter() - t0
    p.wait()
    wall = time.perf_counter() - t0
    summary = lines[-1]
    assert summary["event"] == "summary" and summary["failed"] == 0, p.stderr.read()[-2000:]
    n = summary["done"]
    steady = (n - 1) / (wall - first) * 3600 if n > 1 and first else float("nan")
    return {"config": config, "images": n, "wall": wall, "first": first, "per_hour": n / wall * 3600,
            "steady_per_hour": steady, "queries": summary["queries"]}


def forward_cost(batch: int = 64) -> tuple[float, int]:
    """Seconds per query of the bundled model's forward passes alone, as load_model serves them; Sobol's budget."""
    import torch
    from explainers import explainer_class, get_explainer
    from models import load_model
    bb = load_model("efficientnet_lite0", device="cpu")
    x = torch.rand(batch, *bb.input_shape)
    bb(x)
    t0 = time.perf_counter()
    for _ in range(3):
        bb(x)
    per_query = (time.perf_counter() - t0) / (3 * batch)
    budget = get_explainer("sobol", **explainer_class("sobol").defaults("cpu")).query_budget(bb.input_shape) + 1
    return per_query, budget


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-dataset-"))
    folder = work / "photos"
    folder.mkdir()
    images(args.images, folder)
    per_query, budget = forward_cost()
    print(f"{os.cpu_count()} CPUs; {args.images} images; Sobol at CPU defaults: {budget} queries per image; "
          f"forward passes alone {per_query * 1e3:.2f} ms per query\n")
    results = []
    for rep in range(args.reps):
        for config in CONFIGS:                       # interleaved: local, ray-1, ray-2, local, ...
            out = work / f"{config}-{rep}"
            results.append(run(config, folder, out))
            shutil.rmtree(out)
            r = results[-1]
            print(f"rep {rep} {config:6s} wall {r['wall']:6.1f} s  first image {r['first']:5.1f} s  "
                  f"{r['per_hour']:6.0f} images/h  steady {r['steady_per_hour']:6.0f} images/h", flush=True)
    print("\n| engine | images/hour (whole command) | images/hour (after the first image) |")
    print("|---|---|---|")
    for config in CONFIGS:
        rs = [r for r in results if r["config"] == config]
        whole = sorted(r["per_hour"] for r in rs)
        steady = sorted(r["steady_per_hour"] for r in rs)
        print(f"| {config} | {whole[0]:.0f}-{whole[-1]:.0f} | {steady[0]:.0f}-{steady[-1]:.0f} |")
    local = [r for r in results if r["config"] == "local"]
    per_image = min((r["wall"] - r["first"]) / max(1, r["images"] - 1) for r in local)
    overhead = max(0.0, per_image - budget * per_query)
    print(f"\nlocal, per image: {per_image:.2f} s = {budget} queries x {per_query * 1e3:.2f} ms + {overhead:.2f} s of "
          "the method's own work and writing the outputs")
    print("GPU node, by arithmetic (not measured): images/hour = 3600 / (queries x seconds per query + own work)")
    for ms in (1.0, 0.25):
        print(f"  at {ms} ms per query: {3600 / (budget * ms / 1e3 + overhead):.0f} images/hour per GPU worker")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
