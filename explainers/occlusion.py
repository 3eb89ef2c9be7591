"""Occlusion: slide a patch over the input and record how much the target score drops.

Zeiler and Fergus. "Visualizing and Understanding Convolutional Networks", ECCV 2014 (docs/methods.md
section 6.2). For every patch position, delta = f_c(x) - f_c(x with the patch replaced by a baseline); each pixel
shows the mean delta over the patches that covered it (as Captum does; xplique sums instead). Positions run
``stride`` apart, plus a last one flush with the far edge so every pixel is covered. Streams batch by batch
of patches; queries = positions + 1 (the clean score).
"""
from __future__ import annotations

import torch

from .base import Explainer, Metric, Param, Readout, Step
from .masks import make_baseline
from .registry import register_explainer


def _starts(length: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, length - patch + 1, stride))
    if starts[-1] != length - patch:
        starts.append(length - patch)   # cover the far edge
    return starts


@register_explainer
class Occlusion(Explainer):
    name = "occlusion"
    title = "Occlusion"
    paper = "Zeiler & Fergus, ECCV 2014"
    modalities = ("image", "audio")
    version = 2          # patch 48 / stride 16 by default (was 16 / 8: docs/measurements.md, localisation)
    early_stop = False   # a partial scan is not a converging estimate: its change says nothing
    param_specs = (
        Param("patch", "int", 48, 1, 256, unit="px",
              help="Side of the square occluding patch. About a fifth of a 224-pixel image by default: a patch "
                   "much smaller than the object barely moves the score (the rest of the object still holds it)."),
        Param("stride", "int", 16, 1, 256, unit="px", help="Step between patch positions."),
        Param("baseline", "choice", "zero", choices=("zero", "blur", "mean", "constant"),
              help="What the patch becomes: zeros of the input space, a blur, the mean colour, or `value`."),
        Param("value", "float", 0.0, -10.0, 10.0, help="The constant used when baseline = constant."),
    )

    metric_specs = (
        Metric("max_drop", "largest score drop from one patch", "score",
               help="max over the patches so far of f(x) - f(x with the patch occluded), in the model's score "
                    "units (probability, logit or log-probability): how much the most important patch "
                    "matters. Negative if every patch raised the score."),
    )

    def _positions(self, h: int, w: int) -> tuple[list[int], list[int], int]:
        p = min(self.patch, h, w)   # a patch larger than the input occludes all of it
        return _starts(h, p, self.stride), _starts(w, p, self.stride), p

    def query_budget(self, input_shape) -> int:
        rows, cols, _ = self._positions(*tuple(input_shape)[-2:])
        return len(rows) * len(cols) + 1

    def _iterate(self, bb, x, target):
        h, w = x.shape[-2:]
        dev = x.device
        rows, cols, p = self._positions(h, w)
        ys = torch.tensor(rows, device=dev).repeat_interleave(len(cols))
        xs = torch.tensor(cols, device=dev).repeat(len(rows))
        n_total = ys.numel()
        if self.baseline == "constant":
            baseline = torch.full_like(x, self.value)
        else:
            baseline = make_baseline(x, self.baseline)
        y0 = bb(x.unsqueeze(0))[0, target]
        delta_sum = torch.zeros(h, w, device=dev)
        cover = torch.zeros(h, w, device=dev)
        ar_h, ar_w = torch.arange(h, device=dev), torch.arange(w, device=dev)
        per_call = self.per_call(bb, x)
        done = 0

        max_drop = torch.full((), -torch.inf, device=dev)     # the largest f(x) - f(occluded) so far

        def readout():
            return Readout(delta_sum / cover.clamp_min(1), {"max_drop": float(max_drop)})

        while done < n_total:
            k = min(per_call, n_total - done)
            py, px = ys[done:done + k], xs[done:done + k]
            in_r = ((ar_h[None, :] >= py[:, None]) & (ar_h[None, :] < py[:, None] + p)).float()   # (k, h)
            in_c = ((ar_w[None, :] >= px[:, None]) & (ar_w[None, :] < px[:, None] + p)).float()   # (k, w)
            patch = (in_r[:, :, None] * in_c[:, None, :]).unsqueeze(1)                          # (k, 1, h, w)
            y = bb(torch.lerp(x.unsqueeze(0), baseline.unsqueeze(0), patch))[:, target]
            # patch maps are outer products: sums over patches are (h, k) @ (k, w) products, no (k, h, w) pass
            delta_sum += in_r.t() @ ((y0 - y)[:, None] * in_c)
            cover += in_r.t() @ in_c
            max_drop = torch.maximum(max_drop, (y0 - y).max())
            done += k
            yield Step(queries=1 + done, progress=done / n_total, readout=readout)
