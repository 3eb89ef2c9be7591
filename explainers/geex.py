"""GEEX: gradient estimation from queries alone (the plain estimator ``GE`` of the reference code).

Yi Cai and Gerhard Wunder, "On Gradient-like Explanation under a Black-box Setting: When Black-box Explanations
Become as Good as White-box", ICML 2024 (arXiv 2308.09381); docs/methods.md section 2.1.

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

from .base import Explainer, Param, Readout, Step
from .estimators import GRADIENT_RSE, ScoreFunctionEstimator, central_difference
from .grid import NOISE_SPECS, BlockLayout
from .masks import gaussian_blur, gaussian_kernel1d
from .registry import register_explainer

PAIRS_PER_DRAW = 32   # noise is drawn in fixed chunks, so a seed gives the same map at any forward batch size


class _NoiseEstimator(Explainer):
    """Shared machinery of GEEX and iGEEX: mirrored, optionally smoothed, channel-shared Gaussian noise."""

    estimates_gradient = True
    budget_param = ("n_masks", 2)
    metric_specs = (GRADIENT_RSE,)
    common_specs = (
        Param("n_masks", "int", 5000, 1, 100_000, log=True, cpu_default=1000,
              help="Noise masks n*; each is queried mirrored (+/-), so queries = 2 x n_masks."),
        Param("sigma", "float", 0.7, 0.001, 3.0, log=True,
              help="Noise scale. contrast: relative change of a cell's content per unit of noise; additive: "
                   "noise std in the model's input units (the reference demo uses 0.3)."),
        *NOISE_SPECS,
        Param("smooth_sigma", "float", 0.0, 0.0, 20.0, step=0.1, unit="px",
              help="Gaussian smoothing of the noise on its grid (0 = off; the reference demo uses 0.7 at full "
                   "resolution): less variance, a spatially smoothed gradient."),
        Param("channel_noise", "choice", "shared", choices=("shared", "independent"),
              help="One noise map for all colour channels (as in the paper), or one per channel (full gradient)."),
    )
    # the settings under which Readout.gradient is the input gradient (the paper's GEEX; the convergence lab)
    gradient_options = {"perturbation": "additive", "noise_resolution": 0, "sigma": 0.3}

    def _layout(self, x: torch.Tensor) -> BlockLayout:
        return BlockLayout.of(x, 0, self.noise_resolution, self.channel_noise == "shared",
                              self.upsampling == "bilinear")

    def _noise(self, k: int, lay: BlockLayout, gen: torch.Generator) -> torch.Tensor:
        eps = torch.randn(k, lay.nc, lay.gh, lay.gw, generator=gen, device=gen.device)
        if self.smooth_sigma > 0:
            k1 = gaussian_kernel1d(self.smooth_sigma, device=eps.device)
            eps = gaussian_blur(eps, self.smooth_sigma) / (k1 ** 2).sum()   # unit-L2 kernel: variance kept
        return eps

    def _pairs(self, bb, x, target, lay, point, direction) -> Iterator[tuple[int, ScoreFunctionEstimator]]:
        """Yield (pairs so far, the running estimator) for noise on ``lay``; ``point(k, gen)`` gives the k path
        points (k, C, H, W); contrast noise is scaled by ``direction(points)`` (what "presence" means there)."""
        gen = self.generator(x.device)
        total = self.n_masks
        est = ScoreFunctionEstimator(self.sigma, lay.dim, device=x.device)
        draws_per_call = self.per_call(bb, x, per_item=2 * PAIRS_PER_DRAW, small_queries=0, large_batches=0)
        done = 0
        while done < total:
            eps_parts, centre_parts = [], []
            for _ in range(draws_per_call):
                k = min(PAIRS_PER_DRAW, total - done - sum(e.shape[0] for e in eps_parts))
                if k <= 0:
                    break
                eps_parts.append(self._noise(k, lay, gen))
                centre_parts.append(point(k, gen))                      # (k, C, H, W)
            eps, centre = torch.cat(eps_parts), torch.cat(centre_parts)
            k = eps.shape[0]
            dz = self.sigma * lay.upsample(eps)
            if self.perturbation == "contrast":
                dz = dz * direction(centre)
            y = bb(torch.cat([centre + dz, centre - dz]))[:, target]
            est.add(eps.reshape(k, -1), central_difference(y[:k], y[k:]))
            done += k
            yield done, est

    @staticmethod
    def _gradient(est: ScoreFunctionEstimator, lay: BlockLayout) -> torch.Tensor:
        """(C, H, W), or (1, H, W) with channel-shared noise (the gradient summed over the channels); a coarse
        grid's cell gradient is shown per pixel. Under contrast noise: the presence gradient."""
        return lay.to_image(est.gradient())


@register_explainer
class GEEX(_NoiseEstimator):
    name = "geex"
    title = "GEEX gradient estimate"
    paper = "Cai and Wunder, ICML 2024 (arXiv 2308.09381)"
    param_specs = _NoiseEstimator.common_specs
    version = 2     # contrast noise on a shared 10 x 10 grid by default

    def query_budget(self, input_shape) -> int:
        return 2 * self.n_masks

    def _iterate(self, bb, x, target):
        lay = self._layout(x)

        def readout() -> Readout:
            g = self._gradient(est, lay)
            metrics = {"gradient_rse": est.relative_standard_error()}
            if self.perturbation == "contrast":   # the cells whose content raises the score
                return Readout(g.sum(0).clamp_min(0), metrics)
            return Readout(g.abs().amax(0), metrics, gradient=g)

        for done, est in self._pairs(bb, x, target, lay, lambda k, gen: x.unsqueeze(0).expand(k, *x.shape),
                                     direction=lambda points: points):
            yield Step(queries=2 * done, progress=done / self.n_masks, readout=readout)
