"""GEEX: gradient estimation from queries alone (the plain estimator ``GE`` of the reference code).

Yi Cai and Gerhard Wunder, "On Gradient-like Explanation under a Black-box Setting: When Black-box Explanations
Become as Good as White-box", ICML 2024 (arXiv 2308.09381); research/algorithms.md section 2.

Queries ``z = x + sigma * eps`` with ``eps`` standard normal noise of shape (1, H, W), shared by the colour
channels (``channel_noise="independent"`` draws it per channel), optionally smoothed by a Gaussian filter scaled
to unit L2 norm (per-pixel variance stays 1). Mirrored pairs give the central-difference score-function estimate

    g = mean over pairs of (f(x + sigma eps) - f(x - sigma eps)) * eps / (2 sigma)

which is unbiased for the gradient of the Gaussian-smoothed score along the noise directions: with shared noise,
the sum of the gradient over the channels of a pixel; with smoothed noise, a spatially smoothed gradient.
The scaling is exact: the reference code halves its masks (noise std sigma/2) but divides by sigma^2, a constant
1/(4 sigma) error that this implementation does not repeat. Queries: 2 x n_masks.
"""
from __future__ import annotations

from typing import Iterator

import torch

from .base import Explainer, Param, Step
from .masks import gaussian_blur, gaussian_kernel1d
from .registry import register_explainer

PAIRS_PER_DRAW = 32   # noise is drawn in fixed chunks, so a seed gives the same map at any forward batch size


class _NoiseEstimator(Explainer):
    """Shared machinery of GEEX and iGEEX: mirrored, optionally smoothed, channel-shared Gaussian noise."""

    params_common = (
        Param("n_masks", "int", 5000, 1, 100_000, log=True, cpu_default=1000,
              help="Noise masks n*; each is queried mirrored (+/-), so queries = 2 x n_masks."),
        Param("sigma", "float", 0.3, 0.001, 3.0, log=True,
              help="Noise standard deviation in the model's input space (the reference demo uses 0.3)."),
        Param("smooth_sigma", "float", 0.0, 0.0, 20.0, step=0.1, unit="px",
              help="Gaussian smoothing of the noise (0 = off; the reference demo uses 0.7): less variance, a "
                   "spatially smoothed gradient."),
        Param("channel_noise", "choice", "shared", choices=("shared", "independent"),
              help="One noise map for all colour channels (as in the paper), or one per channel (full gradient)."),
    )

    def _noise(self, k: int, shape, gen: torch.Generator) -> torch.Tensor:
        c, h, w = shape
        nc = 1 if self.channel_noise == "shared" else c
        eps = torch.randn(k, nc, h, w, generator=gen, device=gen.device)
        if self.smooth_sigma > 0:
            k1 = gaussian_kernel1d(self.smooth_sigma, device=eps.device)
            eps = gaussian_blur(eps, self.smooth_sigma) / (k1 ** 2).sum()   # unit-L2 kernel: variance kept
        return eps

    def _pairs(self, bb, x, target, point) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (pairs so far, running sum of coef * eps) ; ``point(k, gen)`` gives the k path points."""
        gen = self.generator(x.device)
        total = self.n_masks
        s_sum = torch.zeros(1 if self.channel_noise == "shared" else x.shape[0], *x.shape[1:], device=x.device)
        done = 0
        # several fixed-size draws per forward call on small inputs (the model's time is tiny there)
        draws_per_call = max(1, (bb.batch_size * 4) // (2 * PAIRS_PER_DRAW)) if x[0].numel() <= 64 * 64 else 1
        while done < total:
            eps_parts, centre_parts = [], []
            for _ in range(draws_per_call):
                k = min(PAIRS_PER_DRAW, total - done - sum(e.shape[0] for e in eps_parts))
                if k <= 0:
                    break
                eps_parts.append(self._noise(k, x.shape, gen))
                centre_parts.append(point(k, gen))                      # (k, C, H, W)
            eps, centre = torch.cat(eps_parts), torch.cat(centre_parts)
            k = eps.shape[0]
            dz = self.sigma * eps
            y = bb(torch.cat([centre + dz, centre - dz]))[:, target]
            coef = (y[:k] - y[k:]) / (2 * self.sigma)
            s_sum += torch.einsum("k,kchw->chw", coef, eps)
            done += k
            yield done, s_sum


@register_explainer
class GEEX(_NoiseEstimator):
    name = "geex"
    title = "GEEX gradient estimate"
    paper = "Cai and Wunder, ICML 2024 (arXiv 2308.09381)"
    params = _NoiseEstimator.params_common

    def query_budget(self, input_shape) -> int:
        return 2 * self.n_masks

    def _iterate(self, bb, x, target):
        state = {"done": 0, "sum": None}

        def readout():
            g = state["sum"] / max(state["done"], 1)
            return g.abs().amax(0), {}, {"gradient": g.detach().cpu()}

        for done, s_sum in self._pairs(bb, x, target, lambda k, gen: x.unsqueeze(0).expand(k, *x.shape)):
            state.update(done=done, sum=s_sum)
            yield Step(queries=2 * done, progress=done / self.n_masks, readout=readout)
