"""A comparison of several saliency runs on one input, as a table and as one ZIP. No streamlit import.

The Compare page and ``runtime.compare`` (``bench/compare_table.py``, the tests) build the same
:class:`Comparison` (:meth:`Comparison.of`), so the table a user sees, the table the bench prints and the exported
``metrics.csv`` are one thing. The ZIP holds:

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

Control rows. A score is only meaningful next to what a map that knows nothing about the model gets under the
same protocol: on the cat photo, i.i.d. uniform random pixels get a lower (better) deletion AUC than all
methods but one (README, Compare), because scattered removals destroy an image faster than compact ones. So a comparison can
carry *controls* (:func:`control_map`, :func:`add_controls`): reference maps made without a single model query
(``queries`` = 0), scored with the same ``metrics.evaluate`` (their metric queries are counted as for any run),
marked ``control`` in the table, ``metrics.csv`` and ``report.json``, and left out of the rank-correlation
matrix (a random map correlates ~0 with everything and would only crowd it).

    random    i.i.d. uniform pixels (seeded): the scattered control
    blocks    uniform values on a 7 x 7 grid, nearest-upsampled (seeded): a smooth, coarse random control
    centre    a centred isotropic Gaussian, sigma = min(H, W) / 4: the classic centre-bias control
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
from typing import Any, Callable, Sequence

import numpy as np

from maps import npy_bytes, overlay_png, png_bytes

from . import metrics
from .controls import BLOCKS_GRID, CENTRE_SIGMA, CONTROL_DEFINITIONS, CONTROL_LABELS, CONTROLS, control_map
from .provenance import package_versions

TABLE_COLUMNS = ("run", "method", "queries", "wall_time_s", "deletion_auc", "insertion_auc", "mu_fidelity",
                 "pointing_game", "iou", "metric_queries", "status", "control")

CONTROL_METHOD = "control"


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
    control: bool = False                  # a reference map made without the model (see the module docstring)

    def row(self) -> dict[str, Any]:
        s = self.scores or {}
        return {"run": self.label, "method": self.method, "queries": int(self.queries),
                "wall_time_s": round(float(self.wall_time_s), 3), "deletion_auc": s.get("deletion_auc"),
                "insertion_auc": s.get("insertion_auc"), "mu_fidelity": s.get("mu_fidelity"),
                "pointing_game": s.get("pointing_game"), "iou": s.get("iou"),
                "metric_queries": s.get("metric_queries"), "status": self.status, "control": bool(self.control)}


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

    @property
    def explanations(self) -> list[Run]:
        """The runs of explanation methods (every run but the controls)."""
        return [r for r in self.runs if not r.control]

    @property
    def controls(self) -> list[Run]:
        return [r for r in self.runs if r.control]

    @classmethod
    def of(cls, bb: Any, x: Any, target: int, *, input_name: str, input_sha256: str,
           mask: np.ndarray | None = None, background: np.ndarray | None = None) -> "Comparison":
        """An empty comparison of ``bb`` on ``x`` for class ``target`` (the runs are appended after)."""
        labels = bb.labels
        return cls(model=bb.id, target=int(target), target_label=labels[target] if target < len(labels) else "",
                   input_name=input_name, input_sha256=input_sha256,
                   background=bb.to_display(x) if background is None else background, mask=mask,
                   device=str(bb.device))

    def table(self) -> list[dict[str, Any]]:
        return [r.row() for r in self.runs]

    def correlation(self) -> np.ndarray | None:
        """Spearman correlation between the explanations' maps (controls left out), or None below two."""
        runs = self.explanations
        return metrics.rank_correlation([r.saliency for r in runs]) if len(runs) >= 2 else None

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
                      "from_cache": r.from_cache, "control": bool(r.control), "file": slug(r.label),
                      "scores": {k: v for k, v in (r.scores or {}).items() if not k.endswith(("curve", "fractions"))}}
                     for r in self.runs],
            **({"controls": {r.params["kind"]: CONTROL_DEFINITIONS[r.params["kind"]] for r in self.controls
                             if r.params.get("kind") in CONTROL_DEFINITIONS}} if self.controls else {}),
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
        labels = [r.label for r in comp.explanations]
        files["rank_correlation.csv"] = _csv([[""] + labels] + [[lab] + [f"{v:.6g}" for v in row]
                                                                for lab, row in zip(labels, corr)])
    files["input.png"] = png_bytes(np.asarray(comp.background)[..., :3].astype(np.uint8))
    if comp.mask is not None:
        files["ground_truth.png"] = png_bytes(np.asarray(comp.mask, dtype=bool).astype(np.uint8) * 255)
    for r in comp.runs:
        files[f"maps/{slug(r.label)}.npy"] = npy_bytes(r.saliency)
        files[f"overlays/{slug(r.label)}.png"] = overlay_png(comp.background, r.saliency)
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
               wall_time_s=float(snap.original_elapsed or snap.elapsed) if snap.from_cache
               else float(snap.elapsed), status=snap.status, from_cache=snap.from_cache, scores=scores)


# ------------------------------------------------------------------------------------------------ controls
def control_run(kind: str, shape: tuple[int, int], seed: int = 0, scores: dict[str, Any] | None = None) -> Run:
    """A :class:`Run` marked as a control: its map from :func:`control_map`, 0 queries; ``scores`` as given."""
    t0 = time.perf_counter()
    sal = control_map(kind, shape, seed)
    params: dict[str, Any] = {"kind": kind}
    if kind in ("random", "blocks"):
        params["seed"] = int(seed)
    if kind == "blocks":
        params["grid"] = BLOCKS_GRID
    if kind == "centre":
        params["sigma_px"] = round(CENTRE_SIGMA * min(int(shape[0]), int(shape[1])), 3)
    return Run(label=CONTROL_LABELS[kind], method=CONTROL_METHOD, params=params, seed=int(seed), saliency=sal,
               queries=0, wall_time_s=time.perf_counter() - t0, scores=scores, control=True)


def add_controls(comp: Comparison, bb: Any, x: Any, kinds: Sequence[str] = CONTROLS, *, seed: int = 0,
                 mu: bool = True, score: Callable[[Run], dict[str, Any] | None] | None = None) -> list[Run]:
    """Append one control run per kind to ``comp``, each scored by ``metrics.evaluate`` exactly like the runs
    (same mask, same µ-fidelity choice, µ-fidelity seeded by ``seed``), or by ``score(run)`` where the caller
    keeps its own cache of scores (the Compare page); returns the new runs."""
    shape = tuple(int(v) for v in x.shape[-2:])
    taken = [r.label for r in comp.runs]
    added = []
    for kind in kinds:
        run = control_run(kind, shape, seed)
        run.scores = (score(run) if score is not None else
                      metrics.evaluate(bb, x, comp.target, run.saliency, mask=comp.mask, mu=mu, seed=seed))
        run.label = unique_labels(taken + [run.label])[-1]
        taken.append(run.label)
        comp.runs.append(run)
        added.append(run)
    return added
