"""A comparison of several saliency runs on one input, as a table and as one ZIP. No streamlit import.

The Compare page, ``bench/compare_table.py`` and the tests build the same :class:`Comparison`, so the table a
user sees, the table the bench prints and the exported ``metrics.csv`` are one thing. The ZIP holds:

    manifest.json            every other file with its size and sha256
    report.json              model, input sha256, target, each run's method, parameters, seed, queries, wall time,
                             scores and the metric protocol, package versions: enough to rerun it
    metrics.csv              the table (one row per run)
    curves.csv               deletion and insertion curves (fraction of pixels changed -> score)
    rank_correlation.csv     Spearman correlation between the maps
    input.png                the input as the model sees it (display space)
    ground_truth.png         the mask the localisation scores used (when one was given)
    maps/<run>.npy           raw (H, W) float32 maps
    overlays/<run>.png       min-max normalised map over the input (jet, alpha 0.5)
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import time
import zipfile
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from PIL import Image

from . import metrics
from .engine import package_versions

TABLE_COLUMNS = ("run", "method", "queries", "wall_time_s", "deletion_auc", "insertion_auc", "mu_fidelity",
                 "pointing_game", "iou", "metric_queries", "status")


@dataclass
class Run:
    """One finished (or stopped) explanation and its scores (``metrics.evaluate``'s dict, or None)."""
    label: str
    method: str
    params: dict[str, Any]
    seed: int
    saliency: np.ndarray
    queries: int
    wall_time_s: float
    status: str = "done"
    from_cache: bool = False
    scores: dict[str, Any] | None = None

    def row(self) -> dict[str, Any]:
        s = self.scores or {}
        return {"run": self.label, "method": self.method, "queries": int(self.queries),
                "wall_time_s": round(float(self.wall_time_s), 3), "deletion_auc": s.get("deletion_auc"),
                "insertion_auc": s.get("insertion_auc"), "mu_fidelity": s.get("mu_fidelity"),
                "pointing_game": s.get("pointing_game"), "iou": s.get("iou"),
                "metric_queries": s.get("metric_queries"), "status": self.status}


@dataclass
class Comparison:
    model: str
    target: int
    target_label: str
    input_name: str
    input_sha256: str
    background: np.ndarray                 # (H, W, 3) uint8, the input in display space
    runs: list[Run] = field(default_factory=list)
    mask: np.ndarray | None = None         # (H, W) bool ground truth, if given
    device: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        return [r.row() for r in self.runs]

    def correlation(self) -> np.ndarray | None:
        return metrics.rank_correlation([r.saliency for r in self.runs]) if len(self.runs) >= 2 else None

    def report(self) -> dict[str, Any]:
        return {
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": self.model, "device": self.device, "input": {"name": self.input_name,
                                                                 "sha256": self.input_sha256,
                                                                 "shape": list(self.background.shape)},
            "target": {"index": int(self.target), "label": self.target_label},
            "metric_protocol": {"steps": metrics.STEPS, "deletion_substrate": metrics.DELETION_SUBSTRATE,
                                "insertion_substrate": metrics.INSERTION_SUBSTRATE,
                                "score_mode": metrics.SCORE_MODE,
                                "mu_fidelity": {"grid_size": metrics.MU_GRID, "nb_samples": metrics.MU_SAMPLES,
                                                "subset_percent": metrics.MU_P, "correlation": "spearman"},
                                "pointing_tolerance_px": metrics.POINTING_TOLERANCE,
                                "iou_threshold": metrics.IOU_THRESHOLD},
            "ground_truth": bool(self.mask is not None),
            "runs": [{"label": r.label, "method": r.method, "params": r.params, "seed": r.seed,
                      "queries": r.queries, "wall_time_s": r.wall_time_s, "status": r.status,
                      "from_cache": r.from_cache, "file": slug(r.label),
                      "scores": {k: v for k, v in (r.scores or {}).items() if not k.endswith(("curve", "fractions"))}}
                     for r in self.runs],
            "versions": package_versions(), **({"notes": self.notes} if self.notes else {}),
        }


def slug(label: str) -> str:
    """A file-name-safe, readable version of a run label."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", label).strip("_-") or "run"


def unique_labels(labels: Sequence[str]) -> list[str]:
    """Make labels distinct (``sobol``, ``sobol #2`` ...) so their files never overwrite each other."""
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        n = seen.get(lab, 0) + 1
        seen[lab] = n
        out.append(lab if n == 1 else f"{lab} #{n}")
    return out


def overlay(background: np.ndarray, saliency: np.ndarray, opacity: float = 0.5, colormap: str = "jet") -> bytes:
    """PNG bytes: the min-max normalised map, colour-mapped, alpha-blended over the background."""
    import matplotlib  # here, not at module level: `import explainers` imports this module too

    bg = np.asarray(background)[..., :3].astype(np.float32)
    sal = np.asarray(saliency, dtype=np.float32)
    if sal.shape != bg.shape[:2]:
        sal = np.asarray(Image.fromarray(sal).resize((bg.shape[1], bg.shape[0]), Image.Resampling.BILINEAR))
    lo, hi = float(sal.min()), float(sal.max())
    norm = (sal - lo) / (hi - lo) if hi > lo else np.zeros_like(sal)
    rgb = matplotlib.colormaps[colormap](norm)[..., :3] * 255
    return _png(((1 - opacity) * bg + opacity * rgb).clip(0, 255).round().astype(np.uint8))


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr, dtype=np.float32))
    return buf.getvalue()


