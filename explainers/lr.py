"""LR: likelihood-ratio (score-function, "forward gradient") gradient estimation, with blockwise computation.

Zhang, Feng, Jiang, Zhu, Peng, Xu. "Is Forward Gradient an Effective Tool for Explaining Black-box Models?"
(arXiv 2403.15603, 2024); docs/methods.md section 1. The paper's blockwise definition was not
retrievable; this is reading (a) of the spec (noise confined to one input block per query) plus option (b),
low-dimensional noise (``noise_resolution``).

For Gaussian noise z ~ N(0, sigma^2 I) the score function is z / sigma^2, so

    g = E[(f_c(x + z) - b) z] / sigma^2

is the gradient of the Gaussian-smoothed score for any constant b (b = f_c(x), the control variate, costs one
query). Antithetic pairs (z, -z) use (f_c(x + z) - f_c(x - z)) z / (2 sigma^2), a central difference in which
b cancels (it still serves an unpaired last sample of an odd budget). The estimate is a running mean, read out
after any batch.

Blockwise: the input is cut into square blocks of ``block_size`` pixels and each query perturbs one block, so a
block's gradient comes from the score changes that block alone causes; the budget goes round-robin over the
blocks and every forward call batches many blocks. A block has few dimensions, which makes it cheap to
*orthogonalise* the draws of each block (Choromanski et al., "Structured Evolution with Compact Architectures
for Scalable Policy Optimization", ICML 2018): directions from a QR of a Gaussian matrix, lengths from the
Gaussian rows, so each draw is still exactly N(0, sigma^2 I) (the estimator stays unbiased) while m orthogonal
draws in D dimensions cut the error from (D+1)/m to (D-m)/m times |g|^2.

``noise_resolution`` r draws the noise on an r x r grid and upsamples it (nearest); the estimator then yields
the gradient with respect to a grid cell (the sum of its pixels' gradients), which the readout divides by the
cell's pixel count: each pixel shows its cell's mean gradient, in the units of the plain estimate.
"""
from __future__ import annotations

import math
import torch

from .base import Explainer, Metric, Param, Readout, Step
from .grid import NOISE_SPECS, BlockLayout
from .estimators import GRADIENT_RSE, ScoreFunctionEstimator, central_difference, control_variate
from .registry import register_explainer

FRAME_VALUES = 8_000_000     # noise values drawn at once (32 MB in float32)
QR_FLOPS = 100_000_000       # cap on one frame's QR work (K * D * G^2)


