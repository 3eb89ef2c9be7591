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


def presence_box(x: torch.Tensor, region: tuple[slice, slice]) -> BlackBox:
    """Class 0's evidence is how much of the original content of ``region`` is present (its projection on the
    original, 1 at x, 0 once the region is grey or its content is gone), through a sigmoid: like a classifier,
    removing the evidence lowers the score and the score is not at a maximum at x, so gradient methods see it
    as well as masking methods do."""
    ref = x[:, region[0], region[1]].clone()
    norm = float((ref * ref).sum())

    def fn(b):
        presence = (b[:, :, region[0], region[1]] * ref).sum(dim=(1, 2, 3)) / norm
        s = torch.sigmoid(6 * (presence - 0.5))
        return torch.stack([s, 1 - s], 1)

    return BlackBox(fn, labels=["content present", "other"], input_shape=tuple(x.shape))
