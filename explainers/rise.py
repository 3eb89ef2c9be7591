"""RISE: randomized input sampling for explanation.

Petsiuk, Das, Saenko. "RISE: Randomized Input Sampling for Explanation of Black-box Models", BMVC 2018
(docs/methods.md section 6.1).

N binary s x s grids with P(cell kept) = p1, bilinearly upsampled to (s+1) * cell and cropped to H x W at a
random offset in [0, cell) per axis (smooth masks, shifted by less than a cell). The map is the Monte Carlo
estimate of E[f_c(x . M) M] / p1:

    S = sum_k f_c(x . M_k + x0 . (1 - M_k)) M_k / (N p1)

kept as a running sum and read out as S * N / n after n masks, so every prefix is an unbiased estimate.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Explainer, Metric, Param, Readout, Step
from .masks import BASELINES, blend, make_baseline
from .registry import register_explainer


@register_explainer
class Rise(Explainer):
    name = "rise"
    title = "RISE"
    paper = "Petsiuk et al., BMVC 2018"
    modalities = ("image", "audio")
    param_specs = (
        Param("n_masks", "int", 4000, 2, 50_000, log=True, cpu_default=2000, unit="queries",
              help="Random masks N (one query each)."),
        Param("grid_size", "int", 7, 2, 32, unit="cells", help="Cells per side of the random binary grid."),
        Param("p1", "float", 0.5, 0.05, 0.95, help="Probability that a grid cell keeps the input."),
        Param("baseline", "choice", "zero", choices=BASELINES,
              help="What masked pixels become: zeros of the input space (the mean colour for models "
                   "normalised with the dataset mean), a blur of the input, or its mean colour."),
    )

    metric_specs = (
        Metric("map_rse", "relative standard error of the map", "%", scale=100.0,
               help="|per-pixel standard error of the mean over the masks| / |the map's spread around its "
                    "mean|: how much the map's pattern would still move with more masks. Falls like "
                    "1/sqrt(queries)."),
    )

    def query_budget(self, input_shape) -> int:
        return self.n_masks

    @staticmethod
    def _rse(s_sum: torch.Tensor, sq_sum: torch.Tensor, n: int) -> float:
        """|standard error| / |map - its mean| over the pixels, as a fraction (1/p1 cancels); NaN below 2 masks."""
        if n < 2:
            return float("nan")
        mean = s_sum.double() / n
        var_of_mean = ((sq_sum.double() / n - mean * mean).clamp_min(0) / (n - 1)).sum()
        spread = ((mean - mean.mean()) ** 2).sum()
        return float(var_of_mean.sqrt() / spread.sqrt()) if float(spread) > 0 else float("nan")

    def draws(self, n: int, h: int, w: int, gen: torch.Generator, device):
        """All random draws up front (binary grids and shifts: a few bytes per mask), so the masks, and the map,
        do not depend on how many inputs each forward call takes (the batch size is measured per machine)."""
        s = self.grid_size
        ch, cw = math.ceil(h / s), math.ceil(w / s)
        grid = (torch.rand(n, 1, s, s, generator=gen, device=device) < self.p1).float()
        dy = torch.randint(0, ch, (n,), generator=gen, device=device)
        dx = torch.randint(0, cw, (n,), generator=gen, device=device)
        return grid, dy, dx

    def masks(self, grid: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(k, 1, H, W) smooth masks in [0, 1] from k grids and shifts, made on their device."""
        s, k, device = self.grid_size, grid.shape[0], grid.device
        ch, cw = math.ceil(h / s), math.ceil(w / s)
        up = F.interpolate(grid, size=((s + 1) * ch, (s + 1) * cw), mode="bilinear", align_corners=False)
        # per-mask crop as one gather over the flattened upsampled grid: rows dy..dy+h, cols dx..dx+w
        wu = up.shape[-1]
        base = (torch.arange(h, device=device)[:, None] * wu + torch.arange(w, device=device)[None, :]).view(1, -1)
        idx = base + (dy * wu + dx)[:, None]                                     # (k, h * w)
        out = up.view(k, -1).gather(1, idx).view(k, h, w)
        return out.unsqueeze(1)

    def _iterate(self, bb, x, target):
        n_total = self.n_masks
        h, w = x.shape[-2:]
        dev = x.device
        grid, dy, dx = self.draws(n_total, h, w, self.generator(dev), dev)
        baseline = make_baseline(x, self.baseline)
        s_sum = torch.zeros(h, w, device=dev)
        sq_sum = torch.zeros(h, w, device=dev)      # sum of (f M)^2 per pixel: the map's standard error
        per_call = self.per_call(bb, x)
        done = 0

        def readout():
            return Readout(s_sum / (max(done, 1) * self.p1), {"map_rse": self._rse(s_sum, sq_sum, done)})

        while done < n_total:
            k = min(per_call, n_total - done)
            m = self.masks(grid[done:done + k], dy[done:done + k], dx[done:done + k], h, w)
            y = bb(blend(x, baseline, m))[:, target]
            s_sum += torch.einsum("k,khw->hw", y, m[:, 0])
            sq_sum += torch.einsum("k,khw->hw", y * y, m[:, 0] * m[:, 0])
            done += k
            yield Step(queries=done, progress=done / n_total, readout=readout)
