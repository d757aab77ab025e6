"""Agent models, pluggable by name or by import path. Every model is a plain `nn.Module` whose
forward uses only vmap-friendly tensor operations, so a `Population` can batch any of them over
agents; `check_batched` tells, before a run starts, whether a model of the user's does.

A model is named in a config either by a registered name (`cnn`, `gru`, `mlp`) or by an import
path `package.module:Attribute` (or `/abs/dir/module.py:Attribute`), built with the config's
`model_params`. Arguments the data decide (`input_shape`, `in_features`, `num_classes`) are
passed when the constructor takes them and `model_params` does not set them.

A settings file is data, so it may name code only where code is meant: the attribute must be an
`nn.Module` subclass or a model factory, a function marked `@model_factory` or annotated to
return one (`-> nn.Module`). Anything else (`os:system`, `builtins:print`) is refused before it
is called. Modules are looked up on the Python path, then beside the settings file that names
them (`with_folder`) or in the working directory; one found only there is recorded as its
absolute file, so a resume from any folder, or a Ray worker, imports the same file again.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import inspect
import math
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from osmotic.models.cnn import MnistCNN
from osmotic.models.gru import GRUEncoder
from osmotic.models.mlp import MLP
from osmotic.models.vit import SmallCNN, TinyViT

MODELS: dict[str, Callable[..., nn.Module]] = {"gru": GRUEncoder, "cnn": MnistCNN, "mlp": MLP}
F = TypeVar("F", bound=Callable[..., nn.Module])
FACTORY_MARK = "__osmotic_model_factory__"


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


def model_factory(build: F) -> F:
    """Mark a function as a model factory, so that a config may name it by import path (a
    function annotated `-> nn.Module` needs no mark)."""
    setattr(build, FACTORY_MARK, True)
    return build


def locate_model(name: str, folder: str | Path | None = None) -> str:
    """`name` as a run records it: unchanged when registered or when its module is on the
    Python path; else, when the module is a file in `folder` (default: the working directory),
    that file's absolute form `/abs/folder/module.py:Attribute`."""
    module, sep, attr = name.rpartition(":")
    if name in MODELS or not sep or module.endswith(".py") or _on_path(module):
        return name
    base = Path.cwd() if folder is None else Path(folder)
    rel = Path(*module.split("."))
    for file in (base / rel.with_suffix(".py"), base / rel / "__init__.py"):
        if file.is_file():
            return f"{file.resolve()}:{attr}"
    return name


def resolve_model(name: str) -> Callable[..., nn.Module]:
    """The constructor a model name stands for: a registered name, or `module:Attribute`
    naming an `nn.Module` subclass or a model factory (looked up as `locate_model` says)."""
    if name in MODELS:
        return MODELS[name]
    if ":" not in name:
        raise ModelError(f"model: unknown {name!r}; choose from {sorted(MODELS)} or give an "
                         "import path package.module:Class")
    module_name, _, attr = locate_model(name).rpartition(":")
    if "<locals>" in attr:
        raise ModelError(f"model {name}: defined inside a function, so only the process that "
                         "defined it can build it; define it at module level")
    build: Any = _import(name, module_name)
    for part in attr.split("."):
        build = getattr(build, part, None)
        if build is None:
            raise ModelError(f"model {name}: module {module_name!r} has no attribute {attr!r}")
    if not _is_model(build):
        raise ModelError(f"model {name}: refused, {attr!r} is neither an nn.Module subclass "
                         "nor a model factory (a function marked @osmotic.models.model_factory "
                         "or annotated -> nn.Module)")
    return build


def _on_path(module: str) -> bool:
    """Whether the top package of `module` is a file on the Python path (one imported earlier
    from a settings file's folder is not: a run records it by its file)."""
    top = module.split(".")[0]
    try:
        return importlib.machinery.PathFinder.find_spec(top) is not None
    except (ImportError, ValueError):  # an empty or odd name: not on the path
        return False


def _import(name: str, module_name: str) -> Any:
    """The module `module_name` (a dotted name, or an absolute .py file), or one line saying
    where it was looked for."""
    if module_name.endswith(".py"):
        return _import_file(name, Path(module_name))
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name + ".").startswith(e.name + "."):  # the module itself
            raise ModelError(
                f"model {name}: cannot import {module_name!r} (ModuleNotFoundError: not on the "
                f"Python path, beside the settings file or in {Path.cwd()})") from None
        raise ModelError(f"model {name}: cannot import {module_name!r} (ModuleNotFoundError: "
                         f"{e})") from None
    except Exception as e:  # noqa: BLE001 - any failure while importing the user's module
        raise ModelError(f"model {name}: cannot import {module_name!r} ({type(e).__name__}: "
                         f"{e})") from None


def _import_file(name: str, file: Path) -> Any:
    """The module of a .py file, imported under its dotted name from the folder above its
    packages (so its own imports work, and its classes pickle by reference)."""
    if not file.is_file():
        raise ModelError(f"model {name}: no such file {file}")
    root, parts = file.parent, [] if file.stem == "__init__" else [file.stem]
    if not parts:
        parts, root = [root.name], root.parent
    while (root / "__init__.py").is_file():
        parts, root = [root.name, *parts], root.parent
    dotted = ".".join(parts)
    if dotted not in sys.modules:
        importlib.invalidate_caches()  # a file written moments ago
        sys.path.insert(0, str(root))
        try:
            _import(name, dotted)
        finally:
            sys.path.remove(str(root))
    loaded = sys.modules[dotted]
    if Path(getattr(loaded, "__file__", None) or "").resolve() != file.resolve():
        raise ModelError(f"model {name}: another module {dotted!r} is already imported (from "
                         f"{getattr(loaded, '__file__', None)}); rename {file.name}")
    return loaded


def _is_model(build: Any) -> bool:
    """An `nn.Module` subclass, or a function marked `@model_factory` or annotated to return
    an `nn.Module` (subclass): the only things a config may have called."""
    if isinstance(build, type):
        return issubclass(build, nn.Module)
    if not inspect.isfunction(build):
        return False
    if getattr(build, FACTORY_MARK, False):
        return True
    try:
        returns = typing.get_type_hints(build).get("return")
    except Exception:  # noqa: BLE001 - an annotation that cannot be evaluated: no factory
        return False
    return isinstance(returns, type) and issubclass(returns, nn.Module)


def make_model(name: str, **kwargs: object) -> nn.Module:
    return resolve_model(name)(**kwargs)


def with_arguments(name: str, params: Mapping[str, Any],
                   offered: Mapping[str, Any]) -> dict[str, Any]:
    """`params` plus those `offered` arguments that the constructor of `name` accepts and
    `params` does not set."""
    return {**accepted_arguments(resolve_model(name), offered), **params}


def accepted_arguments(build: Callable[..., nn.Module], offered: Mapping[str, Any]
                       ) -> dict[str, Any]:
    """Those `offered` arguments that `build` takes (none when it has no signature to read)."""
    try:
        accepted = inspect.signature(build).parameters
    except (TypeError, ValueError):  # a builtin or C callable
        return {}
    return {k: v for k, v in offered.items() if k in accepted}


def data_arguments(name: str, params: Mapping[str, Any], input_shape: Sequence[int],
                   classes: int) -> dict[str, Any]:
    """`params` plus what the data decide: `input_shape`, `in_features`, `num_classes`."""
    return with_arguments(name, params, {"input_shape": tuple(input_shape),
                                         "in_features": math.prod(input_shape),
                                         "num_classes": classes})
