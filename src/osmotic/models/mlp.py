"""A multilayer perceptron for tabular data (or anything flattened): the default model when the
data are not MNIST-sized images."""
from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

from torch import Tensor, nn


class MLP(nn.Module):
    """Flattens each sample of shape `input_shape`, then Linear-ReLU layers of widths `hidden`
    and a Linear layer to `num_classes` logits."""

    def __init__(self, input_shape: Sequence[int], num_classes: int,
                 hidden: Sequence[int] = (64, 64)):
        super().__init__()
        if num_classes < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"mlp needs num_classes >= 1 and positive hidden widths, got "
                             f"{num_classes} and {list(hidden)}")
        widths = [math.prod(input_shape), *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in pairwise(widths):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(widths[-1], num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
