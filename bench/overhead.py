"""Overhead of the streaming methods over the model's own forward passes (issue 2, item 4).

For every black-box method: wall time of ``explain`` / wall time of the pure forward passes of the same number of
queries at the model's fastest batch size (the BlackBox's measured chunk), both measured in this one process run,
interleaved, best of ``--reps``. The "in-run" column divides by the time spent
inside the model's forward calls during that same run: on a shared, loaded machine it is the steadier figure.
The same ratio for Captum's Occlusion, FeatureAblation and KernelShap, called as a
user would (``perturbations_per_eval`` = the same fastest batch size), at comparable query counts.

    .venv/bin/python bench/overhead.py                       # both models, a few minutes on 2 CPU cores
    .venv/bin/python bench/overhead.py --models tiny_cnn --reps 5

Prints a markdown table. A ratio of 1.00 means the method costs nothing beyond the model's forward passes.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from explainers import explainer_class, get_explainer, list_explainers  # noqa: E402
from models import device_name, load_model  # noqa: E402

CORE = ("sobol", "lr", "rise", "occlusion")
# per model: (method, params) rows; budgets large enough to time, small enough for a few minutes in all
CONFIGS = {
    "tiny_cnn": [
        ("sobol", dict(grid_size=8, nb_design=64)),
        ("lr", dict(n_samples=4000)),
        ("lr", dict(n_samples=4000, block_size=8)),
        ("lr", dict(n_samples=4000, noise_resolution=8)),
        ("rise", dict(n_masks=4000, grid_size=7)),
        ("occlusion", dict(patch=2, stride=1)),
    ],
    "efficientnet_lite0": [
        ("sobol", dict(grid_size=6, nb_design=8)),
        ("lr", dict(n_samples=300)),
        ("lr", dict(n_samples=300, block_size=32)),
        ("rise", dict(n_masks=300)),
        ("occlusion", dict(patch=32, stride=16)),
    ],
}
OTHERS_BUDGET = {"tiny_cnn": 2000, "efficientnet_lite0": 200}   # other registered black-box methods


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_time(bb, n: int, x: torch.Tensor) -> float:
    """Pure forward passes of n distinct inputs (made beforehand, like a method's fresh batches, not one chunk
    replayed from cache) in chunks of the fastest batch size."""
    bs = bb.batch_size
    pool = max(bs, min(n, (256 * 2**20) // (4 * x.numel())) // bs * bs)     # at most 256 MB of inputs
    inputs = x.unsqueeze(0) + 0.1 * torch.randn(pool, *x.shape, device=x.device)
    sync(bb.device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, n, bs):
            j = i % pool
            bb.forward_raw(inputs[j:j + min(bs, n - i)])
    sync(bb.device)
    return time.perf_counter() - t0


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class ForwardClock:
    """Time spent inside the model's forward calls during a run (the run's own forward time, same moment)."""

    def __init__(self, forward, device):
        self.forward, self.device, self.seconds = forward, device, 0.0

    def __call__(self, chunk):
        sync(self.device)
        t0 = time.perf_counter()
        out = self.forward(chunk)
        sync(self.device)
        self.seconds += time.perf_counter() - t0
        return out


def shrunk_params(name: str, budget: int, shape) -> dict:
    """Another helper's method at a small budget: shrink its int parameters until the budget fits."""
    cls = explainer_class(name)
    params = cls.defaults("cpu")
    for _ in range(12):
        if cls(seed=0, **params).query_budget(shape) <= budget:
            break
        for p in cls.param_specs:
            v = params[p.name]
            if p.kind == "int" and not isinstance(v, bool) and v > 8 and p.name not in ("grid_size", "n_segments"):
                params[p.name] = max(int(p.low or 1), 8, int(v * 0.7))
    return params


