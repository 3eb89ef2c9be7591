"""The Compare page's table for the cat photo and the bundled model, from a plain script (reproducible figures).

    .venv/bin/python bench/compare_table.py                       # every registered black-box method, CPU defaults
    .venv/bin/python bench/compare_table.py --methods lr sobol rise occlusion --device cpu --zip out.zip
    .venv/bin/python bench/compare_table.py --methods                 # the control rows alone
    .venv/bin/python bench/compare_table.py --methods --no-mu --control-seed 3   # another draw of the random controls

Runs each method at its default parameters for the device (``Param.cpu_default`` on a CPU), seed 0, explaining
the top class (285, "Egyptian cat"), through the same engine, metrics and ``evaluation.report`` table the page
uses, then prints it as Markdown. Fresh runs: the result cache is not read. Wall times depend on the machine and
its load (printed with the table); queries and scores do not (seeded, deterministic on one device).

The control rows (``evaluation.report.CONTROLS``: random pixels, random 7x7 blocks, a centred Gaussian; maps
made without the model, 0 explanation queries, scored the same way) come after the methods unless
``--no-controls``: they are what a score has to beat.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402

from explainers import explainer_class, list_explainers  # noqa: E402
from runtime.engine import Engine  # noqa: E402
from evaluation.report import export_zip  # noqa: E402
from runtime.compare import compare  # noqa: E402
from models import device_name, load_model  # noqa: E402

FIRST = ("lr", "sobol", "rise", "occlusion")


def fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", nargs="*",
                    help="default: every registered black-box image method; the flag alone: none (controls only)")
    ap.add_argument("--device", default=None, help="cpu / cuda (default: CUDA if present)")
    ap.add_argument("--no-mu", action="store_true", help="skip mu-fidelity (201 queries per map)")
    ap.add_argument("--no-controls", action="store_true", help="leave out the control rows")
    ap.add_argument("--control-seed", type=int, default=0, help="seed of the random control maps (default 0)")
    ap.add_argument("--zip", help="also write the page's ZIP export here")
    args = ap.parse_args()

    bb = load_model("efficientnet_lite0", device=args.device)
    x = bb.preprocess(Image.fromarray(data.chelsea()))
    target = bb.predict(x, 1)[0][0]
    registered = list_explainers(modality="image", white_box=False)
    methods = args.methods if args.methods is not None else (
        [m for m in FIRST if m in registered] + [m for m in registered if m not in FIRST])
    specs = [(m, m, explainer_class(m).defaults(bb.device), 0) for m in methods]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# cat photo (skimage chelsea), {bb.id}, target {target} ({bb.labels[target]}), "
          f"{device_name(bb.device)}, load average {load:.1f} at start")
    t0 = time.perf_counter()
    comp = compare(bb, x, target, specs, engine=Engine(disk_cache=False), mu=not args.no_mu, use_cache=False,
                   input_name="chelsea", controls=not args.no_controls, control_seed=args.control_seed)
    cols = ("run", "queries", "wall_time_s", "deletion_auc", "insertion_auc", "mu_fidelity", "metric_queries")
    print("| method | queries | wall time (s) | deletion AUC ↓ | insertion AUC ↑ | µ-fidelity ↑ | metric queries |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in comp.table():
        print("| " + " | ".join(f"{row[c]:.1f}" if c == "wall_time_s" else fmt(row[c]) for c in cols) + " |")
    print("\nparameters:")
    for r in comp.runs:
        print(f"  {r.label}: {r.params}")
    if comp.controls:
        print("controls: maps made without the model (0 explanation queries), scored like the runs; "
              "a method's score means something by how far it beats them")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    if args.zip:
        Path(args.zip).write_bytes(export_zip(comp))
        print(f"wrote {args.zip}")


if __name__ == "__main__":
    main()
