"""The score-function (likelihood-ratio) gradient estimator shared by LR, GEEX / iGEEX and the lab's toy.

For Gaussian noise z = sigma * eps, eps ~ N(0, I), the score function is z / sigma^2, so

    g = E[(f(x + z) - b) z] / sigma^2 = E[coef * eps] / sigma

is the gradient of the Gaussian-smoothed f for any constant b. A mirrored pair (z, -z) gives the central
difference coef = (f(x + z) - f(x - z)) / 2, in which b cancels; an unpaired draw takes coef = f(x + z) - b,
with b = f(x) as the control variate (or 0). The estimate is a running mean over draws, kept per group (LR's
blocks, the lab's grid points: each draw perturbs one group), and can be read out after any batch: every
prefix of the stream is unbiased.
"""
from __future__ import annotations

import torch

from .base import Metric

# the diagnostic every method built on this estimator reports (relative_standard_error below)
GRADIENT_RSE = Metric("gradient_rse", "relative standard error of the gradient estimate", "%", scale=100.0,
                      help="|standard error of the mean over the noise draws| / |mean|: how much the estimate "
                           "would still move with more queries. Falls like 1/sqrt(queries).")


def central_difference(y_plus: torch.Tensor, y_minus: torch.Tensor) -> torch.Tensor:
    """Coefficients of mirrored pairs: (f(x + z) - f(x - z)) / 2."""
    return (y_plus - y_minus) * 0.5


def control_variate(y: torch.Tensor, baseline: torch.Tensor | float) -> torch.Tensor:
    """Coefficients of unpaired draws: f(x + z) - b."""
    return y - baseline


class ScoreFunctionEstimator:
    """Running mean of coef * eps per group, read out as the gradient of the Gaussian-smoothed score.

    ``groups`` groups of ``dim`` noise dimensions each; a draw belongs to one group (``groups=1``: every draw
    perturbs the whole input).
    """

    def __init__(self, sigma: float, dim: int, groups: int = 1, device=None, dtype=torch.float32):
        self.sigma = float(sigma)
        self.sum = torch.zeros(groups, dim, device=device, dtype=dtype)   # sum of coef * eps per group
        self.count = torch.zeros(groups, device=device, dtype=dtype)      # draws per group
        # sum of |coef * eps|^2 per group (float64: the error is a difference of two such sums), for the
        # standard error of the mean; one dot product per draw, the estimate itself never reads it
        self.sumsq = torch.zeros(groups, device=device, dtype=torch.float64)

    def add(self, eps: torch.Tensor, coef: torch.Tensor, groups: torch.Tensor | None = None) -> None:
        """Accumulate k draws ``eps`` (k, dim) with their coefficients (k,); ``groups`` (k,) names each draw's
        group (needed when there are several)."""
        n, k = self.sum.shape[0], eps.shape[0]
        sq = coef.double() ** 2 * torch.einsum("kd,kd->k", eps, eps).double()
        if n == 1:
            self.sum[0].addmv_(eps.t(), coef)
            self.count += k
            self.sumsq += sq.sum()
            return
        # one GEMM: (groups, k) one-hot rows weighted by coef, times the draws
        onehot = torch.zeros(n, k, device=eps.device, dtype=eps.dtype)
        onehot[groups, torch.arange(k, device=eps.device)] = coef
        self.sum.addmm_(onehot, eps)
        self.count += torch.bincount(groups, minlength=n).to(self.count.dtype)
        self.sumsq.index_add_(0, groups, sq)

    def add_rounds(self, eps: torch.Tensor, coef: torch.Tensor) -> None:
        """Accumulate whole rounds: ``eps`` (r, groups, dim), ``coef`` (r, groups), one draw per group and round
        (the lab's toy: every grid point gets a draw in every round)."""
        self.sum += torch.einsum("rg,rgd->gd", coef, eps)
        self.count += eps.shape[0]
        self.sumsq += (coef.double() ** 2 * torch.einsum("rgd,rgd->rg", eps, eps).double()).sum(0)

    def gradient(self) -> torch.Tensor:
        """(groups, dim): mean(coef * eps) / sigma = E[coef * z] / sigma^2 (zero for a group with no draws)."""
        return self.sum / (self.count.clamp_min(1)[:, None] * self.sigma)

    def relative_standard_error(self) -> float:
        """|standard error of the mean| / |mean| of the whole estimate (all groups), as a fraction: how far the
        estimate is from its limit, read from the spread of the draws. The standard error is that of independent
        draws (orthogonal draws are less variable, so for them it is an upper bound); it falls like
        1/sqrt(draws). NaN until some group has two draws, or while the mean is zero."""
        n = self.count.double()
        ok = n >= 2
        if not bool(ok.any()):
            return float("nan")
        mean = self.sum.double()[ok] / n[ok, None]                  # sigma cancels in the ratio
        mean_sq = (mean * mean).sum(1)
        var_of_mean = ((self.sumsq[ok] / n[ok] - mean_sq).clamp_min(0) / (n[ok] - 1)).sum()
        total = mean_sq.sum()
        return float(var_of_mean.sqrt() / total.sqrt()) if float(total) > 0 else float("nan")
