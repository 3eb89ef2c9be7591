"""DE-CAM vs Sobol on the cat photo with the bundled EfficientNet-Lite0, at a similar query budget.

Prints, for each method: queries used, wall time, and the deletion AUC (RISE protocol, lower is better:
pixels removed in saliency order, 224 per step, toward zeros of the input space, softmax probability of the
explained class). Uses ``evaluation.metrics.deletion_auc`` when it exists, else the same protocol locally.

    .venv/bin/python bench/decam_vs_sobol.py            # DE-CAM 26 x 80 = 2080 queries vs Sobol 8x8, N=32 = 2080
    .venv/bin/python bench/decam_vs_sobol.py --seeds 0 1 2
    .venv/bin/python bench/decam_vs_sobol.py --seeds 0 1 2 --generations 39 --methods decam \
        --decam lam=0.1 deletion_weight=1.0 map_from=population_mean      # with the deletion term, same budget
    .venv/bin/python bench/decam_vs_sobol.py --methods dax                # DAX with its CPU defaults (1000 queries)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402

from explainers import get_explainer  # noqa: E402
from models import load_model  # noqa: E402


def local_deletion_auc(bb, x, target, saliency, step=224):
    """RISE deletion: remove ``step`` pixels per iteration in saliency order (zeros substrate); trapezoid AUC."""
    h, w = saliency.shape
    order = saliency.flatten().argsort(descending=True)
    n_steps = (h * w + step - 1) // step
    keep = torch.ones(n_steps + 1, h * w)
    for i in range(1, n_steps + 1):
        keep[i] = keep[i - 1]
        keep[i, order[(i - 1) * step: i * step]] = 0
    batch = x.unsqueeze(0).cpu() * keep.view(-1, 1, h, w)
    s = bb.view(score_mode="prob")(batch)[:, target].cpu()
    return float((s.sum() - s[0] / 2 - s[-1] / 2) / (len(s) - 1))


def deletion(bb, x, target, sal):
    try:
        from evaluation.metrics import deletion_auc
    except ImportError:
        return local_deletion_auc(bb, x, target, sal), "local RISE protocol"
    return float(deletion_auc(bb, x, target, sal)), "evaluation.metrics.deletion_auc"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--population", type=int, default=26)
    ap.add_argument("--generations", type=int, default=79)
    ap.add_argument("--grid", type=int, default=8, help="grid size of both methods")
    ap.add_argument("--nb-design", type=int, default=32)
    ap.add_argument("--decam", nargs="*", default=[], metavar="KEY=VALUE", help="extra DE-CAM parameters")
    ap.add_argument("--methods", nargs="+", default=["decam", "sobol"], choices=["decam", "sobol", "dax"])
    ap.add_argument("--dax-samples", type=int, default=1000, help="DAX n_samples (its CPU default)")
    args = ap.parse_args()
    extra = {}
    for kv in args.decam:
        k, v = kv.split("=", 1)
        try:
            v = float(v) if "." in v else int(v)
        except ValueError:
            pass
        extra[k] = v

    torch.set_num_threads(2)
    bb = load_model("efficientnet_lite0", device="cpu")
    x = bb.preprocess(Image.fromarray(data.chelsea()))
    target = 285
    print(f"model {bb.name} on {bb.device}; cat photo, target {target} ({bb.labels[target]}), "
          f"p = {float(bb.view(score_mode='prob')(x.unsqueeze(0))[0, target]):.3f}")
    configs = [
        ("decam", dict(grid_size=args.grid, population=args.population, generations=args.generations, **extra)),
        ("sobol", dict(grid_size=args.grid, nb_design=args.nb_design)),
        ("dax", dict(n_samples=args.dax_samples)),
    ]
    configs = [c for c in configs if c[0] in args.methods]
    for name, params in configs:
        aucs, times, queries = [], [], []
        for seed in args.seeds:
            e = get_explainer(name, seed=seed, **params)
            run = bb.view()
            t0 = time.perf_counter()
            sal = e.explain(run, x, target)
            times.append(time.perf_counter() - t0)
            queries.append(run.queries)
            auc, how = deletion(bb, x, target, sal)
            aucs.append(auc)
        t = torch.tensor(aucs)
        spread = f" +- {float(t.std()):.3f} (sd over {len(aucs)} seeds)" if len(aucs) > 1 else ""
        print(f"{name:6s} {params}: queries {queries[0]} (budget {e.query_budget(x.shape)}), "
              f"time {sum(times) / len(times):.1f} s, deletion AUC {float(t.mean()):.3f}{spread}  [{how}]")


if __name__ == "__main__":
    main()