def captum_rows(bb, x, target, model: str):
    try:
        from captum.attr import FeatureAblation, KernelShap, Occlusion
    except ImportError:
        print("captum is not installed: no Captum rows", file=sys.stderr)
        return []
    bs = bb.batch_size
    counter = {"n": 0}
    net = bb.module
    clock = bb.forward_raw   # a ForwardClock (run_model): times the net call, as for our methods

    def forward(inp):  # what a Captum user passes: the model with a softmax (the net call is timed)
        counter["n"] += inp.shape[0]
        with torch.inference_mode():
            sync(bb.device)
            t0 = time.perf_counter()
            out = net(inp)
            sync(bb.device)
            clock.seconds += time.perf_counter() - t0
            return out.softmax(-1)

    c, h, w = x.shape
    inp = x.unsqueeze(0)
    grid = 8
    mask = (torch.arange(h, device=x.device)[:, None] * grid // h) * grid + torch.arange(w, device=x.device)[None, :] * grid // w
    mask = mask.view(1, 1, h, w).expand(1, c, h, w)
    if model == "tiny_cnn":
        occ = dict(sliding_window_shapes=(c, 2, 2), strides=(c, 1, 1))
        shap_samples = 1000
    else:
        occ = dict(sliding_window_shapes=(c, 32, 32), strides=(c, 16, 16))
        shap_samples = 200
    calls = [
        ("captum Occlusion", f"window {occ['sliding_window_shapes'][1]}, stride {occ['strides'][1]}",
         lambda: Occlusion(forward).attribute(inp, target=target, baselines=0.0, perturbations_per_eval=bs, **occ)),
        ("captum FeatureAblation", f"{grid}x{grid} grid",
         lambda: FeatureAblation(forward).attribute(inp, target=target, baselines=0.0, feature_mask=mask,
                                                    perturbations_per_eval=bs)),
        ("captum KernelShap", f"{grid}x{grid} grid, {shap_samples} samples",
         lambda: KernelShap(forward).attribute(inp, target=target, baselines=0.0, feature_mask=mask,
                                               n_samples=shap_samples, perturbations_per_eval=bs)),
    ]
    rows = []
    for label, desc, call in calls:
        rows.append((label, desc, call, counter))
    return rows


def run_model(model: str, device, reps: int, cat) -> list[dict]:
    bb = load_model(model, device=device)
    x = bb.preprocess(cat).to(bb.device)
    target = int(bb(x.unsqueeze(0))[0].argmax())
    bs = bb.batch_size
    print(f"# {model}: device {device_name(bb.device)}, fastest batch {bs}, target {target}", file=sys.stderr)
    forward_time(bb, 4 * bs, x)   # warm up every kernel once
    clock = ForwardClock(bb.forward_raw, bb.device)
    bb.forward_raw = clock           # views share it: every query of a run is timed
    rows = []

    def measure(label, desc, run, queries_of):
        best_e, best_f, best_in, q = math.inf, math.inf, math.inf, None
        for _ in range(reps if label in CORE else max(1, reps // 2)):   # others: for reference only
            clock.seconds = 0.0
            t = timed(run)
            best_e, best_in = min(best_e, t), min(best_in, t / clock.seconds)
            q = queries_of()
            best_f = min(best_f, forward_time(bb, q, x))
        rows.append(dict(model=model, method=label, params=desc, queries=q, explain_s=best_e, forward_s=best_f,
                         ratio=best_e / best_f, in_run=best_in, ours=label.split()[0] in CORE))
        print(f"  {label:24s} {desc:34s} {q:6d} q  {best_e:7.3f} s / {best_f:7.3f} s = {best_e / best_f:5.2f}x"
              f"  (in-run {best_in:5.2f}x)", file=sys.stderr)

    configs = list(CONFIGS[model])
    for name in list_explainers(modality=bb.modality, white_box=False):
        if name not in CORE:
            configs.append((name, shrunk_params(name, OTHERS_BUDGET[model], x.shape)))
    for name, params in configs:
        e = get_explainer(name, seed=0, **params)
        view = {}

        def run(e=e):
            view["bb"] = bb.view()
            e.explain(view["bb"], x, target)

        desc = ", ".join(f"{k}={v}" for k, v in params.items() if name in CORE or k in ("n_samples", "population",
                                                                                      "generations", "epochs"))
        measure(name, desc, run, lambda: view["bb"].queries)
    if bb.module is not None:
        for label, desc, call, counter in captum_rows(bb, x, target, model):
            def run(call=call, counter=counter):
                counter["n"] = 0
                call()
            measure(label, desc, run, lambda counter=counter: counter["n"])
    return rows


def table(rows: list[dict]) -> str:
    out = ["| model | method | parameters | queries | explain (s) | forward (s) | ratio | in-run ratio |",
           "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['model']} | {r['method']} | {r['params']} | {r['queries']} | {r['explain_s']:.3f} | "
                   f"{r['forward_s']:.3f} | {r['ratio']:.2f}x | {r['in_run']:.2f}x |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["tiny_cnn", "efficientnet_lite0"], choices=list(CONFIGS))
    ap.add_argument("--device", default=None, help="cuda / cpu (default: CUDA when present)")
    ap.add_argument("--reps", type=int, default=None, help="best of this many runs (default 3 tiny, 2 effnet)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's choice); 1 is steadier on a shared, loaded machine")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from PIL import Image
    from skimage import data
    cat = Image.fromarray(data.chelsea())
    rows = []
    for model in args.models:
        reps = args.reps or (3 if model == "tiny_cnn" else 2)
        rows += run_model(model, args.device, reps, cat)
    print(f"\nDevice: {device_name(torch.device(args.device) if args.device else load_model('tiny_cnn').device)}; "
          f"torch {torch.__version__}; ratio = explain wall time / pure forward time of the same queries "
          f"(best of the runs)\n")
    print(table(rows))
    over = [r for r in rows if r["ours"] and r["ratio"] > 1.15]
    if over:
        print("\nOver 1.15x: " + ", ".join(f"{r['model']}/{r['method']} ({r['params']})" for r in over))


if __name__ == "__main__":
    main()
