"""Where low-dimensional noise lives: a coarse grid over the input, optionally cut into blocks (LR's blockwise
computation), its upsampling to the pixels, and the way back from a per-cell gradient to a per-pixel one.
Shared by LR and GEEX / iGEEX.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Param

# The low-dimensional noise options of LR and GEEX / iGEEX, declared once (the defaults that localise: docs/
# measurements.md, localisation).
NOISE_SPECS = (
    Param("perturbation", "choice", "contrast", choices=("contrast", "additive"),
          help="contrast: each cell's content scaled by (1 + sigma z), the gradient with respect to its presence "
               "(what the map shows); additive: x + sigma z, the input gradient itself (the papers' estimator)."),
    Param("noise_resolution", "int", 10, 0, 512, unit="cells",
          help="Draw the noise on a coarse r x r grid and upsample it (0 = full resolution, as in the papers): "
               "fewer dimensions, less variance, a cell-level map."),
    Param("upsampling", "choice", "bilinear", choices=("bilinear", "nearest"),
          help="How a coarse noise grid reaches the pixels: smoothly, or as square cells."),
)


def _nearest_index(n_out: int, n_in: int, device) -> torch.Tensor:
    """Source cell of each output pixel for nearest upsampling n_in -> n_out (integer arithmetic, exact)."""
    return (torch.arange(n_out, device=device) * n_in) // n_out


@dataclass
class BlockLayout:
    """Where the noise lives: a gh x gw noise grid over the C x H x W input, cut into nbh x nbw blocks of
    bh x bw cells (edge blocks padded and cropped). A draw is the noise of one block: C * bh * bw values."""
    c: int
    h: int
    w: int
    nc: int                 # noise channels: 1 when one noise map is shared by the colour channels, else c
    smooth: bool            # a coarse grid is upsampled bilinearly (else nearest)
    gh: int
    gw: int
    bh: int
    bw: int
    ri: torch.Tensor        # (H,) grid row of each pixel row
    ci: torch.Tensor        # (W,) grid column of each pixel column
    area: torch.Tensor      # (gh, gw) pixels per grid cell

    @classmethod
    def of(cls, x: torch.Tensor, block_size: int, noise_resolution: int, shared: bool = False,
           smooth: bool = False) -> "BlockLayout":
        c, h, w = x.shape
        dev, r = x.device, noise_resolution
        gh, gw = (min(r, h), min(r, w)) if r > 0 else (h, w)
        ri, ci = _nearest_index(h, gh, dev), _nearest_index(w, gw, dev)
        area = torch.bincount(ri, minlength=gh).float()[:, None] * torch.bincount(ci, minlength=gw).float()[None, :]
        if block_size > 0:   # block side in grid cells
            bh, bw = max(1, round(block_size * gh / h)), max(1, round(block_size * gw / w))
            bh, bw = min(bh, gh), min(bw, gw)
        else:
            bh, bw = gh, gw
        return cls(c, h, w, 1 if shared else c, smooth, gh, gw, bh, bw, ri, ci, area)

    @property
    def nbh(self) -> int:
        return -(-self.gh // self.bh)

    @property
    def nbw(self) -> int:
        return -(-self.gw // self.bw)

    @property
    def n_blocks(self) -> int:
        return self.nbh * self.nbw

    @property
    def dim(self) -> int:
        return self.nc * self.bh * self.bw

    @property
    def coarse(self) -> bool:
        return (self.gh, self.gw) != (self.h, self.w)

    def upsample(self, z: torch.Tensor) -> torch.Tensor:
        """(k, nc, gh, gw) on the noise grid -> (k, nc, H, W) on the pixels."""
        if not self.coarse:
            return z
        if self.smooth:
            return torch.nn.functional.interpolate(z, size=(self.h, self.w), mode="bilinear", align_corners=False)
        return z[:, :, self.ri][:, :, :, self.ci]

    def to_image(self, gb: torch.Tensor) -> torch.Tensor:
        """(n_blocks, dim) per-block gradients -> (C, H, W); a grid cell's gradient (the sum of its pixels'
        gradients) is shown as the per-pixel mean."""
        g = gb.view(self.nbh, self.nbw, self.nc, self.bh, self.bw).permute(2, 0, 3, 1, 4)
        g = g.reshape(self.nc, self.nbh * self.bh, self.nbw * self.bw)[:, :self.gh, :self.gw]
        return self.upsample((g / self.area)[None])[0] if self.coarse else g
