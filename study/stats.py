"""Statistics of study responses (numpy/scipy only).

- mean_ci: mean with a Student-t 95 % confidence interval.
- win_matrix / bradley_terry: pairwise preferences; Bradley-Terry strengths by the MM algorithm of
  Hunter (2004), "MM algorithms for generalized Bradley-Terry models", Ann. Statist. 32(1).
- krippendorff_alpha: Krippendorff (2011), "Computing Krippendorff's alpha-reliability" (coincidence matrix;
  nominal, ordinal, interval metrics).
- attention_failures: participants who rated an attention-check map high.
"""
from __future__ import annotations

from typing import Hashable, Iterable, Sequence

import numpy as np
from scipy import stats as _st


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float, int]:
    """(mean, low, high, n) with the t-interval mean +- t_{(1+level)/2, n-1} s / sqrt(n); nan bounds if n < 2."""
    v = np.asarray(list(values), dtype=float)
    n = v.size
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    m = float(v.mean())
    if n < 2:
        return m, float("nan"), float("nan"), 1
    half = float(_st.t.ppf((1 + level) / 2, n - 1) * v.std(ddof=1) / np.sqrt(n))
    return m, m - half, m + half, n


def win_matrix(pairs: Iterable[tuple[Hashable, Hashable]], items: Sequence[Hashable] | None = None
               ) -> tuple[list, np.ndarray]:
    """(items, W) from (winner, loser) pairs; W[i, j] = number of times item i beat item j."""
    pairs = list(pairs)
    if items is None:
        items = sorted({x for p in pairs for x in p}, key=str)
    index = {x: i for i, x in enumerate(items)}
    w = np.zeros((len(items), len(items)))
    for a, b in pairs:
        if a == b:
            raise ValueError(f"A pair needs two different items, got {a!r} twice.")
        w[index[a], index[b]] += 1
    return list(items), w


def bradley_terry(w: np.ndarray, iters: int = 10_000, tol: float = 1e-10) -> np.ndarray:
    """Bradley-Terry strengths p (sum 1), P(i beats j) = p_i / (p_i + p_j), by Hunter's MM update
    p_i <- W_i / sum_j n_ij / (p_i + p_j). Items that never won get 0 (the MLE is at the boundary)."""
    w = np.asarray(w, dtype=float)
    k = w.shape[0]
    if w.shape != (k, k) or (w < 0).any():
        raise ValueError("The win matrix must be square and non-negative.")
    n = w + w.T
    wins = w.sum(axis=1)
    p = np.full(k, 1.0 / max(k, 1))
    for _ in range(iters):
        denom = (n / (p[:, None] + p[None, :] + 1e-300)).sum(axis=1)
        new = np.where(denom > 0, wins / np.where(denom > 0, denom, 1), p)
        new = new / new.sum() if new.sum() > 0 else p
        if np.abs(new - p).max() < tol:
            p = new
            break
        p = new
    return p


def _delta2(values: np.ndarray, n_c: np.ndarray, level: str) -> np.ndarray:
    if level == "nominal":
        return (values[:, None] != values[None, :]).astype(float)
    if level == "interval":
        return (values[:, None] - values[None, :]) ** 2
    if level == "ordinal":
        # delta^2_ck = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2  (Krippendorff 2011, section E)
        cum = np.concatenate([[0.0], np.cumsum(n_c)])
        i, j = np.meshgrid(np.arange(len(n_c)), np.arange(len(n_c)), indexing="ij")
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        return (cum[hi + 1] - cum[lo] - (n_c[i] + n_c[j]) / 2) ** 2
    raise ValueError(f"Unknown level of measurement {level!r} (nominal, ordinal, interval).")


def krippendorff_alpha(data: np.ndarray, level: str = "ordinal") -> float:
    """Krippendorff's alpha of a (raters, units) array with np.nan for missing ratings.

    alpha = 1 - (n - 1) * sum o_ck d2_ck / sum n_c n_k d2_ck over the coincidence matrix o of pairable values.
    nan when there is no variation or fewer than 2 pairable values."""
    d = np.asarray(data, dtype=float)
    if d.ndim != 2:
        raise ValueError("Reliability data must be a (raters, units) array.")
    values = np.unique(d[~np.isnan(d)])
    index = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for unit in d.T:
        u = unit[~np.isnan(unit)]
        m = u.size
        if m < 2:
            continue
        counts = np.zeros(len(values))
        for v in u:
            counts[index[v]] += 1
        # ordered pairs of values from different raters, each unit weighted 1 / (m - 1)
        o += (np.outer(counts, counts) - np.diag(counts)) / (m - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    if n < 2 or len(values) < 2:
        return float("nan")
    d2 = _delta2(values, n_c, level)
    expected = (np.outer(n_c, n_c) * d2).sum()
    if expected == 0:
        return float("nan")
    return float(1 - (n - 1) * (o * d2).sum() / expected)


def attention_failures(ratings: Iterable[tuple[Hashable, int]], max_ok: int = 2) -> dict:
    """{participant: number of attention-check ratings above `max_ok`} for participants who failed any."""
    failed: dict = {}
    for participant, rating in ratings:
        if rating > max_ok:
            failed[participant] = failed.get(participant, 0) + 1
    return failed
