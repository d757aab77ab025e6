"""A model of your own, for `model: my_models:TabularNet`: a config file in this folder finds it;
from Python, the script's folder must be on the path (`python examples/<script>.py` puts it
there).

Any `nn.Module` works if its forward uses tensor operations only (no `.item()`, no Python `if`
on tensor values, no `nn.Dropout`: `torch.func.vmap` batches it over agents, and the run checks
that once before training). Constructor arguments named `in_features`, `input_shape` or
`num_classes` are filled in from the data; the others come from `model_params`.
"""
from __future__ import annotations

from torch import Tensor, nn


class TabularNet(nn.Module):
    """Two hidden layers with a skip connection, for rows of `in_features` numbers."""

    def __init__(self, in_features: int, num_classes: int, width: int = 64):
        super().__init__()
        self.inp = nn.Linear(in_features, width)
        self.hidden = nn.Linear(width, width)
        self.out = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp(x).relu()
        return self.out(h + self.hidden(h).relu())
