"""Per-query forward time of a bundled model at each batch size, next to the size ``BlackBox`` picked.

    .venv/bin/python bench/batch_sizes.py                      # efficientnet_lite0 on this machine's device
    .venv/bin/python bench/batch_sizes.py --model tiny_cnn --reps 5

``BlackBox`` measures the fastest batch once per model, device and thread count and caches it in
``.cache/tuning.json`` (delete the file to measure again). This prints what each size costs now, on 64 noisy
copies of the cat photo served through the BlackBox (channels-last on the CPU, as in a run), best of ``--reps``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models import load_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--device", default=None, help="cpu / cuda (default: CUDA when present)")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    bb = load_model(args.model, device=args.device)
    chosen = bb.batch_size
    x = bb.preprocess(Image.open(ROOT / "assets" / "examples" / "cat.png"))
    batch = x.unsqueeze(0) + 0.1 * torch.randn(64, *x.shape, generator=torch.Generator().manual_seed(0)).to(x)
    sizes = (1, 2, 4, 8, 16, 32) if bb.device.type == "cpu" else (16, 32, 64, 128, 256)
    print(f"# {bb.name} on {bb.device}, {torch.get_num_threads()} torch threads, load average "
          f"{os.getloadavg()[0]:.1f}; BlackBox picked batch {chosen}")
    print("| batch | ms per query |\n|---:|---:|")
    for bs in sizes:
        bb.batch_size = bs
        bb(batch[:bs])  # warm-up
        best = float("inf")
        for _ in range(args.reps):
            if bb.device.type == "cuda":
                torch.cuda.synchronize(bb.device)
            t0 = time.perf_counter()
            bb(batch)
            if bb.device.type == "cuda":
                torch.cuda.synchronize(bb.device)
            best = min(best, time.perf_counter() - t0)
        print(f"| {bs}{' (picked)' if bs == chosen else ''} | {best / len(batch) * 1000:.1f} |", flush=True)


if __name__ == "__main__":
    main()
