"""Masks and perturbations shared by the methods: grids, upsampling, baselines, blending.

All functions work on the tensors' own device, batch-first, so perturbed inputs are made where the model runs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BASELINES = ("zero", "blur", "mean")


def gaussian_kernel1d(sigma: float, size: int | None = None, device=None) -> torch.Tensor:
    size = size or (2 * math.ceil(3 * sigma) + 1)
    t = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float, size: int | None = None) -> torch.Tensor:
    """Separable Gaussian blur of (C,H,W) or (N,C,H,W), reflect-padded."""
    squeeze = x.dim() == 3
    xb = x.unsqueeze(0) if squeeze else x
    if sigma <= 0:
        return x
    k = gaussian_kernel1d(sigma, size, xb.device).to(xb.dtype)
    c = xb.shape[1]
    pad = k.numel() // 2
    pad_h = min(pad, xb.shape[2] - 1)
    pad_w = min(pad, xb.shape[3] - 1)
    kh = k[pad - pad_h: pad + pad_h + 1] if pad_h < pad else k
    kw = k[pad - pad_w: pad + pad_w + 1] if pad_w < pad else k
    kh, kw = kh / kh.sum(), kw / kw.sum()
    out = F.pad(xb, (0, 0, pad_h, pad_h), mode="reflect") if pad_h else xb
    out = F.conv2d(out, kh.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    out = F.pad(out, (pad_w, pad_w, 0, 0), mode="reflect") if pad_w else out
    out = F.conv2d(out, kw.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return out.squeeze(0) if squeeze else out


def make_baseline(x: torch.Tensor, kind: str = "zero", blur_sigma: float | None = None) -> torch.Tensor:
    """The reference input that "removed" pixels take: zeros of the model's input space (for images normalised
    with the dataset mean this is the mean colour), a Gaussian blur of ``x``, or ``x``'s own mean colour."""
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "blur":
        sigma = blur_sigma if blur_sigma is not None else max(x.shape[-2:]) / 45.0  # 5 px at 224 (RISE, GEEX)
        return gaussian_blur(x, sigma)
    if kind == "mean":
        return x.mean(dim=(-2, -1), keepdim=True).expand_as(x).clone()
    raise ValueError(f"unknown baseline {kind!r}; choose one of {BASELINES}")


def upsample(masks: torch.Tensor, size: tuple[int, int], mode: str = "nearest") -> torch.Tensor:
    """(N, g, g) or (N, 1, g, g) -> (N, 1, H, W)."""
    if masks.dim() == 3:
        masks = masks.unsqueeze(1)
    if mode == "nearest":
        return F.interpolate(masks, size=size, mode="nearest")
    return F.interpolate(masks, size=size, mode=mode, align_corners=False)


def blend(x: torch.Tensor, baseline: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """x * m + baseline * (1 - m) for masks (N, 1, H, W): 1 keeps the input, 0 takes the baseline."""
    return torch.lerp(baseline.unsqueeze(0), x.unsqueeze(0), masks)


def cell_sizes(length: int, cells: int) -> list[int]:
    """Split ``length`` pixels into ``cells`` nearly equal runs (for non-divisible grids)."""
    edges = [round(i * length / cells) for i in range(cells + 1)]
    return [b - a for a, b in zip(edges, edges[1:])]


def grid_partition(shape: tuple[int, int], block: int, device=None) -> torch.Tensor:
    """(H, W) integer map of block indices for square blocks of ``block`` pixels (edge blocks may be smaller)."""
    h, w = shape
    rows = torch.arange(h, device=device) // block
    cols = torch.arange(w, device=device) // block
    return rows[:, None] * math.ceil(w / block) + cols[None, :]
