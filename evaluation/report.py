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
from PIL import Image

from . import metrics
from runtime.engine import package_versions

TABLE_COLUMNS = ("run", "method", "queries", "wall_time_s", "deletion_auc", "insertion_auc", "mu_fidelity",
                 "pointing_game", "iou", "metric_queries", "status", "control")

CONTROLS = ("random", "blocks", "centre")      # every kind of control map, in table order
CONTROL_LABELS = {"random": "control: random pixels", "blocks": "control: random 7x7 blocks",
                  "centre": "control: centre Gaussian"}
CONTROL_METHOD = "control"
BLOCKS_GRID = 7
CENTRE_SIGMA = 0.25                            # x min(H, W)


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
        labels = [r.label for r in comp.explanations]
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
            input_name: str = "input", use_cache: bool = True, controls: bool | Sequence[str] = True,
            control_seed: int = 0) -> Comparison:
    """Run every (label, method, params, seed) one after the other through the engine and score each map.

    The blocking twin of the Compare page (scripts, benches, tests): same runs, same scores, same table.
    ``controls``: True adds every control row (:data:`CONTROLS`) after the runs, a sequence adds those kinds,
    False none. On by default, as on the page: without them a deletion AUC has nothing to be read against.
    """
    from runtime.engine import default_engine, tensor_sha

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
    if controls:
        kinds = CONTROLS if controls is True else [controls] if isinstance(controls, str) else list(controls)
        add_controls(comp, bb, x, kinds, seed=control_seed, mu=mu)
    return comp


# ------------------------------------------------------------------------------------------------ controls
CONTROL_DEFINITIONS = {
    "random": "i.i.d. uniform [0, 1) pixels, numpy default_rng(seed)",
    "blocks": f"uniform [0, 1) values on a {BLOCKS_GRID} x {BLOCKS_GRID} grid, numpy default_rng(seed), "
              "nearest-upsampled to the input",
    "centre": f"isotropic Gaussian centred on the image, sigma = {CENTRE_SIGMA} x min(H, W)",
}


def control_map(kind: str, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A (H, W) float32 reference map that needs no model query: ``random``, ``blocks`` or ``centre``.

    Deterministic: the random kinds depend on ``seed`` only (numpy's default_rng), ``centre`` on nothing.
    """
    h, w = (int(v) for v in shape)
    if h < 1 or w < 1:
        raise ValueError(f"a control map needs a positive shape, got {tuple(shape)}")
    if kind == "random":
        return np.random.default_rng(int(seed)).random((h, w), dtype=np.float32)
    if kind == "blocks":
        grid = np.random.default_rng(int(seed)).random((BLOCKS_GRID, BLOCKS_GRID), dtype=np.float32)
        rows, cols = np.arange(h) * BLOCKS_GRID // h, np.arange(w) * BLOCKS_GRID // w
        return np.ascontiguousarray(grid[rows][:, cols])
    if kind == "centre":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        sigma = CENTRE_SIGMA * min(h, w)
        d2 = (yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2
        return np.exp(-d2 / (2 * sigma ** 2)).astype(np.float32)
    raise ValueError(f"unknown control {kind!r}; choose from {', '.join(CONTROLS)}")


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
