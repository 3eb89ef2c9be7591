"""Gradient fidelity: how well a query-only gradient estimate (LR, GEEX) points along the true gradient.

Zhang et al. (arXiv 2403.15603, 2024) and Cai and Wunder (ICML 2024) both judge gradient estimators by their
agreement with the autograd gradient; this is that check, as a cosine similarity, for open torch models only.
"""
from __future__ import annotations

import torch


def true_gradient(bb, x: torch.Tensor, target: int) -> torch.Tensor:
    """Autograd gradient (C, H, W) of the target score in ``bb.score_mode`` space (as ``BlackBox.to_score``)."""
    if not getattr(bb, "is_white_box", False) or bb.module is None:
        raise ValueError(f"gradient_fidelity needs an open torch model; {getattr(bb, 'name', bb)!r} can only "
                         "be queried (no autograd gradient to compare with)")
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(f"gradient_fidelity: x must be a tensor (C, H, W), got {getattr(x, 'shape', type(x))}")
    xi = x.detach().to(bb.device, torch.float32).unsqueeze(0).requires_grad_(True)
    with torch.enable_grad():
        # the torch module + the score mapping, gradients on (no inference_mode, no query counted); the queries
        # may run on a faster copy (models.backends), checked against this module when it was made
        score = bb.to_score(bb.module(xi).float())[0, int(target)]
        (g,) = torch.autograd.grad(score, xi)
    return g[0].detach()


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().flatten().cpu(), b.detach().double().flatten().cpu()
    if a.shape != b.shape:
        raise ValueError(f"cosine: shapes differ ({a.numel()} vs {b.numel()} values)")
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return 0.0
    return float(a @ b / (na * nb))


def gradient_fidelity(bb, x: torch.Tensor, target: int, estimated_gradient: torch.Tensor) -> float:
    """Cosine similarity in [-1, 1] between an estimated (C, H, W) gradient and the autograd gradient of
    ``bb``'s target score (in its score mode). A (1, H, W) estimate (channel-shared noise) is broadcast over the
    channels. ValueError for a black box that is not an open torch module."""
    g = true_gradient(bb, x, target)
    est = torch.as_tensor(estimated_gradient)
    if est.dim() == 3 and est.shape[0] == 1 and tuple(est.shape[1:]) == tuple(g.shape[1:]):
        est = est.expand_as(g.cpu())   # channel-shared noise (GEEX) estimates one value per pixel, used for every channel
    if tuple(est.shape) != tuple(g.shape):
        raise ValueError(f"gradient_fidelity: the estimated gradient has shape {tuple(est.shape)}, "
                         f"the input {tuple(g.shape)}")
    return cosine(est, g)
