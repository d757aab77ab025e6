"""Agent models, pluggable by name. Every model is a plain `nn.Module` whose forward uses only
vmap-friendly tensor operations, so a `Population` can batch any of them over agents."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from osmotic.models.cnn import MnistCNN
from osmotic.models.gru import GRUEncoder

MODELS: dict[str, Callable[..., nn.Module]] = {"gru": GRUEncoder, "cnn": MnistCNN}


def register_model(name: str, build: Callable[..., nn.Module]) -> None:
    MODELS[name] = build


def make_model(name: str, **kwargs: object) -> nn.Module:
    try:
        build = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}") from None
    return build(**kwargs)
