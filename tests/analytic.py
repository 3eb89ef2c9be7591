"""Analytic black boxes shared by the tests of several methods (import as ``tests.analytic``)."""
import torch

from models import BlackBox


def region_box(x: torch.Tensor, region: tuple[slice, slice], modality: str = "image") -> BlackBox:
    """Score of class 0 depends only on the pixels of ``region`` (how close they are to the original)."""
    ref = x[:, region[0], region[1]].clone()

    def fn(b):
        d = ((b[:, :, region[0], region[1]] - ref) ** 2).mean(dim=(1, 2, 3))
        s = torch.exp(-d / 0.05)
        return torch.stack([s, 1 - s], 1)

    return BlackBox(fn, labels=["region intact", "other"], input_shape=tuple(x.shape), modality=modality)
