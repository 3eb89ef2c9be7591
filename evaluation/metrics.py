"""Faithfulness and localisation scores for a saliency map (docs/methods.md section 7). No streamlit.

Project-wide protocol (fixed so numbers are comparable across pages, benches and tests):

- **Deletion / insertion** (Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of
  Black-box Models", BMVC 2018): rank pixels by saliency (descending, stable ties), change them in
  ``STEPS = 32`` equal steps (all channels at once), score the explained class after each step: 33 queries.
  Deletion goes from the image toward a zero substrate (zeros of the model's input space, i.e. the dataset mean
  colour for normalised images); insertion goes from a blurred copy (Gaussian, sigma = 5 px at 224 px,
  ``masks.make_baseline("blur")``) toward the image. Scores are in ``score_mode="prob"`` (softmax probability)
  unless asked otherwise. AUC = trapezoid over the fraction of pixels changed in [0, 1]
  (= (sum s - s_0/2 - s_last/2) / STEPS, as in the RISE code). Lower deletion and higher insertion are better.
- **mu-Fidelity** (Bhatt, Weller, Moura, "Evaluating and Aggregating Feature-based Model Explanations",
  IJCAI 2020; xplique ``MuFidelity`` defaults): 200 random subsets of a 9 x 9 grid, each cell removed (set to
  zero) with probability 0.2; correlate f_c(x) - f_c(x_S<-0) with the sum of the map over the removed pixels
  (Spearman by default, Pearson on request, NaN counts as 0). Seeded; 201 queries.
- **Pointing game** (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016): a hit if
  the map's maximum lies within ``tolerance`` (15) pixels of the ground-truth mask.
- **IoU** (as used by DAX): min-max normalise the map, keep pixels >= 0.2, intersection over union with the mask.

Every model query goes through a ``bb.view()`` with its own counter, so a metric's queries are reported apart
from the explanation's (``MetricResult.queries``); the caller's ``bb.queries`` does not move.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage, stats

from maps import normalise
from models.base import BlackBox

from explainers.base import check_input, check_target
from explainers.masks import blend, make_baseline, upsample

STEPS = 32                      # deletion / insertion steps (33 scores per curve)
DELETION_SUBSTRATE = "zero"
INSERTION_SUBSTRATE = "blur"
SCORE_MODE = "prob"
MU_GRID, MU_SAMPLES, MU_P = 9, 200, 0.2
POINTING_TOLERANCE = 15         # px
IOU_THRESHOLD = 0.2
CHUNK = 64                      # perturbed inputs built at once (bounds memory on large inputs)


@dataclass
class MetricResult:
    """A score plus what it cost: ``queries`` spent by the metric alone, and the curve it came from."""
    name: str
    value: float
    queries: int
    curve: np.ndarray | None = None          # deletion / insertion: scores after each step
    fractions: np.ndarray | None = None      # fraction of pixels changed at each step
    options: dict[str, Any] = field(default_factory=dict)

    def __float__(self) -> float:
        return float(self.value)


# ----------------------------------------------------------------------------------------------- helpers
def _as_map(saliency: Any, shape: tuple[int, int] | None = None, what: str = "saliency") -> np.ndarray:
    s = saliency.detach().float().cpu().numpy() if isinstance(saliency, torch.Tensor) else np.asarray(saliency)
    if s.ndim == 3 and s.shape[0] == 1:
        s = s[0]
    if s.ndim != 2:
        raise ValueError(f"{what} must be a 2-D map (H, W), got shape {s.shape}")
    if shape is not None and tuple(s.shape) != tuple(shape):
        raise ValueError(f"{what} has shape {tuple(s.shape)} but the input is {tuple(shape)}")
    if s.dtype != bool and not np.isfinite(s).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return s


def _check(bb: BlackBox, x: torch.Tensor, target: int, metric: str) -> torch.Tensor:
    """The explainers' own input and target rules, so a map that could be made can be scored (numpy ints too)."""
    x = check_input(bb, x, metric)
    check_target(bb, int(target) if isinstance(target, np.integer) else target, metric)
    return x


