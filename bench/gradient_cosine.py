"""Cosine of query-only gradient estimates with the autograd gradient (issue 4).

LR plain, LR blockwise, GEEX and iGEEX (its raw gradient estimate, Estimate.gradient) on the cat photo with
EfficientNet-Lite0 (score mode logit), seed 0. Each method runs once to the largest checkpoint and streams
(min_interval=0); the cosine at a checkpoint is that of the last estimate made with at most that many queries.
A (1, H, W) estimate (GEEX's channel-shared noise) is broadcast over the colour channels.

    .venv/bin/python bench/gradient_cosine.py                      # 2,000 and 10,000 queries
    .venv/bin/python bench/gradient_cosine.py --checkpoints 500 2000 --methods "LR plain" GEEX --sigma 0.05
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

import explainers  # noqa: E402,F401
from evaluation.lab import cosine_curves  # noqa: E402
from models import load_model  # noqa: E402

METHODS = {
    "LR plain": {"method": "lr"},
    "LR blockwise": {"method": "lr", "block_size": 16},
    "GEEX": {"method": "geex"},
    "iGEEX": {"method": "igeex"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--image", default=str(ROOT / "assets" / "examples" / "cat.png"))
    ap.add_argument("--score-mode", default="logit")
    ap.add_argument("--checkpoints", type=int, nargs="+", default=[2000, 10000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--sigma", type=float, default=None, help="noise sigma for every method (default: each one's)")
    ap.add_argument("--device", default=None)
    a = ap.parse_args()

    bb = load_model(a.model, device=a.device, score_mode=a.score_mode)
    x = bb.preprocess(Image.open(a.image).convert("RGB"))
    target = int(bb(x.unsqueeze(0))[0].argmax())
    print(f"{a.model} ({a.score_mode}) on {Path(a.image).name}: target {bb.labels[target]} ({target}), "
          f"seed {a.seed}, device {bb.device}", flush=True)
    cps = sorted(a.checkpoints)
    print("| method | params | " + " | ".join(f"cosine @ {c:,}" for c in cps) + " | seconds |", flush=True)
    print("|---|---|" + "---|" * len(cps) + "---|", flush=True)
    for name in a.methods:
        spec = {**METHODS[name], **({"sigma": a.sigma} if a.sigma is not None else {})}
        t0 = time.perf_counter()
        curve = cosine_curves(bb, x, target, {name: spec}, [a.seed], cps)[name]
        params = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "method") or "defaults"
        print(f"| {name} | {spec['method']}: {params} | "
              + " | ".join(f"{v:.3f}" for v in curve.cosine[0]) + f" | {time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
