"""Agent models, pluggable by name or by import path. Every model is a plain `nn.Module` whose
forward uses only vmap-friendly tensor operations, so a `Population` can batch any of them over
agents; `check_batched` tells, before a run starts, whether a model of the user's does.

A model is named in a config either by a registered name (`cnn`, `gru`, `mlp`) or by an import
path `package.module:Attribute` (a class or a function returning a module), built with the
config's `model_params`. Arguments the data decide (`input_shape`, `in_features`,
`num_classes`) are passed when the constructor takes them and `model_params` does not set them.
"""
from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from osmotic.models.cnn import MnistCNN
from osmotic.models.gru import GRUEncoder
from osmotic.models.mlp import MLP
from osmotic.models.vit import SmallCNN, TinyViT

MODELS: dict[str, Callable[..., nn.Module]] = {"gru": GRUEncoder, "cnn": MnistCNN, "mlp": MLP}


class ModelError(ValueError):
    """A model that cannot be found, built or batched: one line naming it."""


BACKBONES: dict[str, Callable[..., nn.Module]] = {"vit": TinyViT, "cnn": SmallCNN}
"""Feature extractors for self-supervised pre-training (`feature_dim` attribute, forward →
[batch, feature_dim]); `vit` also has `encode(x, keep)` over visible patches (MAE)."""


def register_model(name: str, build: Callable[..., nn.Module]) -> None:
    MODELS[name] = build


def register_backbone(name: str, build: Callable[..., nn.Module]) -> None:
    """Make an encoder of your own available to D-SSL (`backbone: NAME`): a module with a
    `feature_dim` attribute whose forward maps [batch, 1, 28, 28] to [batch, feature_dim]
    (SimSiam); MAE and MAR also need `encode(x, keep)` over visible 7×7 patches."""
    BACKBONES[name] = build


def resolve_model(name: str) -> Callable[..., nn.Module]:
    """The constructor a model name stands for: a registered name or `module:attribute`."""
    if name in MODELS:
        return MODELS[name]
    if ":" not in name:
        raise ModelError(f"model: unknown {name!r}; choose from {sorted(MODELS)} or give an "
                         "import path package.module:Class")
    module_name, _, attr = name.partition(":")
    if "<locals>" in attr:
        raise ModelError(f"model {name}: defined inside a function, so only the process that "
                         "defined it can build it; define it at module level")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any failure while importing the user's module
        raise ModelError(f"model {name}: cannot import {module_name!r} ({type(e).__name__}: "
                         f"{e})") from None
    build = module
    for part in attr.split("."):
        build = getattr(build, part, None)
        if build is None:
            raise ModelError(f"model {name}: module {module_name!r} has no attribute {attr!r}")
    if not callable(build):
        raise ModelError(f"model {name}: {attr!r} is not a class or function")
    return build


def make_model(name: str, **kwargs: object) -> nn.Module:
    return resolve_model(name)(**kwargs)


def with_arguments(name: str, params: Mapping[str, Any],
                   offered: Mapping[str, Any]) -> dict[str, Any]:
    """`params` plus those `offered` arguments that the constructor of `name` accepts and
    `params` does not set."""
    build = resolve_model(name)
    try:
        accepted = inspect.signature(build).parameters
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        accepted = {}
    return {**{k: v for k, v in offered.items() if k in accepted}, **params}


def data_arguments(name: str, params: Mapping[str, Any], input_shape: Sequence[int],
                   classes: int) -> dict[str, Any]:
    """`params` plus what the data decide: `input_shape`, `in_features`, `num_classes`."""
    return with_arguments(name, params, {"input_shape": tuple(input_shape),
                                         "in_features": math.prod(input_shape),
                                         "num_classes": classes})