def _scores_of(view: BlackBox, x: torch.Tensor, baseline: torch.Tensor, keep: torch.Tensor, target: int) -> torch.Tensor:
    """f_c of blend(x, baseline, keep) for keep masks (N, 1, h, w) (1 keeps x), in chunks, on the model's device."""
    out = []
    for i in range(0, keep.shape[0], CHUNK):
        m = keep[i:i + CHUNK]
        if m.shape[-2:] != x.shape[-2:]:
            m = upsample(m, tuple(x.shape[-2:]), "nearest")
        out.append(view(blend(x, baseline, m))[:, int(target)])
    return torch.cat(out)


def _trapezoid_auc(curve: np.ndarray, fractions: np.ndarray) -> float:
    return float(np.sum((curve[1:] + curve[:-1]) * np.diff(fractions)) / 2)


# ----------------------------------------------------------------------------------------------- deletion / insertion
def _causal_curve(name: str, bb: BlackBox, x: torch.Tensor, target: int, saliency: Any, *, insert: bool,
                  steps: int, substrate: str, score_mode: str) -> MetricResult:
    x = _check(bb, x, target, name)
    h, w = x.shape[-2:]
    sal = _as_map(saliency, (h, w))
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= h * w:
        raise ValueError(f"steps must be a whole number in 1..{h * w}, got {steps!r}")
    view = bb.view(score_mode=score_mode)
    dev = x.device
    order = torch.argsort(torch.as_tensor(sal, device=dev).flatten(), descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=dev)
    rank = rank.view(1, 1, h, w)
    counts = torch.tensor([round(k * h * w / steps) for k in range(steps + 1)], device=dev)
    changed = (rank < counts.view(-1, 1, 1, 1)).float()            # (steps+1, 1, H, W): 1 = pixel changed
    base = make_baseline(x, substrate)
    # deletion: changed pixels take the substrate; insertion: changed pixels take the image, others the substrate
    keep = changed if insert else 1 - changed
    curve = _scores_of(view, x, base, keep, target).float().cpu().numpy()
    fractions = counts.cpu().numpy() / (h * w)
    return MetricResult(name, _trapezoid_auc(curve, fractions), view.queries, curve, fractions,
                        {"steps": int(steps), "substrate": substrate, "score_mode": score_mode, "target": int(target)})


def deletion_curve(bb: BlackBox, x: torch.Tensor, target: int, saliency: Any, *, steps: int = STEPS,
                   substrate: str = DELETION_SUBSTRATE, score_mode: str = SCORE_MODE) -> MetricResult:
    """Deletion (RISE): scores as the most salient pixels go first; ``value`` is the AUC (lower is better)."""
    return _causal_curve("deletion", bb, x, target, saliency, insert=False, steps=steps, substrate=substrate,
                         score_mode=score_mode)


def insertion_curve(bb: BlackBox, x: torch.Tensor, target: int, saliency: Any, *, steps: int = STEPS,
                    substrate: str = INSERTION_SUBSTRATE, score_mode: str = SCORE_MODE) -> MetricResult:
    """Insertion (RISE): scores as the most salient pixels come back first; ``value`` is the AUC (higher is better)."""
    return _causal_curve("insertion", bb, x, target, saliency, insert=True, steps=steps, substrate=substrate,
                         score_mode=score_mode)


def deletion_auc(bb: BlackBox, x: torch.Tensor, target: int, saliency: Any, **options: Any) -> float:
    """Area under the deletion curve (see :func:`deletion_curve` for the options)."""
    return deletion_curve(bb, x, target, saliency, **options).value


def insertion_auc(bb: BlackBox, x: torch.Tensor, target: int, saliency: Any, **options: Any) -> float:
    """Area under the insertion curve (see :func:`insertion_curve` for the options)."""
    return insertion_curve(bb, x, target, saliency, **options).value


