"""SimSiam's augmentations with torch operations only (no torchvision), batched.

Per image: a random affine crop (scale 0.6–1, i.e. a zoom into 60–100 % of the image, rotation
±0.3 rad, shift ±0.2 in `affine_grid` units, i.e. ±10 % of the side) through
`affine_grid`/`grid_sample`, Gaussian pixel noise (σ 0.2) and, with probability 0.5, an 8×8
square erased (8×8 on 28×28 images; on other sizes the square scales with the side). The
random numbers come from the generator of the agent that owns the image, so an agent's views do
not depend on who is batched with it. Images of any size [C, H, W] are standardised; geometry
and erasing work on raw pixels in [0, 1] (background 0), noise is added per channel. By default
the standardisation is MNIST's (`MEAN`, `STD`); for other data `pixels` gives it per channel
(`pixel_scale`: raw 0 and 1 estimated as the pool's per-channel minimum and maximum).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from osmotic.data.mnist import MEAN, STD

SCALE, ROTATION, SHIFT, NOISE, ERASE, ERASE_P = (0.6, 1.0), 0.3, 0.2, 0.2, 8, 0.5
UNIFORMS = 7  # per image: scale, rotation, shift x, shift y, erase?, erase x, erase y


@dataclass(frozen=True)
class Pixels:
    """Per-channel standardisation of images: raw pixels in [0, 1] are `x * std + mean`."""

    mean: Tensor  # [C]
    std: Tensor  # [C]


def pixel_scale(images: Tensor) -> Pixels:
    """The standardisation of `images` [n, C, H, W] (already standardised), taking each
    channel's minimum as raw 0 (black) and its maximum as raw 1: exact for images whose pixels
    span [0, 1] before standardisation, as those of most image sets do."""
    lo = images.amin((0, 2, 3)).double()
    hi = images.amax((0, 2, 3)).double()
    span = (hi - lo).clamp_min(1e-6)
    return Pixels((-lo / span).float(), (1 / span).float())


def draw(generators: Sequence[torch.Generator], batch: int,
         shape: int | tuple[int, ...] = 28) -> tuple[Tensor, Tensor]:
    """Random numbers for one view of `batch` images per generator: uniforms
    [agents, batch, 7] and Gaussian noise [agents, batch, C, H, W] (`shape` (C, H, W), or one
    side for 1×side×side)."""
    shape = (1, shape, shape) if isinstance(shape, int) else tuple(shape)
    u = torch.stack([torch.rand(batch, UNIFORMS, generator=g) for g in generators])
    z = torch.stack([torch.randn(batch, *shape, generator=g) for g in generators])
    return u, z


def augment(x: Tensor, u: Tensor, z: Tensor, pixels: Pixels | None = None) -> Tensor:
    """Views of standardised images `x` [n, C, H, W] from uniforms `u` [n, 7] and noise `z`
    [n, C, H, W]; `pixels`: their standardisation (default MNIST's)."""
    n, c, h, w = x.shape
    mean, std = (MEAN, STD) if pixels is None else \
        (pixels.mean.view(1, c, 1, 1), pixels.std.view(1, c, 1, 1))
    raw = x * std + mean
    scale = SCALE[0] + (SCALE[1] - SCALE[0]) * u[:, 0]
    angle = ROTATION * (2 * u[:, 1] - 1)
    shift = SHIFT * (2 * u[:, 2:4] - 1)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)  # [n, 2, 3]
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    raw = F.grid_sample(raw, grid, align_corners=False, padding_mode="zeros")
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    eh, ew = erase_size(h), erase_size(w)
    top = (u[:, 5] * (h - eh + 1)).long().view(n, 1, 1)
    left = (u[:, 6] * (w - ew + 1)).long().view(n, 1, 1)
    box = (rows >= top) & (rows < top + eh) & (cols >= left) & (cols < left + ew)
    erase = box & (u[:, 4] < ERASE_P).view(n, 1, 1)
    raw = raw.masked_fill(erase.unsqueeze(1), 0.0)
    return (raw - mean) / std + NOISE * z / std


def erase_size(side: int) -> int:
    """Side of the erased square: `ERASE` on a 28-pixel side, in proportion on others."""
    return ERASE if side == 28 else max(1, round(ERASE * side / 28))