class BlockNoise:
    """The noise sampler: standard-normal draws of ``dim`` values for one block each, unit t going to block
    t % K, drawn ``group`` rounds per block at a time (a frame). Orthogonal frames (Choromanski et al.):
    directions from a QR of a Gaussian matrix, lengths from its rows, so each draw stays exactly Gaussian."""

    def __init__(self, gen: torch.Generator, n_blocks: int, dim: int, n_units: int, orthogonal: bool):
        rounds = -(-n_units // n_blocks)                                     # draws per block (at most)
        group = max(1, min(rounds, FRAME_VALUES // (n_blocks * dim)))        # rounds drawn per frame
        ortho = orthogonal and group > 1
        if ortho:
            group = max(1, min(group, dim, int(math.sqrt(QR_FLOPS / (n_blocks * dim)))))
            ortho = group > 1
        self.gen, self.n_blocks, self.dim, self.group, self.ortho = gen, n_blocks, dim, group, ortho
        self.per_frame = group * n_blocks
        self._frame: tuple[int, torch.Tensor | None] = (-1, None)

    def frame(self, f: int) -> torch.Tensor:
        """(group * K, dim) draws of units f*group*K ..: row (t % group) * K + block (the last frame is kept)."""
        if self._frame[0] != f:
            k, d, gen = self.n_blocks, self.dim, self.gen
            if self.ortho:
                g = torch.randn(k, d, self.group, generator=gen, device=gen.device)
                q, rr = torch.linalg.qr(g)                                   # Gram-Schmidt of the columns
                q = q * torch.sign(torch.diagonal(rr, dim1=-2, dim2=-1)).unsqueeze(1)   # Haar directions
                noise = (q * g.norm(dim=1, keepdim=True)).permute(2, 0, 1).reshape(self.per_frame, d)
            else:
                noise = torch.randn(self.per_frame, d, generator=gen, device=gen.device)
            self._frame = (f, noise)
        return self._frame[1]

    def draws(self, a: int, b: int) -> torch.Tensor:
        """Noise of the consecutive units a..b-1 (a view of the frame unless it spans two frames)."""
        parts = []
        while a < b:
            f, off = divmod(a, self.per_frame)
            n = min(b - a, self.per_frame - off)
            parts.append(self.frame(f)[off:off + n])
            a += n
        return parts[0] if len(parts) == 1 else torch.cat(parts)


class BlockPerturbation:
    """The perturbation: x + sigma * z (additive) or x * (1 + sigma * z) (contrast: each cell's content scaled
    towards or away from the model's zero, the dataset mean), z being each draw's noise placed in its block and
    upsampled from the noise grid when it is coarse."""

    def __init__(self, x: torch.Tensor, layout: BlockLayout, sigma: float, contrast: bool = False):
        lay = self.layout = layout
        self.x, self.sigma, self.contrast = x, sigma, contrast
        # additive per-channel noise in full-resolution blocks is written straight into a copy of x padded to
        # whole blocks (then cropped); every other case builds the noise image and adds it
        self.in_place = lay.n_blocks > 1 and not lay.coarse and lay.nc == lay.c and not contrast
        hp, wp = lay.nbh * lay.bh, lay.nbw * lay.bw
        self.x_pad = torch.nn.functional.pad(x, (0, wp - lay.w, 0, hp - lay.h)) if self.in_place else x
        self.buf_hw = (hp, wp) if self.in_place else (lay.h, lay.w)

    def batch(self, eps: torch.Tensor, blocks: torch.Tensor, n_pairs: int) -> torch.Tensor:
        """(k + n_pairs, C, H, W): x + sigma eps for the k draws, then x - sigma eps for the first n_pairs."""
        k, lay = eps.shape[0], self.layout
        buf = torch.empty(k + n_pairs, lay.c, *self.buf_hw, device=eps.device)
        plus = self.perturb(buf[:k], eps, blocks, self.sigma)
        if not n_pairs:
            return plus
        minus = self.perturb(buf[k:], eps[:n_pairs], blocks[:n_pairs], -self.sigma)
        return buf if self.buf_hw == (lay.h, lay.w) else torch.cat([plus, minus])

    def perturb(self, out: torch.Tensor, eps: torch.Tensor, blocks: torch.Tensor, scale: float) -> torch.Tensor:
        """Write x + scale * eps (placed in its block) into ``out`` (k, C, H', W'); returns (k, C, H, W)."""
        k, lay, x = eps.shape[0], self.layout, self.x
        if not self.in_place:
            z = eps.view(k, lay.nc, lay.gh, lay.gw) if lay.n_blocks == 1 else self.place(eps, blocks)
            z = lay.upsample(z)
            return torch.add(x, z * x if self.contrast else z, alpha=scale, out=out)
        out.copy_(self.x_pad.expand_as(out))                         # x everywhere, noise only in the block
        blocked = out.view(k, lay.c, lay.nbh, lay.bh, lay.nbw, lay.bw).permute(0, 2, 4, 1, 3, 5)
        blocked.index_put_((torch.arange(k, device=eps.device), blocks // lay.nbw, blocks % lay.nbw),
                           eps.view(k, lay.c, lay.bh, lay.bw) * scale, accumulate=True)
        return out[:, :, :lay.h, :lay.w]

    def place(self, eps: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
        """(k, dim) block noise -> (k, C, gh, gw) on the noise grid (zero outside each unit's block)."""
        k, lay = eps.shape[0], self.layout
        z6 = torch.zeros(k, lay.nbh, lay.nbw, lay.nc, lay.bh, lay.bw, device=eps.device)
        z6[torch.arange(k, device=eps.device), blocks // lay.nbw, blocks % lay.nbw] = eps.view(k, lay.nc, lay.bh,
                                                                                                 lay.bw)
        hp, wp = lay.nbh * lay.bh, lay.nbw * lay.bw
        return z6.permute(0, 3, 1, 4, 2, 5).reshape(k, lay.nc, hp, wp)[:, :, :lay.gh, :lay.gw]


@register_explainer
class LR(Explainer):
    name = "lr"
    title = "LR gradient estimation"
    paper = "Zhang et al., arXiv 2403.15603 (2024)"
    modalities = ("image", "audio")
    estimates_gradient = True
    budget_param = ("n_samples", 1)
    param_specs = (
        Param("n_samples", "int", 4000, 2, 100_000, log=True, cpu_default=2000, unit="queries",
              help="Perturbed queries (an antithetic pair counts as two). The error falls like 1/sqrt(n)."),
        Param("sigma", "float", 0.7, 0.001, 2.0, log=True,
              help="Noise scale. contrast: relative change of a cell's content per unit of noise (0.7 = +-70 % "
                   "at one standard deviation); additive: noise std in the model's input units (small = local "
                   "gradient, large = smoothed gradient)."),
        *NOISE_SPECS,
        Param("channel_noise", "choice", "shared", choices=("shared", "independent"),
              help="One noise map for all colour channels (fewer dimensions) or one per channel."),
        Param("block_size", "int", 0, 0, 512, unit="px",
              help="Blockwise computation: square blocks of this many pixels, one block perturbed per query "
                   "(0 = off: every query perturbs the whole input)."),
        Param("antithetic", "bool", True, help="Mirror pairs (z, -z): a central difference, lower variance."),
        Param("control_variate", "bool", True,
              help="Subtract f(x) (one extra query): lowers the variance of unpaired samples."),
        Param("orthogonal", "bool", True,
              help="Blockwise only: orthogonalise each block's draws (exactly Gaussian, lower variance)."),
        Param("readout", "choice", "positive", choices=("positive", "abs_max", "grad_x_input"),
              help="positive: the part of the estimate that raises the score (channel sum); abs_max: |estimate| "
                   "max over channels; grad_x_input: estimate x input summed over channels (additive only)."),
    )
    metric_specs = (
        GRADIENT_RSE,
        Metric("draws_per_block", "noise draws per block", "draws",
               help="Blockwise computation only: the draws each block has had so far."),
    )
    # the settings under which Readout.gradient is the input gradient (the convergence lab's LR)
    gradient_options = {"perturbation": "additive", "noise_resolution": 0, "channel_noise": "independent",
                        "readout": "abs_max", "sigma": 0.2}
    version = 2     # contrast perturbation on a shared 10 x 10 grid by default

    def query_budget(self, input_shape) -> int:
        return self.n_samples + (1 if self.control_variate else 0)

    def _iterate(self, bb, x, target):
        lay = BlockLayout.of(x, self.block_size, self.noise_resolution, self.channel_noise == "shared",
                             self.upsampling == "bilinear")
        pair = bool(self.antithetic)
        n_pairs_total = self.n_samples // 2 if pair else 0
        n_units = n_pairs_total + (self.n_samples - 2 * n_pairs_total)  # noise draws (pairs + singles)
        noise = BlockNoise(self.generator(x.device), lay.n_blocks, lay.dim, n_units,
                           self.orthogonal and self.block_size > 0)
        perturbation = BlockPerturbation(x, lay, float(self.sigma), self.perturbation == "contrast")
        est = ScoreFunctionEstimator(self.sigma, lay.dim, lay.n_blocks, device=x.device)
        queries, b = 0, torch.zeros((), device=x.device)
        if self.control_variate:
            b = bb(x.unsqueeze(0))[0, target]
            queries = 1
        per_call = self.per_call(bb, x, per_item=2 if pair else 1)      # draws per call
        done = 0
        while done < n_units:
            k = min(per_call, n_units - done)
            blocks = torch.arange(done, done + k, device=x.device) % lay.n_blocks   # round-robin over the blocks
            eps = noise.draws(done, done + k)
            n_pairs = max(0, min(k, n_pairs_total - done))               # pairs come first, then singles
            y = bb(perturbation.batch(eps, blocks, n_pairs))[:, target]  # rows: +pairs, singles, -pairs
            est.add(eps, torch.cat([central_difference(y[:n_pairs], y[k:]), control_variate(y[n_pairs:k], b)]),
                    blocks)
            queries += k + n_pairs
            done += k
            if done >= lay.n_blocks or done == n_units:   # the first map has an estimate in every block
                yield Step(queries=queries, progress=done / n_units, readout=lambda: self._readout(lay, est, x))

    def _readout(self, lay: BlockLayout, est: ScoreFunctionEstimator, x: torch.Tensor) -> Readout:
        g = lay.to_image(est.gradient())
        if self.readout == "positive":
            sal = g.sum(0).clamp_min(0)
        elif self.readout == "abs_max":
            sal = g.abs().amax(0)
        else:
            sal = (g * x).sum(0)
        # the input gradient only under additive noise; under contrast noise g is the presence gradient
        metrics = {"gradient_rse": est.relative_standard_error()}
        if lay.n_blocks > 1:
            metrics["draws_per_block"] = float(est.count.mean())
        return Readout(sal, metrics,
                       gradient=g if self.perturbation == "additive" else None)

    def _check(self) -> None:
        if self.readout == "grad_x_input" and self.perturbation == "contrast":
            raise ValueError("lr: readout 'grad_x_input' needs perturbation 'additive' (under contrast noise the "
                             "estimate is already a gradient x input per cell)")
