"""Convergence lab: the math behind views/lab.py (no Streamlit here).

Two things are computed:

* a toy two-dimensional function (a sum of Gaussian bumps), its analytic gradient, and the likelihood-ratio
  (score-function) estimate of that gradient at grid points, with antithetic pairs:
  ``g = mean((f(p + z) - f(p - z)) / 2 * z) / sigma^2``, z ~ N(0, sigma^2 I) (Zhang et al., arXiv 2403.15603,
  2024; Cai and Wunder, ICML 2024). The estimate is unbiased for the gradient of the *Gaussian-smoothed* f,
  so a large sigma is biased (it blurs the bumps) and a small sigma with few samples is noisy.
* ``cosine_curves``: stream query-only gradient estimators (the methods that declare ``estimates_gradient``:
  LR, GEEX, iGEEX) on a real model and record the cosine of their gradient estimate with the autograd
  gradient against queries, over several seeds.

The toy's estimate is the same running-mean estimator as LR's and GEEX's (explainers.estimators), with each
grid point a block of its own.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from explainers.estimators import ScoreFunctionEstimator, central_difference
from explainers.registry import explainer_class, get_explainer, list_explainers

from .fidelity import cosine, true_gradient


def _cos(g: torch.Tensor, g_true: torch.Tensor) -> float:
    """Cosine with the true gradient; a (1, H, W) estimate (channel-shared noise) is broadcast over the channels."""
    g = torch.as_tensor(g)
    if g.dim() == 3 and g.shape[0] == 1:
        g = g.expand(g_true.shape[0], -1, -1)
    return cosine(g, g_true)

# (amplitude, centre x, centre y, width): two hills and a pit on [-2, 2]^2
BUMPS = ((1.0, -0.8, -0.5, 0.6), (0.7, 0.9, 0.7, 0.5), (-0.8, 0.6, -0.9, 0.45))
EXTENT = 2.0


def toy_f(p: np.ndarray, bumps=BUMPS) -> np.ndarray:
    """f(p) = sum_k a_k exp(-|p - m_k|^2 / (2 s_k^2)) for points p of shape (..., 2)."""
    p = np.asarray(p, float)
    out = np.zeros(p.shape[:-1])
    for a, mx, my, s in bumps:
        out += a * np.exp(-((p[..., 0] - mx) ** 2 + (p[..., 1] - my) ** 2) / (2 * s * s))
    return out


def toy_grad(p: np.ndarray, bumps=BUMPS) -> np.ndarray:
    """Analytic gradient (..., 2) of :func:`toy_f`."""
    p = np.asarray(p, float)
    out = np.zeros(p.shape)
    for a, mx, my, s in bumps:
        d = p - np.array([mx, my])
        e = a * np.exp(-(d ** 2).sum(-1) / (2 * s * s))
        out += (-e / (s * s))[..., None] * d
    return out


def grid(n: int = 12, extent: float = EXTENT) -> np.ndarray:
    """(n*n, 2) grid points covering [-extent, extent]^2 (row-major, y outer)."""
    t = np.linspace(-extent, extent, n)
    xx, yy = np.meshgrid(t, t)
    return np.stack([xx.ravel(), yy.ravel()], -1)


def lr_toy_gradient(points: np.ndarray, sigma: float, n_samples: int, seed: int = 0,
                    f: Callable[[np.ndarray], np.ndarray] = toy_f) -> np.ndarray:
    """LR (antithetic) estimate (P, 2) of the gradient of ``f`` at each point from ``n_samples`` queries
    (n_samples // 2 mirrored pairs, at least one)."""
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2 (one mirrored pair), got {n_samples!r}")
    points = np.asarray(points, float)
    shape, pairs = points.shape, n_samples // 2
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((pairs, *shape)).reshape(pairs, -1, shape[-1])      # (pairs, P, 2)
    z, flat = eps * sigma, points.reshape(-1, shape[-1])
    coef = central_difference(f(flat + z), f(flat - z))                  # (pairs, P)
    est = ScoreFunctionEstimator(sigma, shape[-1], len(flat), dtype=torch.float64)
    est.add_rounds(torch.from_numpy(eps), torch.from_numpy(coef))        # every point gets a pair per round
    return est.gradient().numpy().reshape(shape)


def mean_cosine(est: np.ndarray, true: np.ndarray) -> float:
    """Mean over points of the cosine between two (P, 2) vector fields (points with a zero vector skipped)."""
    ne, nt = np.linalg.norm(est, axis=-1), np.linalg.norm(true, axis=-1)
    ok = (ne > 0) & (nt > 1e-9)
    return float(((est * true).sum(-1)[ok] / (ne[ok] * nt[ok])).mean()) if ok.any() else 0.0


# --------------------------------------------------------------------------------------- real models
@dataclass
class Curve:
    """One method's curves: ``cosine[s, j]`` (seed s, checkpoint j); ``gap`` the same for a completeness gap."""
    name: str
    queries: list[int]
    cosine: np.ndarray
    gap: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def band(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean, min, max) over seeds, ignoring checkpoints a seed never reached (NaN)."""
        c = self.cosine
        return np.nanmean(c, 0), np.nanmin(c, 0), np.nanmax(c, 0)


def _method_and_params(name: str, spec: dict) -> tuple[str, dict]:
    spec = dict(spec)
    return spec.pop("method", name), spec


def stream_cosines(bb, x: torch.Tensor, target: int, method: str, params: dict, seed: int,
                   g_true: torch.Tensor | None = None, should_stop: Callable[[], bool] | None = None):
    """Yield (queries, cosine, completeness_gap or None) for every estimate of one run (min_interval=0)."""
    g_true = true_gradient(bb, x, target) if g_true is None else g_true
    # the method's gradient_options first (LR's defaults estimate a presence gradient), then the preset's
    ex = get_explainer(method, seed=seed, **{**explainer_class(method).gradient_options, **params})
    if not ex.estimates_gradient:
        raise ValueError(f"{method} gives no gradient estimate (estimates_gradient is false); the lab needs one")
    for est in ex.stream(bb.view(), x, target, min_interval=0.0):
        yield est.queries, _cos(est.gradient, g_true), est.metrics.get("completeness_gap")
        if should_stop is not None and should_stop():
            return


def cosine_curves(bb, x: torch.Tensor, target: int, methods: dict[str, dict], seeds: Sequence[int],
                  checkpoints: Sequence[int], on_point: Callable[[str, int, int, float], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> dict[str, Curve]:
    """Cosine with the autograd gradient against queries for each method (display name -> params; a params
    entry ``method`` names the registered method, else the display name is the method).

    Each run streams with ``min_interval=0``; checkpoint j gets the last estimate made with at most
    ``checkpoints[j]`` queries (NaN if none yet). The runs are budgeted to ``max(checkpoints)``: the caller's
    ``n_samples``/``n_masks`` is set from it unless given. ``on_point(name, seed, queries, cosine, gap or None)`` is
    called for every estimate (live plotting).
    """
    if not bb.is_white_box:
        raise ValueError(f"the convergence lab needs an open torch model for the true gradient; {bb.name} "
                         "can only be queried")
    checkpoints = sorted(int(c) for c in checkpoints)
    if not checkpoints or checkpoints[0] < 1:
        raise ValueError(f"checkpoints must be positive query counts, got {checkpoints!r}")
    x = x.to(bb.device, torch.float32)
    g_true = true_gradient(bb, x, target)
    out: dict[str, Curve] = {}
    for name, spec in methods.items():
        method, params = _method_and_params(name, spec)
        params = with_budget(method, params, checkpoints[-1])
        cos = np.full((len(seeds), len(checkpoints)), np.nan)
        gap = np.full((len(seeds), len(checkpoints)), np.nan)
        has_gap = False
        for si, seed in enumerate(seeds):
            for q, c, g in stream_cosines(bb, x, target, method, params, seed, g_true, should_stop):
                for j, cp in enumerate(checkpoints):
                    if q <= cp:
                        cos[si, j] = c
                        if g is not None:
                            gap[si, j], has_gap = g, True
                if on_point is not None:
                    on_point(name, seed, q, c, g)
            if should_stop is not None and should_stop():
                break
        out[name] = Curve(name, checkpoints, cos, gap if has_gap else None)
    return out


def gradient_methods() -> list[str]:
    """The registered query-only methods that estimate a gradient (what the lab can compare)."""
    return [n for n in list_explainers(white_box=False) if explainer_class(n).estimates_gradient]


def with_budget(method: str, params: dict, queries: int) -> dict:
    """Fill the method's budget parameter for a number of queries (``budget_param``: LR's n_samples, GEEX's
    n_masks, mirrored: queries / 2), at least its declared minimum."""
    params = dict(params)
    cls = explainer_class(method)
    if cls.budget_param is not None:
        name, per_unit = cls.budget_param
        spec = next(p for p in cls.param_specs if p.name == name)
        params.setdefault(name, max(int(spec.low or 1), int(queries) // per_unit))
    return params


def step_band(series: Sequence[Sequence[tuple[int, float]]], qgrid: Sequence[int]):
    """(mean, min, max) over runs of step functions given as (queries, value) points: at each q of ``qgrid``
    a run's value is its last point at or before q (NaN where no run has one yet)."""
    vals = np.full((max(1, len(series)), len(qgrid)), np.nan)
    for i, pts in enumerate(series):
        if not pts:
            continue
        q = np.array([p[0] for p in pts], float)
        v = np.array([np.nan if p[1] is None else p[1] for p in pts], float)
        idx = np.searchsorted(q, np.asarray(qgrid, float), side="right") - 1
        vals[i] = np.where(idx >= 0, v[np.clip(idx, 0, None)], np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(vals, 0), np.nanmin(vals, 0), np.nanmax(vals, 0)