def _csv(rows: Sequence[Sequence[Any]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode()


def export_zip(comp: Comparison) -> bytes:
    """Everything in one ZIP (see the module docstring); ``manifest.json`` lists every other file."""
    files: dict[str, bytes] = {}
    files["report.json"] = json.dumps(comp.report(), indent=2, default=str).encode()
    table = comp.table()
    files["metrics.csv"] = _csv([TABLE_COLUMNS] + [[r[c] if r[c] is not None else "" for c in TABLE_COLUMNS]
                                                   for r in table])
    curve_rows: list[list[Any]] = [["run", "kind", "fraction", "score"]]
    for r in comp.runs:
        s = r.scores or {}
        for kind in ("deletion", "insertion"):
            for f, v in zip(s.get("fractions") or [], s.get(f"{kind}_curve") or []):
                curve_rows.append([r.label, kind, f"{f:.6g}", f"{v:.6g}"])
    files["curves.csv"] = _csv(curve_rows)
    corr = comp.correlation()
    if corr is not None:
        labels = [r.label for r in comp.runs]
        files["rank_correlation.csv"] = _csv([[""] + labels] + [[lab] + [f"{v:.6g}" for v in row]
                                                                for lab, row in zip(labels, corr)])
    files["input.png"] = _png(np.asarray(comp.background)[..., :3].astype(np.uint8))
    if comp.mask is not None:
        files["ground_truth.png"] = _png(np.asarray(comp.mask, dtype=bool).astype(np.uint8) * 255)
    for r in comp.runs:
        files[f"maps/{slug(r.label)}.npy"] = _npy(r.saliency)
        files[f"overlays/{slug(r.label)}.png"] = overlay(comp.background, r.saliency)
    manifest = {"files": [{"path": p, "bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                          for p, b in files.items()]}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=2))
        for path, data in files.items():
            z.writestr(path, data)
    return buf.getvalue()


def check_zip(data: bytes) -> dict[str, Any]:
    """Open an exported ZIP and verify it holds exactly what its manifest lists (sizes and hashes); the manifest."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        manifest = json.loads(z.read("manifest.json"))
        names = set(z.namelist()) - {"manifest.json"}
        listed = {f["path"] for f in manifest["files"]}
        if names != listed:
            raise ValueError(f"the ZIP and its manifest differ: {sorted(names ^ listed)}")
        for f in manifest["files"]:
            blob = z.read(f["path"])
            if len(blob) != f["bytes"] or hashlib.sha256(blob).hexdigest() != f["sha256"]:
                raise ValueError(f"{f['path']} does not match its manifest entry")
    return manifest


def run_from_snapshot(label: str, snap: Any, scores: dict[str, Any] | None = None) -> Run:
    """A :class:`Run` from an engine ``JobSnapshot`` (finished, with a map)."""
    return Run(label=label, method=snap.method, params=dict(snap.params), seed=snap.seed,
               saliency=np.asarray(snap.saliency, dtype=np.float32), queries=int(snap.queries),
               wall_time_s=float(snap.extras.get("original_elapsed") or snap.elapsed) if snap.from_cache
               else float(snap.elapsed), status=snap.status, from_cache=snap.from_cache, scores=scores)


def compare(bb: Any, x: Any, target: int, specs: Sequence[tuple[str, str, dict[str, Any], int]], *,
            engine: Any = None, mask: np.ndarray | None = None, mu: bool = True, input_id: str | None = None,
            input_name: str = "input", use_cache: bool = True) -> Comparison:
    """Run every (label, method, params, seed) one after the other through the engine and score each map.

    The blocking twin of the Compare page (scripts, benches, tests): same runs, same scores, same table.
    """
    from .engine import default_engine, tensor_sha

    engine = engine or default_engine()
    input_id = input_id or tensor_sha(x)
    labels = bb.labels
    comp = Comparison(model=bb.id, target=int(target), target_label=labels[target] if target < len(labels) else "",
                      input_name=input_name, input_sha256=input_id, background=bb.to_display(x), mask=mask,
                      device=str(bb.device))
    for label, (_, method, params, seed) in zip(unique_labels([s[0] for s in specs]), specs):
        snap = engine.run(bb, x, method, params, target=target, seed=seed, input_id=input_id, use_cache=use_cache)
        if snap.saliency is None:
            raise RuntimeError(f"{label}: {snap.error or snap.status}")
        scores = metrics.evaluate(bb, x, target, snap.saliency, mask=mask, mu=mu, seed=seed)
        comp.runs.append(run_from_snapshot(label, snap, scores))
    return comp
