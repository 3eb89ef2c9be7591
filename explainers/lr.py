"""LR: likelihood-ratio (score-function, "forward gradient") gradient estimation, with blockwise computation.

Zhang, Feng, Jiang, Zhu, Peng, Xu. "Is Forward Gradient an Effective Tool for Explaining Black-box Models?"
(arXiv 2403.15603, 2024); research/algorithms.md section 1. The paper's blockwise definition was not
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

from .base import Explainer, Param, Step
from .registry import register_explainer

FRAME_VALUES = 8_000_000     # noise values drawn at once (32 MB in float32)
QR_FLOPS = 100_000_000       # cap on one frame's QR work (K * D * G^2)


def _nearest_index(n_out: int, n_in: int, device) -> torch.Tensor:
    """Source cell of each output pixel for nearest upsampling n_in -> n_out (integer arithmetic, exact)."""
    return (torch.arange(n_out, device=device) * n_in) // n_out


@register_explainer
class LR(Explainer):
    name = "lr"
    title = "LR gradient estimation"
    paper = "Zhang et al., arXiv 2403.15603 (2024)"
    modalities = ("image", "audio")
    params = (
        Param("n_samples", "int", 4000, 2, 100_000, log=True, cpu_default=2000, unit="queries",
              help="Perturbed queries (an antithetic pair counts as two). The error falls like 1/sqrt(n)."),
        Param("sigma", "float", 0.2, 0.001, 2.0, log=True,
              help="Noise scale in the model's input space: small = local gradient, large = smoothed gradient."),
        Param("block_size", "int", 0, 0, 512, unit="px",
              help="Blockwise computation: square blocks of this many pixels, one block perturbed per query "
                   "(0 = off: every query perturbs the whole input)."),
        Param("noise_resolution", "int", 0, 0, 512, unit="cells",
              help="Draw the noise on a coarse r x r grid and upsample it (0 = full resolution): "
                   "fewer dimensions, less variance, a cell-averaged gradient."),
        Param("antithetic", "bool", True, help="Mirror pairs (z, -z): a central difference, lower variance."),
        Param("control_variate", "bool", True,
              help="Subtract f(x) (one extra query): lowers the variance of unpaired samples."),
        Param("orthogonal", "bool", True,
              help="Blockwise only: orthogonalise each block's draws (exactly Gaussian, lower variance)."),
        Param("readout", "choice", "abs_max", choices=("abs_max", "grad_x_input"),
              help="abs_max: |gradient| max over channels; grad_x_input: gradient x input summed over channels."),
    )

    def query_budget(self, input_shape) -> int:
        return self.n_samples + (1 if self.control_variate else 0)

    def _iterate(self, bb, x, target):
        c, h, w = x.shape
        dev = x.device
        gen = self.generator(dev)
        sigma = float(self.sigma)
        r = self.noise_resolution
        gh, gw = (min(r, h), min(r, w)) if r > 0 else (h, w)            # the noise grid
        coarse = (gh, gw) != (h, w)
        ri, ci = _nearest_index(h, gh, dev), _nearest_index(w, gw, dev)
        area = torch.bincount(ri, minlength=gh).float()[:, None] * torch.bincount(ci, minlength=gw).float()[None, :]
        if self.block_size > 0:   # block side in grid cells; edge blocks are padded and cropped
            bh, bw = max(1, round(self.block_size * gh / h)), max(1, round(self.block_size * gw / w))
            bh, bw = min(bh, gh), min(bw, gw)
        else:
            bh, bw = gh, gw
        nbh, nbw = -(-gh // bh), -(-gw // bw)
        n_blocks, dim = nbh * nbw, c * bh * bw

        pair = bool(self.antithetic)
        n_pairs_total = self.n_samples // 2 if pair else 0
        n_units = n_pairs_total + (self.n_samples - 2 * n_pairs_total)  # noise draws (pairs + singles)
        rounds = -(-n_units // n_blocks)                                 # draws per block (at most)
        group = max(1, min(rounds, FRAME_VALUES // (n_blocks * dim)))    # rounds drawn per frame
        ortho = self.orthogonal and self.block_size > 0 and group > 1
        if ortho:
            group = max(1, min(group, dim, int(math.sqrt(QR_FLOPS / (n_blocks * dim)))))
            ortho = group > 1

        frames: dict[int, torch.Tensor] = {}
        per_frame = group * n_blocks

        def frame(f: int) -> torch.Tensor:
            """(group * K, dim) standard-normal draws of units f*group*K ..: row (t % group) * K + block."""
            if f not in frames:
                frames.clear()
                if ortho:
                    g = torch.randn(n_blocks, dim, group, generator=gen, device=dev)
                    q, rr = torch.linalg.qr(g)                           # Gram-Schmidt of the columns
                    q = q * torch.sign(torch.diagonal(rr, dim1=-2, dim2=-1)).unsqueeze(1)  # Haar directions
                    frames[f] = (q * g.norm(dim=1, keepdim=True)).permute(2, 0, 1).reshape(per_frame, dim)
                else:
                    frames[f] = torch.randn(per_frame, dim, generator=gen, device=dev)
            return frames[f]

        def draws(a: int, b: int) -> torch.Tensor:
            """Noise of the consecutive units a..b-1 (a view of the frame unless it spans two frames)."""
            parts = []
            while a < b:
                f, off = divmod(a, per_frame)
                n = min(b - a, per_frame - off)
                parts.append(frame(f)[off:off + n])
                a += n
            return parts[0] if len(parts) == 1 else torch.cat(parts)

        hp, wp = nbh * bh, nbw * bw
        x_pad = torch.nn.functional.pad(x, (0, wp - w, 0, hp - h)) if n_blocks > 1 and not coarse else x

        def perturb(out: torch.Tensor, eps: torch.Tensor, blocks: torch.Tensor, sign: float) -> torch.Tensor:
            """Write x + sign * sigma * eps (placed in its block) into ``out`` (k, C, H', W'); returns (k, C, H, W)."""
            k = eps.shape[0]
            if n_blocks == 1 and not coarse:
                return torch.add(x, eps.view(k, c, h, w), alpha=sign * sigma, out=out)
            if coarse:
                z = eps.view(k, c, gh, gw) if n_blocks == 1 else place(eps, blocks)
                return torch.add(x, z[:, :, ri][:, :, :, ci], alpha=sign * sigma, out=out)
            out.copy_(x_pad.expand_as(out))                              # x everywhere, noise only in the block
            blocked = out.view(k, c, nbh, bh, nbw, bw).permute(0, 2, 4, 1, 3, 5)
            blocked.index_put_((torch.arange(k, device=dev), blocks // nbw, blocks % nbw),
                               eps.view(k, c, bh, bw) * (sign * sigma), accumulate=True)
            return out[:, :, :h, :w]

        def place(eps: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
            """(k, dim) block noise -> (k, C, gh, gw) on the noise grid (zero outside each unit's block)."""
            k = eps.shape[0]
            z6 = torch.zeros(k, nbh, nbw, c, bh, bw, device=dev)
            z6[torch.arange(k, device=dev), blocks // nbw, blocks % nbw] = eps.view(k, c, bh, bw)
            return z6.permute(0, 3, 1, 4, 2, 5).reshape(k, c, hp, wp)[:, :, :gh, :gw]

        s_sum = torch.zeros(n_blocks, dim, device=dev)                  # running sum of coef * eps per block
        count = torch.zeros(n_blocks, device=dev)                        # draws per block
        queries = 0
        b = torch.zeros((), device=dev)
        if self.control_variate:
            b = bb(x.unsqueeze(0))[0, target]
            queries = 1

        def gradient() -> torch.Tensor:
            gb = s_sum / (count.clamp_min(1)[:, None] * sigma)          # E[coef * z] / sigma^2, z = sigma * eps
            g = gb.view(nbh, nbw, c, bh, bw).permute(2, 0, 3, 1, 4).reshape(c, nbh * bh, nbw * bw)[:, :gh, :gw]
            if coarse:  # d f / d cell = sum of its pixels' gradients; show the per-pixel mean
                g = (g / area)[:, ri][:, :, ci]
            return g

        def readout():
            g = gradient()
            sal = g.abs().amax(0) if self.readout == "abs_max" else (g * x).sum(0)
            return sal, {"draws_per_block": float(count.mean())}, {"gradient": g.detach().cpu()}

        # queries per forward call: whole model batches (no ragged chunk), more of them for small inputs
        per_query_call = bb.batch_size * (max(4, 256 // bb.batch_size) if h * w <= 64 * 64 else 4)
        per_call = max(1, per_query_call // (2 if pair else 1))           # draws per call
        buf_hw = (hp, wp) if n_blocks > 1 and not coarse else (h, w)
        done = 0
        while done < n_units:
            k = min(per_call, n_units - done)
            blocks = torch.arange(done, done + k, device=dev) % n_blocks   # round-robin over the blocks
            eps = draws(done, done + k)
            n_pairs = max(0, min(k, n_pairs_total - done))               # pairs come first, then singles
            buf = torch.empty(k + n_pairs, c, *buf_hw, device=dev)
            plus = perturb(buf[:k], eps, blocks, 1.0)
            if n_pairs:
                minus = perturb(buf[k:], eps[:n_pairs], blocks[:n_pairs], -1.0)
                batch = buf if buf_hw == (h, w) else torch.cat([plus, minus])
            else:
                batch = plus
            y = bb(batch)[:, target]
            coef = torch.cat([(y[:n_pairs] - y[k:]) * 0.5, y[n_pairs:k] - b])   # rows: +pairs, singles, -pairs
            if n_blocks == 1:
                s_sum[0].addmv_(eps.t(), coef)
            else:  # one GEMM: (K, k) one-hot rows weighted by coef, times the draws
                onehot = torch.zeros(n_blocks, k, device=dev)
                onehot[blocks, torch.arange(k, device=dev)] = coef
                s_sum.addmm_(onehot, eps)
            count += torch.bincount(blocks, minlength=n_blocks).to(count.dtype)
            queries += batch.shape[0]
            done += k
            yield Step(queries=queries, progress=done / n_units, readout=readout)
