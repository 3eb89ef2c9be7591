"""Segmentations shared by the segment-based methods (DE-CAM's superpixel genome, DAX's LIME-style samples).

A segmentation is an (H, W) long tensor of labels 0..K-1 on the input's device, every label used at least once.
Images are cut into superpixels with scikit-image (SLIC, Achanta et al. 2012; quickshift, Vedaldi and Soatto
2008) computed on a display copy of the input; audio time-frequency inputs (1, F, T) are cut into fixed
rectangles (frequency bands x time frames), the proposal of docs/methods.md section 4 for DAX on audio.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from maps import normalise

SEGMENTATIONS = ("slic", "quickshift", "grid")


def _display(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in any value range -> float (H, W, 3) in [0, 1] for scikit-image (min-max per image)."""
    t = x.detach().float().cpu()
    if t.shape[0] == 1:
        t = t.expand(3, *t.shape[1:])
    t = t[:3]
    t = normalise(t)
    return t.permute(1, 2, 0).numpy().astype(np.float64)


def relabel(labels: torch.Tensor) -> torch.Tensor:
    """Make labels consecutive 0..K-1 (scikit-image may skip some)."""
    _, inverse = torch.unique(labels, return_inverse=True)
    return inverse.view(labels.shape).long()


def superpixels(x: torch.Tensor, method: str = "slic", n_segments: int = 50) -> torch.Tensor:
    """Superpixels of an image (C, H, W): (H, W) long labels 0..K-1 on ``x.device``.

    ``n_segments`` is the approximate count for SLIC; for quickshift it sets the kernel size so the count
    comes out in the same range (quickshift has no direct count parameter).
    """
    if method not in ("slic", "quickshift"):
        raise ValueError(f"unknown superpixel method {method!r}; choose 'slic' or 'quickshift'")
    if n_segments < 2:
        raise ValueError(f"n_segments must be at least 2, got {n_segments}")
    from skimage.segmentation import quickshift, slic

    img = _display(x)
    h, w = img.shape[:2]
    if method == "slic":
        lab = slic(img, n_segments=int(n_segments), compactness=10.0, start_label=0, channel_axis=-1)
    else:
        # a quickshift segment is roughly a disc of radius ~2 kernel sizes: pick the kernel for the count
        kernel = max(1.0, math.sqrt(h * w / (n_segments * math.pi)) / 2.0)
        lab = quickshift(img, kernel_size=kernel, max_dist=kernel * 4, ratio=0.5, convert2lab=True,
                         rng=0, channel_axis=-1)
    return relabel(torch.as_tensor(np.ascontiguousarray(lab), device=x.device))


def rectangles(shape: tuple[int, int], n_segments: int, device=None) -> torch.Tensor:
    """(H, W) labels of a grid of about ``n_segments`` rectangles, cells as square as the aspect allows
    (time-frequency patches for spectrograms (F, T), or a plain grid for images)."""
    h, w = shape
    if n_segments < 1:
        raise ValueError(f"n_segments must be at least 1, got {n_segments}")
    rows = max(1, min(h, round(math.sqrt(n_segments * h / w))))
    cols = max(1, min(w, round(n_segments / rows)))
    r = (torch.arange(h, device=device) * rows) // h
    c = (torch.arange(w, device=device) * cols) // w
    return (r[:, None] * cols + c[None, :]).long()


def segment(x: torch.Tensor, method: str = "slic", n_segments: int = 50, modality: str = "image") -> torch.Tensor:
    """Labels (H, W) for an input (C, H, W): superpixels for images, rectangles for audio or ``method='grid'``
    (and in place of SLIC superpixels that come out at fewer than half of ``n_segments``)."""
    if method not in SEGMENTATIONS:
        raise ValueError(f"unknown segmentation {method!r}; choose one of {SEGMENTATIONS}")
    if modality == "audio" or method == "grid":
        return rectangles(tuple(x.shape[-2:]), n_segments, device=x.device)
    labels = superpixels(x, method, n_segments)
    if method == "slic" and int(labels.max()) + 1 < n_segments / 2:
        # SLIC (Lab, compactness 10) under-segments texture and noise: 15-18 of 50 segments on grass or gravel,
        # one segment spilling far over an object, a single segment on a noise picture (a constant map). A grid
        # of the count asked for instead (DAX, issue 18: explainers/dax.py)
        return rectangles(tuple(x.shape[-2:]), n_segments, device=x.device)
    return labels


def one_hot(labels: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """(K, H, W) float indicator of each segment (for painting genes/weights: ``einsum('nk,khw->nhw')``)."""
    k = int(labels.max()) + 1 if k is None else k
    return (labels.unsqueeze(0) == torch.arange(k, device=labels.device).view(-1, 1, 1)).float()


def paint(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-segment values (N, K) or (K,) -> maps (N, H, W) or (H, W) (each pixel takes its segment's value)."""
    return values[..., labels]


def segment_means(x: torch.Tensor, labels: torch.Tensor, grey: bool = True) -> torch.Tensor:
    """(C, H, W) fill image where each segment is its own mean (over the channels too if ``grey``; LIME/DAX)."""
    k = int(labels.max()) + 1
    flat = labels.flatten()
    counts = torch.bincount(flat, minlength=k).clamp_min(1).float()
    src = x.mean(0, keepdim=True) if grey else x
    sums = torch.stack([torch.bincount(flat, weights=ch.flatten().float(), minlength=k) for ch in src])
    means = sums / counts                                   # (C', K)
    out = means[:, labels]                                  # (C', H, W)
    return out.expand_as(x).clone() if grey else out
