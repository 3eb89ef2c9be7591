"""DE-CAM-style saliency: differential evolution searches for the mask that keeps the decision.

Karatsiolis and Kamilaris, "A Model-Agnostic Approach for Generating Saliency Maps to Explain Inferred
Decisions of Deep Learning Models", VISAPP 2023 (arXiv 2209.08906). The paper's encoding and fitness were not
retrievable and no code exists; this follows the reconstruction of docs/methods.md section 3:

- genome: a real-valued mask m in [0,1]^D, one gene per cell of a ``grid_size`` x ``grid_size`` grid
  (bilinear upsampling) or per superpixel (SLIC / quickshift, hard edges);
- decoding: x_m = x * m + (1 - m) * x0, with x0 a blur, zeros of the input space, or the mean colour;
- fitness (maximised): s(x_m) - lam * mean(m) [- mu * s(x_(1-m)), the optional deletion term], where s is
  the share of the decision a masked input keeps, (f_c(x_m) - f_c(x0)) / (f_c(x) - f_c(x0)) (``score =
  relative``, two more queries: x and x0), or the raw score f_c (``score = raw``). The raw score makes lambda
  mean different things for different images and score spaces: a probability of 0.05 (a class ranked fifth)
  against lam x area of 0.15 makes the empty mask the fittest, and the search ignores the model;
- DE/rand/1/bin (Storn and Price 1997): v = m_r1 + F (m_r2 - m_r3), binomial crossover with rate CR and
  one forced gene, clip to [0,1], greedy selection (a trial replaces its parent if it is at least as fit);
- map (lightly smoothed): by default each gene's effect on the decision, a least-squares fit over every mask
  the search evaluated (its positive part); or the best individual, or the fitness-weighted mean of the final
  population. With about 2,000 queries DE/rand/1 does not converge in 49 dimensions: a gene the model ignores
  keeps its random start in the best individual, and the best mask is noise away from the object (docs/
  methods.md section 3); the fit reads the same queries for the effect of every gene.

Queries: population x (generations + 1), doubled with the deletion term (x_m and x_(1-m) per individual),
plus 2 with the relative score.
That is the exact count when ``patience`` is 0 (the default, early stop off); with ``patience`` > 0 it is
the maximum, and each Estimate's ``queries`` says how many were used.
"""
from __future__ import annotations

from functools import partial

import torch

from maps import normalise

from .base import Explainer, Metric, Param, Readout, Step
from .masks import blend, gaussian_blur, make_baseline, upsample
from .registry import register_explainer
from .segments import paint, segment


class _Effects:
    """Least squares of the decision kept on the genes, over every mask the search evaluated: decision ~ b0 +
    sum_g b_g m_g. Running sums of [1, m] [1, m]^T and [1, m] y, so a readout is one small solve. The search
    spends most of its queries near good masks, so the fit is sharpest where the decision is made."""

    def __init__(self, dim: int, device):
        self.gram = torch.zeros(dim + 1, dim + 1, dtype=torch.float64, device=device)
        self.moment = torch.zeros(dim + 1, dtype=torch.float64, device=device)

    def add(self, genes: torch.Tensor, y: torch.Tensor) -> None:
        a = torch.cat([torch.ones_like(genes[:, :1]), genes], 1).double()
        self.gram += a.t() @ a
        self.moment += a.t() @ y.double()

    def solve(self) -> torch.Tensor:
        """(D,) gene effects; a small ridge (1e-3 of the mean diagonal) keeps an early, underdetermined fit finite."""
        ridge = 1e-3 * float(self.gram.diagonal().mean()) + 1e-12
        eye = torch.eye(len(self.moment), dtype=self.gram.dtype, device=self.gram.device)
        eye[0, 0] = 0.0                                              # the intercept is not shrunk
        coef = torch.linalg.solve(self.gram + ridge * eye, self.moment)
        return coef[1:].float()


