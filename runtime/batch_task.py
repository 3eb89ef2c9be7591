"""One task of a dataset run: decode the input, explain it, score it, write the map and then its row.

The same function runs in the local loop and inside a Ray actor, so both engines write identical outputs.
Whatever goes wrong with one input (undecodable file, bad ground truth, a method's error) becomes a failed row
with a reason a person can read; the run goes on.
"""
from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from evaluation.metrics import box_mask, deletion_auc, insertion_auc, iou, pointing_game
from maps import overlay_png
from models import BlackBox, ImageDecodeError, decode_image, explained_view

from .batch import GROUND_TRUTH_SCORES, BatchSpec, Task, row_path, write_json
from .engine import DONE, Engine


def load_input(bb: BlackBox, path: str) -> tuple[torch.Tensor, Image.Image | None]:
    """The model's input tensor (and the decoded image, for ground truth); ValueError with the reason."""
    if bb.modality == "audio":
        frontend = bb.meta["frontend"]
        wave, sr = frontend.load_audio(path)
        return bb.preprocess(wave, sr), None
    image = decode_image(path).image
    return bb.preprocess(image), image


def ground_truth(bb: BlackBox, task: Task, image: Image.Image | None, shape: tuple[int, int]) -> np.ndarray | None:
    """The box or mask of the manifest, carried through the model's own resize and crop onto the map's grid."""
    if task.box is None and task.mask is None:
        return None
    if task.mask is not None:
        gt = Image.open(task.mask).convert("L")
    else:
        with Image.open(task.path) as original:       # the box is in the file's pixels, before any downscale
            w, h = original.size
        gt = Image.fromarray(box_mask((h, w), task.box).astype(np.uint8) * 255)
    if image is not None:
        gt = gt.resize(image.size, Image.Resampling.NEAREST)
        geometry = getattr(bb.meta.get("transform"), "geometry", None)
        if geometry is not None:
            gt = geometry(gt)
    gt = gt.convert("L").resize((shape[1], shape[0]), Image.Resampling.NEAREST)
    mask = np.asarray(gt) > 127
    if not mask.any():
        raise ValueError("the ground truth lies outside the part of the image the model sees")
    return mask


def _scores(bb: BlackBox, x: torch.Tensor, target: int, sal: np.ndarray, wanted: tuple[str, ...],
            gt: np.ndarray | None) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in wanted:
        if name in GROUND_TRUTH_SCORES and gt is None:
            out[name] = None                     # no ground truth for this input: no score, not a zero
        elif name == "deletion":
            out[name] = float(deletion_auc(bb, x, target, sal))
        elif name == "insertion":
            out[name] = float(insertion_auc(bb, x, target, sal))
        elif name == "pointing":
            out[name] = float(pointing_game(sal, gt))
        elif name == "iou":
            out[name] = float(iou(sal, gt))
    return out


def reason(e: Exception) -> str:
    text = str(e).strip().rstrip(".")
    if isinstance(e, (ImageDecodeError, ValueError, OSError)) and text:
        return text                       # already written for a person (decode, validation, file errors)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def map_name(task: Task) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(task.path).stem)[:60] or "input"
    return f"{task.index:05d}_{stem}.{task.method}.{task.key[:8]}"


def base_row(spec: BatchSpec, bb: BlackBox, task: Task) -> dict[str, Any]:
    return {"key": task.key, "index": task.index, "file": task.path, "sha256": task.sha256, "model": explained_view(bb).id,
            "method": task.method, "params": task.params, "seed": spec.seed, "target": task.target,
            "target_label": None, "status": "failed", "error": task.error, "queries": 0, "seconds": 0.0,
            "device": str(bb.device), "backend": bb.backend, "engine": spec.engine, "host": socket.gethostname(),
            "map": None, "overlay": None, **{s: None for s in spec.scores}}


def run_task(spec: BatchSpec, bb: BlackBox, task: Task, out: Path) -> dict[str, Any]:
    """Explain one task and write its map and row (the row last: it marks the task done)."""
    row = base_row(spec, bb, task)
    t0 = time.perf_counter()
    try:
        if task.error:
            raise ValueError(task.error)
        x, image = load_input(bb, task.path)
        snap = Engine(disk_cache=False, max_parallel=1).run(
            explained_view(bb), x, task.method, task.params, target=task.target, seed=spec.seed,
            input_id=task.sha256, min_interval=3600.0)
        if snap.status != DONE or snap.saliency is None:
            raise RuntimeError(snap.error or f"the run ended {snap.status}")
        sal = np.asarray(snap.saliency, dtype=np.float32)
        gt = ground_truth(bb, task, image, sal.shape)
        row.update(target=int(snap.target), target_label=bb.labels[int(snap.target)], queries=int(snap.queries),
                   **_scores(bb, x, int(snap.target), sal, spec.scores, gt))
        name = map_name(task)
        (out / "maps").mkdir(parents=True, exist_ok=True)
        np.save(out / "maps" / f"{name}.npy", sal)
        (out / "maps" / f"{name}.png").write_bytes(overlay_png(bb.to_display(x), sal))
        row.update(status="done", error=None, map=f"maps/{name}.npy", overlay=f"maps/{name}.png")
    except Exception as e:  # one bad input or method failure is one failed row, never the end of the run
        row["error"] = reason(e)
    row["seconds"] = round(time.perf_counter() - t0, 4)
    write_json(row_path(out, task.key), row)
    return row
