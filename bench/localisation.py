"""Localisation benchmark: does each method's map land on the object the model explains?

Scenes from evaluation/localisation.py (objects from the bundled photos pasted onto varied backgrounds,
off-centre, a third with a distractor). For every method at its CPU defaults (or the settings given) it prints
queries, seconds per image, pointing hits and the energy in the box (mean and standard deviation over the
scenes), then the model-free controls scored the same way.

    OMP_NUM_THREADS=1 .venv/bin/python bench/localisation.py                 # every black-box method, 12 scenes
    .venv/bin/python bench/localisation.py --n 4 --methods sobol "lr:block_size=16,sigma=0.5"
"""
from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.localisation import control_maps, energy_in_box, pointing_hit, scenes  # noqa: E402
from explainers import explainer_class, get_explainer, list_explainers  # noqa: E402
from models import EXPLAINED_SCORE, load_model  # noqa: E402


def parse_spec(spec: str) -> tuple[str, dict]:
    """``"lr:block_size=16,sigma=0.5"`` -> ("lr", {"block_size": 16, "sigma": 0.5})."""
    name, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition("=")
        try:
            params[k.strip()] = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError):
            params[k.strip()] = v.strip()
    return name, params


def scaled_box(box, image_shape, map_shape):
    sy, sx = map_shape[0] / image_shape[0], map_shape[1] / image_shape[1]
    y0, x0, y1, x1 = box
    return (int(round(y0 * sy)), int(round(x0 * sx)), int(round(y1 * sy)), int(round(x1 * sx)))


def run_method(bb, spec: str, data, seed: int) -> dict:
    name, given = parse_spec(spec)
    params = {**explainer_class(name).defaults(bb.device), **given}
    energies, above_min, hits, seconds, queries = [], [], 0, [], 0
    for scene in data:
        x = bb.preprocess(Image.fromarray(scene.image))
        e = get_explainer(name, seed=seed, **params)
        t0 = time.perf_counter()
        sal = e.explain(bb, x, scene.target).numpy()
        seconds.append(time.perf_counter() - t0)
        queries = e.query_budget(tuple(x.shape))
        box = scaled_box(scene.box, scene.image.shape[:2], sal.shape)
        energies.append(energy_in_box(sal, box))
        above_min.append(energy_in_box(sal, box, reference="min"))
        hits += pointing_hit(sal, box)
    setting = ", ".join(f"{k}={v}" for k, v in given.items()) or "CPU defaults"
    return {"method": name, "setting": setting, "queries": queries, "s_per_image": float(np.mean(seconds)),
            "hits": hits, "energy": float(np.mean(energies)), "spread": float(np.std(energies)),
            "above_min": float(np.mean(above_min))}


def control_rows(data, seed: int) -> list[dict]:
    per_kind: dict[str, list] = {}
    for scene in data:
        for kind, sal in control_maps(scene, seed).items():
            per_kind.setdefault(kind, []).append((energy_in_box(sal, scene.box), pointing_hit(sal, scene.box),
                                                  energy_in_box(sal, scene.box, reference="min")))
    return [{"method": kind, "setting": "control, no query", "queries": 0, "s_per_image": 0.0,
             "hits": sum(r[1] for r in rows), "energy": float(np.mean([r[0] for r in rows])),
             "spread": float(np.std([r[0] for r in rows])), "above_min": float(np.mean([r[2] for r in rows]))}
            for kind, rows in per_kind.items()]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--n", type=int, default=12, help="scenes")
    ap.add_argument("--scene-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0, help="the methods' seed")
    ap.add_argument("--methods", nargs="*", default=None,
                    help='method specs, e.g. sobol "lr:block_size=16"; default: every black-box image method')
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--score", default=EXPLAINED_SCORE, choices=("logit", "prob", "logprob"),
                    help="the score the methods explain (the app's default: %(default)s)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    bb = load_model(args.model, score_mode=args.score)
    data = scenes(bb, n=args.n, seed=args.scene_seed)
    mean_box = np.mean([s.box_fraction for s in data])
    print(f"{len(data)} scenes, {sum('+' in s.name for s in data)} with a distractor; "
          f"boxes cover {mean_box:.2f} of the image on average; {bb.name} on {bb.device}, explaining its "
          f"{args.score}")
    specs = args.methods if args.methods is not None else list_explainers("image", white_box=False)
    print("\n| method | setting | queries | s / image | pointing | energy in box (± sd) | above the minimum |\n"
          "|---|---|---:|---:|---:|---:|---:|")
    for r in (run_method(bb, spec, data, args.seed) for spec in specs):
        print_row(r, len(data))
    for r in control_rows(data, args.seed):
        print_row(r, len(data))


def print_row(r: dict, n: int) -> None:
    print(f"| {r['method']} | {r['setting']} | {r['queries']:,} | {r['s_per_image']:.1f} | "
          f"{r['hits']}/{n} | {r['energy']:.2f} ± {r['spread']:.2f} | {r['above_min']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
