"""Models of a user's own, imported by path in the tests (`tests.models.usernets:Name`)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from osmotic.models import model_factory


class TabularNet(nn.Module):
    """Fine: takes `in_features` and `num_classes` from the data."""

    def __init__(self, in_features: int, num_classes: int, width: int = 32):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, width), nn.Tanh(),
                                  nn.Linear(width, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class ItemNet(TabularNet):
    """Data-dependent control flow: vmap cannot batch `.item()`."""

    def forward(self, x: Tensor) -> Tensor:
        h = self.body(x)
        if h.sum().item() > 0:
            h = h * 2
        return h


class DropoutNet(TabularNet):
    """nn.Dropout draws its own randomness, which vmap refuses by default."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__(in_features, num_classes)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(self.drop(x))


def wide_tabular(in_features: int, num_classes: int) -> nn.Module:
    """A function returning a module works as well as a class."""
    return TabularNet(in_features, num_classes, width=64)


@model_factory
def marked_tabular(in_features, num_classes):
    """A factory without annotations is accepted when marked @model_factory."""
    return TabularNet(in_features, num_classes, width=16)


def unmarked_tabular(in_features, num_classes):
    """Neither marked nor annotated: a config may not call it."""
    return TabularNet(in_features, num_classes)


class WrongOutput(TabularNet):
    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.body(x), self.body(x)], dim=1)


class WindowEncoder(nn.Module):
    """An OSM-L encoder g_i of the user's: an MLP over the flattened window [batch, w, k]."""

    def __init__(self, in_features: int, window: int, width: int = 8):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(window * in_features, width), nn.Tanh())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ItemEncoder(WindowEncoder):
    def forward(self, x: Tensor) -> Tensor:
        return self.net(x) * float(x.abs().max().item())
