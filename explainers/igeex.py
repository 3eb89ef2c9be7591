"""iGEEX: GEEX integrated along the straight path from a baseline to the input (called GEEX in the ICML version).

Yi Cai and Gerhard Wunder, ICML 2024 (arXiv 2308.09381); docs/methods.md section 2.2. For each mirrored
noise pair one alpha ~ U[0, 1] is drawn on the fly (so every prefix of the stream is unbiased), the pair is
queried around ``alpha x + (1 - alpha) x0``, and the running mean of the score-function estimates is a Monte Carlo
estimate of the path integral of the smoothed gradient. The attribution is that mean times ``(x - x0)``, summed
over channels into the map; with the exact scaling it sums to f(x) - f(x0) up to Monte Carlo and smoothing error
(completeness). The two end points are queried once each to report the completeness gap live.
Queries: 2 x n_masks + 2.
"""
from __future__ import annotations

import torch

from .estimators import GRADIENT_RSE
from .geex import _NoiseEstimator
from .base import Metric, Param, Readout, Step
from .masks import make_baseline
from .registry import register_explainer


@register_explainer
class IGEEX(_NoiseEstimator):
    name = "igeex"
    title = "iGEEX path-integrated gradient estimate"
    paper = "Cai and Wunder, ICML 2024 (arXiv 2308.09381)"
    param_specs = _NoiseEstimator.common_specs + (
        Param("baseline", "choice", "blur", choices=("blur", "zero"),
              help="The path's start: a Gaussian blur of the input (the reference default) or zeros of the "
                   "model's input space."),
    )

    metric_specs = (
        Metric("completeness_gap", "completeness gap relative to |f(x) - f(x0)|", "%", scale=100.0,
               help="|sum of the attribution - (f(x) - f(x0))| / |f(x) - f(x0)| (reported as a fraction): how "
                    "far the map is from accounting for the score change along the path."),
        Metric("attribution_sum", "sum of the attribution", "score",
               help="Should approach f(x) - f(x0), the score change from the baseline to the input."),
        GRADIENT_RSE,
    )
    version = 2     # contrast noise along x - x0 on a shared 10 x 10 grid by default

    def query_budget(self, input_shape) -> int:
        return 2 * self.n_masks + 2

    def _iterate(self, bb, x, target):
        x0 = make_baseline(x, self.baseline)
        ends = bb(torch.stack([x, x0]))[:, target]
        delta = float(ends[0] - ends[1])                     # f(x) - f(x0): what completeness asks for
        diff = x - x0
        lay = self._layout(x)

        def readout() -> Readout:
            g = self._gradient(est, lay)
            # additive noise estimates the gradient, to be multiplied by x - x0; contrast noise along x - x0
            # estimates gradient x (x - x0) per cell directly (its cells sum to the same integral)
            attribution = g * diff if self.perturbation == "additive" else g   # shared noise broadcasts
            total = float(attribution.sum())
            gap = abs(total - delta) / (abs(delta) + 1e-12)
            return Readout(attribution.sum(0), {"completeness_gap": gap, "attribution_sum": total,
                                               "gradient_rse": est.relative_standard_error()},
                           gradient=g if self.perturbation == "additive" else None,
                           extras={"attribution": attribution.detach().cpu(), "f_delta": delta})

        def point(k, gen):
            alpha = torch.rand(k, 1, 1, 1, generator=gen, device=x.device)
            return x0.unsqueeze(0) + alpha * diff.unsqueeze(0)

        for done, est in self._pairs(bb, x, target, lay, point, direction=lambda points: diff):
            yield Step(queries=2 + 2 * done, progress=done / self.n_masks, readout=readout)
