"""Wall time of one default run, as the app makes it: the bundled model as ``load_model`` gives it, one method at
its CPU defaults on the cat, through the engine (headless), no result cache.

    OMP_NUM_THREADS=1 .venv/bin/python bench/default_run.py --method sobol --reps 3
    # another checkout, paired: alternate the two in one shell session
    for i in 1 2 3; do .venv/bin/python bench/default_run.py --root /tmp/old; .venv/bin/python bench/default_run.py; done

Uses only the public API (``load_model``, ``Engine.run``), so ``--root`` can point at an older checkout to
compare a commit with this one on the same machine and moment. The model load (and, on a first start, its ONNX
export and tuning) is timed apart from the run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=str(Path(__file__).resolve().parent.parent),
                    help="the checkout whose code runs (default: this one)")
    ap.add_argument("--method", default="sobol")
    ap.add_argument("--reps", type=int, default=1)
    args = ap.parse_args()
    sys.path.insert(0, args.root)
    import torch
    from PIL import Image

    from explainers import explainer_class
    from models import load_model
    try:
        from runtime.engine import Engine
    except ImportError:   # before the one-package-per-concern layout
        from explainers.engine import Engine

    t0 = time.perf_counter()
    bb = load_model("efficientnet_lite0", device="cpu")
    loaded = time.perf_counter() - t0
    x = bb.preprocess(Image.open(Path(args.root) / "assets" / "examples" / "cat.png"))
    engine = Engine(disk_cache=False)
    params = explainer_class(args.method).defaults("cpu")
    for _ in range(args.reps):
        snap = engine.run(bb, x, args.method, params, target=None, seed=0, use_cache=False)
        print(f"{args.root}: {args.method} {snap.queries} queries in {snap.elapsed:.2f} s "
              f"({getattr(bb, 'backend', 'torch')}, batch {bb.batch_size}, torch threads {torch.get_num_threads()}, "
              f"load average {os.getloadavg()[0]:.1f}; model load {loaded:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