@register_explainer
class DECAM(Explainer):
    name = "decam"
    title = "DE-CAM (differential evolution)"
    paper = "Karatsiolis and Kamilaris, VISAPP 2023 (arXiv 2209.08906); DE-CAM-style reconstruction"
    version = 2     # relative score and the regression map by default
    metric_specs = (
        Metric("best_fitness", "best", "fitness",
               help="The fittest mask's fitness: the score the kept input holds (score = relative: its share of "
                    "the decision, 1 at x and 0 at the baseline; raw: the model's score) - lambda x mask area "
                    "(- mu x that of the removed part). Never falls (greedy selection)."),
        Metric("mean_fitness", "population mean", "fitness",
               help="The population's mean fitness: approaches the best as the search converges."),
        Metric("diversity", "population diversity", "gene std",
               help="Standard deviation of each gene (a mask value in [0, 1]) over the population, averaged: "
                    "near 0, the search has converged."),
    )
    param_specs = (
        Param("grid_size", "int", 10, 2, 32, unit="cells", cpu_default=7,
              help="Cells per side of the mask grid; the genome has grid_size^2 genes (grid genome only)."),
        Param("upsampling", "choice", "bilinear", choices=("bilinear", "nearest"),
              help="How grid genes become a pixel mask: smooth (bilinear) or sharp cells (nearest)."),
        Param("population", "int", 40, 4, 512, cpu_default=24,
              help="Individuals per generation (NP); one generation is one batch of NP queries."),
        Param("generations", "int", 100, 1, 2000, cpu_default=80,
              help="DE generations G; queries = NP x (G + 1) (x2 with the deletion term)."),
        Param("F", "float", 0.6, 0.0, 2.0, step=0.05, label="F (differential weight)",
              help="Mutation scale: v = m_r1 + F (m_r2 - m_r3)."),
        Param("CR", "float", 0.8, 0.0, 1.0, step=0.05, label="CR (crossover rate)",
              help="Probability that a gene comes from the mutant (one gene always does)."),
        Param("lam", "float", 0.3, 0.0, 5.0, step=0.05, label="lambda (area weight)",
              help="Fitness = score of the kept input - lambda x mean mask area: larger gives smaller masks."),
        Param("score", "choice", "relative", choices=("relative", "raw"),
              help="Fitness score: the share of the decision the kept input holds, (f(x_m) - f(x0)) / "
                   "(f(x) - f(x0)) (2 more queries), so lambda means the same for every image; or the raw "
                   "target score."),
        Param("deletion_weight", "float", 0.0, 0.0, 5.0, step=0.05, label="mu (deletion term)",
              help="If > 0, fitness also subtracts mu x the score of the removed part (doubles the queries)."),
        Param("baseline", "choice", "blur", choices=("blur", "zero", "mean"),
              help="What a masked-out pixel becomes: a Gaussian blur of the input, zeros of the model's "
                   "input space (the dataset-mean colour), or the input's own mean colour."),
        Param("genome", "choice", "grid", choices=("grid", "slic", "quickshift"),
              help="One gene per grid cell, or per superpixel (scikit-image SLIC / quickshift)."),
        Param("n_segments", "int", 60, 4, 400, unit="segments",
              help="Approximate number of superpixels (superpixel genomes only)."),
        Param("map_from", "choice", "regression", choices=("regression", "best", "population_mean"), label="map",
              help="regression: each gene's effect on the decision kept, fitted by least squares over every mask "
                   "the search evaluated; best: the fittest mask; population_mean: the fitness-weighted mean "
                   "of the final population."),
        Param("smooth", "float", 1.0, 0.0, 10.0, step=0.5, unit="px at 224",
              help="Gaussian smoothing of the map (sigma in pixels for a 224-pixel side, scaled with size)."),
        Param("patience", "int", 0, 0, 1000, unit="generations",
              help="Stop after this many generations without improvement of the best fitness (0 = off)."),
    )

    def _check(self) -> None:
        if self.population < 4:
            raise ValueError("decam: population must be at least 4 (DE/rand/1 needs three other individuals)")

    @property
    def _queries_per_individual(self) -> int:
        return 2 if self.deletion_weight > 0 else 1

    def query_budget(self, input_shape) -> int:
        """Maximum (exact when patience is 0): population x (generations + 1), x2 with the deletion term, + 2
        with the relative score."""
        return self.population * (self.generations + 1) * self._queries_per_individual + self._reference_queries

    @property
    def _reference_queries(self) -> int:
        return 2 if self.score == "relative" else 0

    # --------------------------------------------------------------------------------- decoding
    def _decoder(self, x: torch.Tensor, modality: str):
        h, w = x.shape[-2:]
        if self.genome == "grid":
            g = self.grid_size
            return g * g, (lambda genes: upsample(genes.view(-1, 1, g, g), (h, w), self.upsampling))
        method = self.genome if modality == "image" else "grid"   # spectrograms: time-frequency patches
        labels = segment(x, method, self.n_segments, modality)
        k = int(labels.max()) + 1
        return k, (lambda genes: paint(genes, labels).unsqueeze(1))

    def _map(self, masks: torch.Tensor) -> torch.Tensor:
        """(H, W) map from one decoded mask (1, 1, H, W): smoothed, in [0, 1]."""
        sigma = self.smooth * max(masks.shape[-2:]) / 224.0
        m = gaussian_blur(masks[0], sigma)[0] if sigma > 0 else masks[0, 0]
        return normalise(m)

    # --------------------------------------------------------------------------------- search
    def _fitness(self, bb, x: torch.Tensor, target: int, decode, baseline: torch.Tensor):
        """genes (N, D) -> fitness (N,), the score of the kept input minus lam x area (minus mu x the score of
        the removed part), and that fitness's model part (without the area); one query per individual, two with
        the deletion term."""
        shift, scale = 0.0, 1.0
        if self.score == "relative":   # share of the decision kept: 1 at x, 0 at the baseline
            ends = bb(torch.stack([x, baseline]))[:, target]
            shift, gap = float(ends[1]), float(ends[0] - ends[1])
            scale = 1.0 / gap if abs(gap) > 1e-12 else 1.0   # no gap: nothing to keep, raw differences

        def fitness(genes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            masks = decode(genes)                                      # (N, 1, H, W)
            kept = blend(x, baseline, masks)
            if self._queries_per_individual == 2:
                removed = blend(x, baseline, 1.0 - masks)
                scores = bb(torch.cat([kept, removed]))[:, target]
                keep, drop = scores[:len(genes)], scores[len(genes):]
                drop = (drop - shift) * scale
            else:
                keep, drop = bb(kept)[:, target], 0.0
            keep = (keep - shift) * scale
            decision = keep - self.deletion_weight * drop                # what the model says of the mask
            return decision - self.lam * masks.mean(dim=(1, 2, 3)), decision
        return fitness

    def _trial(self, pop: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """DE/rand/1/bin: mutants v = m_r1 + F (m_r2 - m_r3), binomial crossover with one forced gene, clipped."""
        n, dim = pop.shape
        rows = torch.arange(n, device=pop.device)
        # r1, r2, r3: distinct and different from i (the three smallest random keys, self excluded)
        keys = torch.rand(n, n, generator=gen, device=pop.device)
        keys[rows, rows] = 2.0
        r = keys.argsort(dim=1)[:, :3]
        mutant = pop[r[:, 0]] + self.F * (pop[r[:, 1]] - pop[r[:, 2]])
        cross = torch.rand(n, dim, generator=gen, device=pop.device) < self.CR
        j_rand = torch.randint(dim, (n,), generator=gen, device=pop.device)
        cross[rows, j_rand] = True
        return torch.where(cross, mutant, pop).clamp_(0.0, 1.0)

    def _readout(self, pop: torch.Tensor, fit: torch.Tensor, decode, generation: int,
                 effects: "_Effects") -> Readout:
        if self.map_from == "regression":
            genes = effects.solve().clamp_min(0).unsqueeze(0)   # cells whose keeping holds the decision up
        elif self.map_from == "best":
            genes = pop[fit.argmax()].unsqueeze(0)
        else:  # fitness-weighted mean: weights shifted so the worst individual counts zero
            wts = fit - fit.min()
            wts = wts / wts.sum() if float(wts.sum()) > 0 else torch.full_like(fit, 1.0 / len(fit))
            genes = (wts[:, None] * pop).sum(0, keepdim=True)
        metrics = {"best_fitness": float(fit.max()), "mean_fitness": float(fit.mean()),
                   "diversity": float(pop.std(0).mean())}
        extras = {"generation": generation, "genes": genes[0].detach().cpu(),
                  "best_mask_area": float(pop[fit.argmax()].mean())}
        return Readout(self._map(decode(genes)), metrics, extras=extras)

    def _iterate(self, bb, x, target):
        gen = self.generator(x.device)
        n, per = self.population, self._queries_per_individual
        dim, decode = self._decoder(x, getattr(bb, "modality", "image"))
        fitness = self._fitness(bb, x, target, decode, make_baseline(x, self.baseline))
        pop = torch.rand(n, dim, generator=gen, device=x.device)
        fit, decision = fitness(pop)
        effects = _Effects(dim, x.device)
        effects.add(pop, decision)
        queries, budget = n * per + self._reference_queries, self.query_budget(x.shape)
        best_fit, stall = float(fit.max()), 0
        yield Step(queries=queries, progress=queries / budget,
                   readout=partial(self._readout, pop, fit, decode, 0, effects))
        for g in range(1, self.generations + 1):
            trial = self._trial(pop, gen)
            trial_fit, decision = fitness(trial)
            effects.add(trial, decision)
            better = trial_fit >= fit                                  # greedy selection
            pop = torch.where(better[:, None], trial, pop)
            fit = torch.where(better, trial_fit, fit)
            queries += n * per
            now_best = float(fit.max())
            stall = 0 if now_best > best_fit + 1e-6 else stall + 1
            best_fit = max(best_fit, now_best)
            yield Step(queries=queries, progress=queries / budget,
                       readout=partial(self._readout, pop, fit, decode, g, effects))
            if self.patience and stall >= self.patience:
                break
