"""SimSiam's augmentations with torch operations only (no torchvision), batched.

Per image: a random affine crop (scale 0.6–1, i.e. a zoom into 60–100 % of the image, rotation
±0.3 rad, shift ±0.2 in `affine_grid` units, i.e. ±10 % of the side) through
`affine_grid`/`grid_sample`, Gaussian pixel noise (σ 0.2) and, with probability 0.5, an 8×8
square erased. The random numbers come from the generator of the
agent that owns the image, so an agent's views do not depend on who is batched with it.
Images are standardised MNIST; geometry and erasing work on raw pixels (background 0).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from osmotic.data.mnist import MEAN, STD

SCALE, ROTATION, SHIFT, NOISE, ERASE, ERASE_P = (0.6, 1.0), 0.3, 0.2, 0.2, 8, 0.5
UNIFORMS = 7  # per image: scale, rotation, shift x, shift y, erase?, erase x, erase y


def draw(generators: Sequence[torch.Generator], batch: int, side: int = 28) -> tuple[Tensor, Tensor]:
    """Random numbers for one view of `batch` images per generator: uniforms
    [agents, batch, 7] and Gaussian noise [agents, batch, 1, side, side]."""
    u = torch.stack([torch.rand(batch, UNIFORMS, generator=g) for g in generators])
    z = torch.stack([torch.randn(batch, 1, side, side, generator=g) for g in generators])
    return u, z


def augment(x: Tensor, u: Tensor, z: Tensor) -> Tensor:
    """Views of standardised images `x` [n, 1, H, W] from uniforms `u` [n, 7] and noise `z`."""
    n, _, h, w = x.shape
    raw = x * STD + MEAN
    scale = SCALE[0] + (SCALE[1] - SCALE[0]) * u[:, 0]
    angle = ROTATION * (2 * u[:, 1] - 1)
    shift = SHIFT * (2 * u[:, 2:4] - 1)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)  # [n, 2, 3]
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    raw = F.grid_sample(raw, grid, align_corners=False, padding_mode="zeros")
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    top = (u[:, 5] * (h - ERASE + 1)).long().view(n, 1, 1)
    left = (u[:, 6] * (w - ERASE + 1)).long().view(n, 1, 1)
    box = (rows >= top) & (rows < top + ERASE) & (cols >= left) & (cols < left + ERASE)
    erase = box & (u[:, 4] < ERASE_P).view(n, 1, 1)
    raw = raw.masked_fill(erase.unsqueeze(1), 0.0)
    return (raw - MEAN) / STD + NOISE * z / STD