# ----------------------------------------------------------------------------------------------- mu-fidelity
def mu_fidelity_result(bb: BlackBox, x: torch.Tensor, target: int, saliency: Any, *, grid_size: int = MU_GRID,
                       nb_samples: int = MU_SAMPLES, subset_percent: float = MU_P, baseline: str = "zero",
                       correlation: str = "spearman", seed: int = 0, score_mode: str = SCORE_MODE) -> MetricResult:
    """mu-Fidelity (Bhatt et al. 2020) with its cost; ``value`` in [-1, 1], higher is better."""
    x = _check(bb, x, target, "mu_fidelity")
    h, w = x.shape[-2:]
    sal = torch.as_tensor(_as_map(saliency, (h, w)), dtype=torch.float32, device=x.device)
    if correlation not in ("spearman", "pearson"):
        raise ValueError(f"correlation must be 'spearman' or 'pearson', got {correlation!r}")
    if not (0 < subset_percent < 1) or grid_size < 1 or nb_samples < 3:
        raise ValueError("mu_fidelity needs 0 < subset_percent < 1, grid_size >= 1 and nb_samples >= 3")
    view = bb.view(score_mode=score_mode)
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    removed = torch.rand(nb_samples, 1, grid_size, grid_size, generator=gen, device=x.device) < subset_percent
    removed_px = upsample(removed.float(), (h, w), "nearest")                     # (n, 1, H, W)
    base = make_baseline(x, baseline)
    y0 = view(x.unsqueeze(0))[0, int(target)]
    y = _scores_of(view, x, base, 1 - removed_px, target)
    drop = (y0 - y).float().cpu().numpy()
    attr = (removed_px[:, 0] * sal).sum(dim=(1, 2)).float().cpu().numpy()
    corr_fn = stats.spearmanr if correlation == "spearman" else stats.pearsonr
    with np.errstate(all="ignore"):
        c = float(corr_fn(drop, attr)[0]) if np.ptp(drop) > 0 and np.ptp(attr) > 0 else float("nan")
    value = 0.0 if not np.isfinite(c) else c              # a constant map or model says nothing: 0, as xplique
    return MetricResult("mu_fidelity", value, view.queries, options={
        "grid_size": grid_size, "nb_samples": nb_samples, "subset_percent": subset_percent, "baseline": baseline,
        "correlation": correlation, "seed": int(seed), "score_mode": score_mode, "target": int(target)})


def mu_fidelity(bb: BlackBox, x: torch.Tensor, target: int, saliency: Any, **options: Any) -> float:
    """mu-Fidelity score (see :func:`mu_fidelity_result` for the options)."""
    return mu_fidelity_result(bb, x, target, saliency, **options).value


# ----------------------------------------------------------------------------------------------- localisation
def box_mask(shape: tuple[int, int], box: Sequence[int]) -> np.ndarray:
    """Boolean (H, W) mask of the box (x0, y0, x1, y1), end-exclusive, clipped to the image."""
    h, w = shape
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, x1 = sorted((max(0, min(w, x0)), max(0, min(w, x1))))
    y0, y1 = sorted((max(0, min(h, y0)), max(0, min(h, y1))))
    if x1 == x0 or y1 == y0:
        raise ValueError(f"the box {tuple(box)} is empty inside an image of {w} x {h} px")
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _as_mask(mask: Any, shape: tuple[int, int]) -> np.ndarray:
    m = _as_map(mask, shape, "mask").astype(bool)           # any non-zero pixel (e.g. 255 in a PNG) is the object
    if not m.any():
        raise ValueError("the ground-truth mask is empty")
    return m


def pointing_game(saliency: Any, mask: Any, tolerance: float = POINTING_TOLERANCE) -> bool:
    """True if the map's maximum (first one in raster order) lies within ``tolerance`` px of the mask."""
    sal = _as_map(saliency)
    m = _as_mask(mask, sal.shape)
    r, c = np.unravel_index(int(np.argmax(sal)), sal.shape)
    dist = ndimage.distance_transform_edt(~m)                # px to the nearest mask pixel (0 inside)
    return bool(dist[r, c] <= tolerance)


