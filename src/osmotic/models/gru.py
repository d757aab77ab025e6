"""A GRU encoder written with plain tensor operations.

`torch.nn.GRU` calls a fused kernel that `vmap` cannot batch over agents; this module computes
the same recurrence (PyTorch's gate equations and initialisation) with matrix products, which
vmap turns into batched matrix products over the agent axis.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class GRUEncoder(nn.Module):
    """Reads a window [batch, w, k] and returns the last hidden state [batch, hidden]."""

    def __init__(self, in_features: int, hidden: int = 20):
        super().__init__()
        self.hidden = hidden
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden, in_features))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden, hidden))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden))
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden))
        bound = 1.0 / math.sqrt(hidden)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        gi = x @ self.weight_ih.T + self.bias_ih  # [batch, w, 3h], all steps at once
        h = x.new_zeros(x.shape[0], self.hidden)
        for t in range(x.shape[1]):
            gh = h @ self.weight_hh.T + self.bias_hh
            ir, iz, in_ = gi[:, t].chunk(3, dim=-1)
            hr, hz, hn = gh.chunk(3, dim=-1)
            r = torch.sigmoid(ir + hr)
            z = torch.sigmoid(iz + hz)
            n = torch.tanh(in_ + r * hn)
            h = (1 - z) * n + z * h
        return h
