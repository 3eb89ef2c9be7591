"""White-box references for open torch models: gradient, Integrated Gradients, Grad-CAM.

They exist only to compare the black-box methods against (``white_box = True``): they read ``bb.module`` with
autograd, so they refuse a callable or remote model. Scores are taken in the BlackBox's score space, and every
forward pass they make is counted as a query, like the black-box methods' queries.

- Gradient (Simonyan et al., 2014): |d f_c / d x|, max over channels.
- Integrated Gradients (Sundararajan et al., ICML 2017): (x - x0) * mean of the gradient at ``steps`` points of
  the straight path (midpoint rule), summed over channels.
- Grad-CAM (Selvaraju et al., ICCV 2017): ReLU of the gradient-weighted activations of a convolutional layer
  (the last one by default), upsampled to the input; on the model's raw output (logits), as in the paper.
"""
from __future__ import annotations

import threading
import weakref

import torch
import torch.nn.functional as F

from .base import Explainer, Param, Readout, Step
from .masks import make_baseline
from .registry import register_explainer

_HOOK_LOCKS: "weakref.WeakKeyDictionary[torch.nn.Module, threading.Lock]" = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def _module_lock(module: torch.nn.Module) -> threading.Lock:
    """Hooks mutate a module every session shares: one lock per module."""
    with _LOCKS_LOCK:
        return _HOOK_LOCKS.setdefault(module, threading.Lock())


def score_with_grad(bb, batch: torch.Tensor, target: int) -> torch.Tensor:
    """f_c of a batch through the open module, with autograd, in the BlackBox's score space (counted)."""
    bb.count(batch.shape[0])
    out = bb.module(batch)
    return bb.to_score(out.float())[:, target]


def input_gradient(bb, batch: torch.Tensor, target: int) -> torch.Tensor:
    with torch.enable_grad():  # autograd.grad, not backward(): the shared module's .grad stays untouched
        xb = batch.detach().clone().requires_grad_(True)
        grad, = torch.autograd.grad(score_with_grad(bb, xb, target).sum(), xb)
    return grad.detach()


class _WhiteBox(Explainer):
    white_box = True


@register_explainer
class Gradient(_WhiteBox):
    name = "gradient"
    title = "Gradient (white-box reference)"
    paper = "Simonyan, Vedaldi, Zisserman, ICLR workshop 2014"
    param_specs = ()

    def query_budget(self, input_shape) -> int:
        return 1

    def _iterate(self, bb, x, target):
        g = input_gradient(bb, x.unsqueeze(0), target)[0]
        yield Step(1, 1.0, lambda: Readout(g.abs().amax(0), gradient=g))


@register_explainer
class IntegratedGradients(_WhiteBox):
    name = "integrated_gradients"
    title = "Integrated Gradients (white-box reference)"
    paper = "Sundararajan, Taly, Yan, ICML 2017"
    early_stop = False   # a partial integral is not a converging estimate of the whole
    param_specs = (
        Param("steps", "int", 50, 2, 1000, help="Points on the path from the baseline to the input."),
        Param("baseline", "choice", "zero", choices=("zero", "blur"), help="The path's start."),
    )

    def query_budget(self, input_shape) -> int:
        return self.steps

    def _iterate(self, bb, x, target):
        x0 = make_baseline(x, self.baseline)
        alphas = (torch.arange(self.steps, device=x.device, dtype=torch.float32) + 0.5) / self.steps
        g_sum = torch.zeros_like(x)
        chunk = 16
        for i in range(0, self.steps, chunk):
            a = alphas[i:i + chunk].view(-1, 1, 1, 1)
            g_sum += input_gradient(bb, x0 + a * (x - x0), target).sum(0)
            done = min(self.steps, i + chunk)

            def readout(done=done, g=g_sum.clone()):
                attribution = (x - x0) * g / done
                return Readout(attribution.sum(0), gradient=g / done, extras={"attribution": attribution.cpu()})
            yield Step(done, done / self.steps, readout)


def last_conv_name(module: torch.nn.Module) -> str:
    names = [n for n, m in module.named_modules() if isinstance(m, torch.nn.Conv2d)]
    if not names:
        raise ValueError("Grad-CAM needs a convolutional layer; this model has none")
    return names[-1]


@register_explainer
class GradCAM(_WhiteBox):
    name = "gradcam"
    title = "Grad-CAM (white-box reference)"
    paper = "Selvaraju et al., ICCV 2017"
    modalities = ("image", "audio")
    param_specs = (
        Param("layer", "str", "auto", help="Name of the convolutional layer (as in model.named_modules()); "
                                           "'auto' takes the last Conv2d (for EfficientNet-Lite0: conv_head)."),
    )

    def query_budget(self, input_shape) -> int:
        return 1

    def _iterate(self, bb, x, target):
        module = bb.module
        name = last_conv_name(module) if self.layer == "auto" else self.layer
        layer = dict(module.named_modules()).get(name)
        if layer is None:
            raise ValueError(f"gradcam: the model has no layer named {name!r}")
        store: dict[str, torch.Tensor] = {}
        with _module_lock(module):
            handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("act", o))
            try:
                with torch.enable_grad():
                    # the class score before the softmax, as in the paper (a softmax probability near 0
                    # would leave no gradient for a class the model does not predict)
                    bb.count(1)
                    score = bb.module(x.unsqueeze(0).detach())[:, target]
                    act = store["act"]
                    grad, = torch.autograd.grad(score.sum(), act)
            finally:
                handle.remove()
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * act).sum(1, keepdim=True)).detach()
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        yield Step(1, 1.0, lambda: Readout(cam, extras={"layer": name}))
