"""A multilayer perceptron for tabular data (or anything flattened): the default model when the
data are not MNIST-sized images."""
from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import Tensor, nn

from osmotic.models.batched import linear


class MLP(nn.Module):
    """Flattens each sample of shape `input_shape`, then Linear-ReLU layers of widths `hidden`
    and a Linear layer to `num_classes` logits."""

    def __init__(self, input_shape: Sequence[int], num_classes: int,
                 hidden: Sequence[int] = (64, 64)):
        super().__init__()
        if num_classes < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"mlp needs num_classes >= 1 and positive hidden widths, got "
                             f"{num_classes} and {list(hidden)}")
        self.input_dims = len(input_shape)
        widths = [math.prod(input_shape), *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in pairwise(widths):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(widths[-1], num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def batched_forward(self, params: dict[str, Tensor], buffers: dict[str, Tensor],
                        x: Tensor) -> Tensor:
        """`forward` for agents on a leading axis: x [A, B, *input_shape] (or [B, *input_shape],
        the same samples for every agent) -> logits [A, B, classes]. One batched matmul per
        layer for all agents: vmap's per-operation dispatch costs more than a small MLP's
        arithmetic."""
        names = [f"net.{i}" for i, m in enumerate(self.net) if isinstance(m, nn.Linear)]
        h = x.flatten(-self.input_dims) if self.input_dims > 1 else x
        if h.dim() == 2:
            h = h.expand(params[f"{names[0]}.weight"].shape[0], *h.shape)
        for name in names[:-1]:
            h = torch.relu(linear(h, params[f"{name}.weight"], params[f"{name}.bias"]))
        return linear(h, params[f"{names[-1]}.weight"], params[f"{names[-1]}.bias"])