def iou(saliency: Any, mask: Any, threshold: float = IOU_THRESHOLD) -> float:
    """IoU of {min-max normalised map >= threshold} with the mask (a constant map selects nothing)."""
    sal = _as_map(saliency)
    m = _as_mask(mask, sal.shape)
    sel = normalise(sal) >= threshold if sal.max() > sal.min() else np.zeros_like(m)
    union = np.logical_or(sel, m).sum()
    return float(np.logical_and(sel, m).sum() / union)


# ----------------------------------------------------------------------------------------------- between maps
def rank_correlation(maps: Mapping[str, Any] | Sequence[Any]) -> np.ndarray:
    """Spearman rank correlation between every pair of maps (k, k); a constant map correlates 0 with others."""
    arrays = list(maps.values()) if isinstance(maps, Mapping) else list(maps)
    if len(arrays) < 2:
        raise ValueError("rank_correlation needs at least two maps")
    flat = [_as_map(a).ravel() for a in arrays]
    if len({f.size for f in flat}) != 1:
        raise ValueError("rank_correlation: the maps have different sizes")
    ranks = np.stack([stats.rankdata(f) for f in flat])
    with np.errstate(all="ignore"):
        r = np.corrcoef(ranks)
    r = np.nan_to_num(np.atleast_2d(r), nan=0.0)
    np.fill_diagonal(r, 1.0)
    return r


# ----------------------------------------------------------------------------------------------- all at once
def metric_query_count(mu: bool = True, steps: int = STEPS, nb_samples: int = MU_SAMPLES) -> int:
    """Model queries :func:`evaluate` spends on one map: deletion and insertion (``steps + 1`` each) and, with
    ``mu``, µ-fidelity (``nb_samples`` subsets + the unperturbed input). Known before scoring, for the budget."""
    return 2 * (int(steps) + 1) + (int(nb_samples) + 1 if mu else 0)


def evaluate(bb: BlackBox, x: torch.Tensor, target: int, saliency: Any, *, mask: Any = None,
             mu: bool = True, seed: int = 0, **options: Any) -> dict[str, Any]:
    """Every score the Compare page shows, with the curves and the metric queries (apart from the explanation's).

    ``options`` may hold ``steps``, ``score_mode``, ``tolerance``, ``threshold``. Returns a dict with
    ``deletion_auc``, ``insertion_auc``, ``mu_fidelity`` (if ``mu``), ``pointing_game`` and ``iou`` (if a mask is
    given, else None), ``deletion_curve`` / ``insertion_curve`` / ``fractions`` (lists) and ``metric_queries``.
    """
    steps = options.get("steps", STEPS)
    mode = options.get("score_mode", SCORE_MODE)
    dele = deletion_curve(bb, x, target, saliency, steps=steps, score_mode=mode)
    ins = insertion_curve(bb, x, target, saliency, steps=steps, score_mode=mode)
    out: dict[str, Any] = {"deletion_auc": dele.value, "insertion_auc": ins.value, "mu_fidelity": None,
                           "pointing_game": None, "iou": None, "deletion_curve": dele.curve.tolist(),
                           "insertion_curve": ins.curve.tolist(), "fractions": dele.fractions.tolist()}
    queries = dele.queries + ins.queries
    if mu:
        mf = mu_fidelity_result(bb, x, target, saliency, seed=seed, score_mode=mode)
        out["mu_fidelity"], queries = mf.value, queries + mf.queries
    if mask is not None:
        out["pointing_game"] = pointing_game(saliency, mask, options.get("tolerance", POINTING_TOLERANCE))
        out["iou"] = iou(saliency, mask, options.get("threshold", IOU_THRESHOLD))
    out["metric_queries"] = queries
    return out

from .fidelity import gradient_fidelity  # noqa: E402,F401
