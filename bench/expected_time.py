"""Expected time shown before a run against the run's wall time, for every black-box image method at its CPU
defaults on the cat (the bundled model as the app loads it, explaining the logit as the app does).

    OMP_NUM_THREADS=1 .venv/bin/python bench/expected_time.py            # --methods sobol dax, --audio

The expected time is ``runtime.estimate.expected_seconds`` (the budget at the model's measured cost per query,
plus the method's measured non-query work), computed as the page computes it; the wall time is the engine's
(headless, no result cache). Prints a markdown table with the ratio wall / expected.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from explainers import explainer_class, list_explainers  # noqa: E402
from models import device_name, explained_view, load_model  # noqa: E402
from models.backends import interactive_threads  # noqa: E402
from runtime.engine import Engine  # noqa: E402
from runtime.estimate import expected_seconds, query_cost  # noqa: E402


def rows(bb, x, target, methods, engine):
    for m in methods:
        params = explainer_class(m).defaults(bb.device)
        expected = expected_seconds(bb, m, params, x.shape)
        snap = engine.run(bb, x, m, params, target=target, seed=0, use_cache=False)
        yield m, snap.queries, expected, snap.elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", nargs="*")
    ap.add_argument("--audio", action="store_true", help="the bundled sound model on the siren clip")
    ap.add_argument("--script", action="store_true",
                    help="the model as a script loads it (all cores), not as the app does (a core left to the page "
                         "on machines of up to 4 cores: models.backends.interactive_threads)")
    args = ap.parse_args()
    engine = Engine(disk_cache=False)
    threads = None if args.script else interactive_threads()
    if args.audio:
        bb = explained_view(load_model("sound_events", device="cpu", threads=threads))
        x = bb.preprocess(*bb.meta["frontend"].load_audio(str(ROOT / "assets" / "audio" / "siren.wav")))
        modality = "audio"
    else:
        from PIL import Image
        bb = explained_view(load_model("efficientnet_lite0", device="cpu", threads=threads))
        x = bb.preprocess(Image.open(ROOT / "assets" / "examples" / "cat.png"))
        modality = "image"
    target = int(bb(x.unsqueeze(0))[0].argmax())
    methods = args.methods or list_explainers(modality=modality, white_box=False)
    print(f"# {bb.name} ({bb.backend_note or bb.backend}), {device_name(bb.device)}, "
          f"{query_cost(bb) * 1e3:.2f} ms per query measured, load average {os.getloadavg()[0]:.1f}")
    print("| method | queries | expected (s) | wall time (s) | wall / expected |\n|---|---:|---:|---:|---:|")
    for m, q, exp, wall in rows(bb, x, target, methods, engine):
        print(f"| {m} | {q} | {exp:.1f} | {wall:.1f} | {wall / exp:.2f} |", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
