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

    def add(self, eps: torch.Tensor, coef: torch.Tensor, groups: torch.Tensor | None = None) -> None:
        """Accumulate k draws ``eps`` (k, dim) with their coefficients (k,); ``groups`` (k,) names each draw's
        group (needed when there are several)."""
        n, k = self.sum.shape[0], eps.shape[0]
        if n == 1:
            self.sum[0].addmv_(eps.t(), coef)
            self.count += k
            return
        # one GEMM: (groups, k) one-hot rows weighted by coef, times the draws
        onehot = torch.zeros(n, k, device=eps.device, dtype=eps.dtype)
        onehot[groups, torch.arange(k, device=eps.device)] = coef
        self.sum.addmm_(onehot, eps)
        self.count += torch.bincount(groups, minlength=n).to(self.count.dtype)

    def add_rounds(self, eps: torch.Tensor, coef: torch.Tensor) -> None:
        """Accumulate whole rounds: ``eps`` (r, groups, dim), ``coef`` (r, groups), one draw per group and round
        (the lab's toy: every grid point gets a draw in every round)."""
        self.sum += torch.einsum("rg,rgd->gd", coef, eps)
        self.count += eps.shape[0]

    def gradient(self) -> torch.Tensor:
        """(groups, dim): mean(coef * eps) / sigma = E[coef * z] / sigma^2 (zero for a group with no draws)."""
        return self.sum / (self.count.clamp_min(1)[:, None] * self.sigma)
