"""Sobol attribution: total-order Sobol indices of grid masks from a quasi-Monte Carlo design.

Fel, Cadène, Chalvidal, Cord, Vigouroux, Serre. "Look at the Variance! Efficient Black-box Explanations with
Sobol-based Sensitivity Analysis", NeurIPS 2021 (docs/methods.md section 5).

Masks are continuous values on an s x s grid, drawn from an unscrambled Sobol' sequence of dimension 2d
(A = first d columns, B = last d). Design n evaluates A_n and the d "radial" masks C_{i,n} (A_n with cell i
taken from B_n), so the Jansen estimator

    ST_i = sum_n (f(A_n) - f(C_{i,n}))^2 / (2 N Var(f(A)))

can be read after any n >= 2 designs. N starts at 4: the first two unscrambled points (all 0, all 1/2) have
A = B, so N = 2 gave an all-zero map. B's own outputs are never used by Jansen, so they are not queried:
queries = nb_design * (grid_size^2 + 1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Explainer, Metric, Param, Readout, Step
from .masks import blend, make_baseline, upsample
from .registry import register_explainer


@register_explainer
class Sobol(Explainer):
    name = "sobol"
    title = "Sobol attribution"
    paper = "Fel et al., NeurIPS 2021"
    param_specs = (
        Param("grid_size", "int", 8, 2, 16, help="Cells per side of the mask grid (d = grid_size^2 inputs).",
              unit="cells", cpu_default=6),
        Param("nb_design", "int", 32, 4, 1024, power_of_two=True,
              help="Quasi-Monte Carlo designs N (a power of two, at least 4: the unscrambled sequence's first two "
                   "points give A = B in every cell); queries = N x (grid_size^2 + 1).",
              cpu_default=16),
        Param("perturbation", "choice", "inpaint", choices=("inpaint", "blur"),
              help="What a masked-out cell becomes: zeros in the model's input space (inpaint) or a blur."),
        Param("scramble", "bool", False, help="Owen-scrambled Sobol' sequence (randomised by the seed)."),
    )

    metric_specs = (
        Metric("output_variance", "variance of the score over the random masks", "score²",
               help="Var f(A_n) over the designs so far: the denominator of every index (near 0, the masks "
                    "barely move the score and the map is noise)."),
        Metric("max_total_index", "largest total-order index", "% of the score variance", scale=100.0,
               help="The share of the score's variance that the most important cell takes part in (alone or "
                    "with others)."),
    )

    def query_budget(self, input_shape) -> int:
        return self.nb_design * (self.grid_size ** 2 + 1)

    def designs(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """A (N, d) and B (N, d), on ``device``."""
        d = self.grid_size ** 2
        eng = torch.quasirandom.SobolEngine(2 * d, scramble=self.scramble, seed=self.seed if self.scramble else None)
        pts = eng.draw(self.nb_design, dtype=torch.float32).to(device)
        return pts[:, :d], pts[:, d:]

    def _iterate(self, bb, x, target):
        s, d, n_total = self.grid_size, self.grid_size ** 2, self.nb_design
        h, w = x.shape[-2:]
        dev = x.device
        A, B = self.designs(dev)
        baseline = make_baseline(x, "zero" if self.perturbation == "inpaint" else "blur")
        y = torch.empty(n_total, d + 1, device=dev)      # row n: f(A_n), f(C_{1,n}) .. f(C_{d,n})
        y_a = y[:, 0]
        sq_diff = torch.zeros(d, device=dev)
        total = n_total * (d + 1)
        # calls need not end on a design: a design's Jansen terms are added once all its queries are back
        per_call = self.per_call(bb, x, min_batches=1)
        cols = torch.arange(d, device=dev)
        served = done = 0

        def readout():
            n = done
            if n < 2:
                st = torch.zeros(d, device=dev)
            else:
                var = y_a[:n].var(unbiased=True)
                st = sq_diff / (2 * n * (var + 1e-12))
            grid = st.view(1, 1, s, s)
            sal = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)[0, 0]
            return Readout(sal, {"output_variance": float(y_a[:n].var()) if n >= 2 else 0.0,
                                 "max_total_index": float(st.max())},
                           extras={"grid": st.view(s, s)})

        while served < total:
            k = min(per_call, total - served)
            q = torch.arange(served, served + k, device=dev)
            n_idx, j = q // (d + 1), q % (d + 1)                  # design, then 0 = A_n or cell j-1 from B_n
            masks = torch.where(cols[None, :] == (j - 1)[:, None], B[n_idx], A[n_idx])   # (k, d)
            batch = blend(x, baseline, upsample(masks.view(k, 1, s, s), (h, w), "nearest"))
            y.view(-1)[served:served + k] = bb(batch)[:, target]
            served += k
            complete = served // (d + 1)
            if complete > done:
                yc = y[done:complete]
                sq_diff += ((yc[:, :1] - yc[:, 1:]) ** 2).sum(0)
                done = complete
            yield Step(queries=served, progress=served / total, readout=readout)
