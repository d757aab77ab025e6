"""A tiny Vision Transformer for 28×28 images, and a small CNN backbone, for self-supervised study.

ViT: patch 7 → 16 tokens, width 64, depth 4, 4 heads, MLP 128, pre-norm blocks, mean-pooled
64-d feature. Attention is written with matrix products (no fused `nn.MultiheadAttention`
kernel), so `vmap` over a `Population` batches it over agents. `encode(x, keep)` runs the
encoder on the visible patches only (MAE); `forward(x)` is the mean-pooled feature of all.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PATCH, SIDE = 7, 28
TOKENS = (SIDE // PATCH) ** 2  # 16
PATCH_DIM = PATCH * PATCH  # 49 pixels of one channel


def patchify(x: Tensor) -> Tensor:
    """[batch, 1, 28, 28] images → [batch, 16, 49] patches in row-major order."""
    g = SIDE // PATCH
    return x.reshape(x.shape[0], g, PATCH, g, PATCH).permute(0, 1, 3, 2, 4).reshape(
        x.shape[0], TOKENS, PATCH_DIM)


def gather_tokens(t: Tensor, idx: Tensor) -> Tensor:
    """Tokens `t` [batch, tokens, d] at positions `idx` [batch, k] → [batch, k, d]."""
    return torch.gather(t, 1, idx.unsqueeze(-1).expand(-1, -1, t.shape[-1]))


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(LN x), then x + MLP(LN x)."""

    def __init__(self, width: int, heads: int, mlp: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"vit width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        # No key bias (as BEiT): it shifts every score of a query equally, so softmax ignores
        # it and its gradient is rounding noise, which Adam would blow up to full-size steps.
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(width)), nn.Parameter(torch.zeros(width))
        self.proj = nn.Linear(width, width)
        self.fc1, self.fc2 = nn.Linear(width, mlp), nn.Linear(mlp, width)

    def forward(self, x: Tensor) -> Tensor:
        b, n, w = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        q, k, v = F.linear(self.norm1(x), self.qkv.weight, bias) \
            .reshape(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)  # [b, h, n, w/h]
        att = torch.softmax(q @ k.transpose(-2, -1) * (w // self.heads) ** -0.5, dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, n, w))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class TinyViT(nn.Module):
    """Images [batch, 1, 28, 28] → features [batch, width]."""

    def __init__(self, width: int = 64, depth: int = 4, heads: int = 4, mlp: int = 128):
        super().__init__()
        self.width = self.feature_dim = width
        self.embed = nn.Linear(PATCH_DIM, width)
        self.pos = nn.Parameter(torch.randn(TOKENS, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads, mlp) for _ in range(depth))
        self.norm = nn.LayerNorm(width)

    def encode(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """Encoded tokens [batch, k, width] of the patches at `keep` [batch, k] (all 16 if None):
        the others are dropped before the first block, so they cost nothing (MAE)."""
        t = self.embed(patchify(x)) + self.pos
        if keep is not None:
            t = gather_tokens(t, keep)
        for block in self.blocks:
            t = block(t)
        return self.norm(t)

    def forward(self, x: Tensor) -> Tensor:
        return self.encode(x).mean(1)


class SmallCNN(nn.Module):
    """conv 32-64-128 (3×3, ReLU), max-pool after the first two, global average pool → 128-d.
    The architecture check: a random CNN is already a strong feature extractor on MNIST."""

    def __init__(self, channels: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        c1, c2, c3 = channels
        self.feature_dim = c3
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return F.relu(self.conv3(h)).mean((2, 3))
