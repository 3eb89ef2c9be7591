"""IoU of every black-box method's map with the ground-truth event masks of the bundled audio clips (issue 6).

    .venv/bin/python bench/audio_iou.py                 # CPU defaults of every method, plus Sobol at grid 12 and 16

For each of the six clips in assets/audio (target = the clip's class), the map of each method at seed 0 is scored
with ``evaluation.metrics.iou`` (min-max normalised map >= 0.2 against the (F, T) mask). Prints a markdown table.

Two controls keep the figures honest: the first row scores the spectrogram itself as a "map" (no model, no
query: how far energy alone goes on this metric), and the last column scores every method's map multiplied by
the spectrogram, the readout DAX uses on audio by default, so that the product's share of DAX's IoU is visible.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from explainers import get_explainer, list_explainers  # noqa: E402
from explainers.dax import audio_energy  # noqa: E402
from maps import normalise  # noqa: E402
from evaluation.metrics import iou  # noqa: E402
from explainers.registry import explainer_class  # noqa: E402
from models import load_model  # noqa: E402

AUDIO = ROOT / "assets" / "audio"
EXTRA = [("sobol", {"grid_size": 12, "nb_design": 32}), ("sobol", {"grid_size": 16, "nb_design": 32}),
         ("dax", {"readout": "mask"}), ("dax", {"student": "segments"})]


def clips(bb):
    fe = bb.meta["frontend"]
    for c in json.loads((AUDIO / "manifest.json").read_text())["clips"]:
        wave, _ = fe.load_audio(AUDIO / c["file"])
        yield c["label"], fe.spectrogram(wave).cpu(), np.load(AUDIO / c["mask"]), c["class_index"]


def mean_iou(bb, method: str, params: dict) -> tuple[list[float], list[float], int, float]:
    """Per-clip IoU of the map and of map x energy, the queries per clip and the seconds for all clips."""
    ious, products, queries, t0 = [], [], 0, time.perf_counter()
    for _, x, mask, target in clips(bb):
        view = bb.view()
        sal = get_explainer(method, seed=0, **params).explain(view, x, target)
        ious.append(iou(sal.numpy(), mask))
        products.append(iou(normalise(sal.clamp_min(0) * audio_energy(x)).numpy(), mask))
        queries = view.queries
    return ious, products, queries, time.perf_counter() - t0


def main() -> None:
    bb = load_model("sound_events", device="cpu")
    labels = [c[0] for c in clips(bb)]
    runs = [(m, explainer_class(m).defaults("cpu"), "CPU defaults")
            for m in list_explainers(modality="audio", white_box=False)]
    runs += [(m, {**explainer_class(m).defaults("cpu"), **p}, ", ".join(f"{k}={v}" for k, v in p.items()))
             for m, p in EXTRA]
    print("| method | parameters | queries per clip | " + " | ".join(labels)
          + " | mean IoU | mean IoU of map x input | seconds (6 clips) |")
    print("|---|---|---:|" + "---:|" * len(labels) + "---:|---:|---:|")
    alone = [iou(normalise(audio_energy(x)).numpy(), mask) for _, x, mask, _ in clips(bb)]
    print("| (input alone) | the spectrogram as the map, no model | 0 | " + " | ".join(f"{v:.3f}" for v in alone)
          + f" | **{np.mean(alone):.3f}** | — | 0 |", flush=True)
    for method, params, desc in runs:
        ious, products, q, secs = mean_iou(bb, method, params)
        print(f"| {method} | {desc} | {q} | " + " | ".join(f"{v:.3f}" for v in ious)
              + f" | **{np.mean(ious):.3f}** | {np.mean(products):.3f} | {secs:.1f} |", flush=True)


if __name__ == "__main__":
    main()
