"""Layers over an explicit leading agent axis: agent a uses its own weights `w[a]`.

These are what a model's `batched_forward(params, *args)` is written with (see
`runtime.population.Population`): one kernel for all agents instead of `vmap` re-dispatching
every small operation of every layer. Each equals the `torch.nn` layer run agent by agent
(tests/models/test_batched.py).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap


def batched_call(module: nn.Module, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor],
                 *args: Tensor) -> Any:
    """`module`'s forward for agents on a leading axis, agent a with `params[name][a]` and
    `buffers[name][a]`: the module's own `batched_forward(params, buffers, *args)` when it has
    one, else `vmap` over `functional_call` (any module works; the first skips vmap's
    per-operation dispatch, which for small per-agent models costs more than the arithmetic)."""
    batched = getattr(module, "batched_forward", None)
    if batched is not None:
        return batched(params, buffers, *args)
    return vmap(lambda p, b, *a: functional_call(module, (p, b), a))(dict(params), dict(buffers),
                                                                     *args)


def linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """`nn.Linear` per agent: x [A, ..., in], weight [A, out, in], bias [A, out]."""
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    out = torch.baddbmm(bias.unsqueeze(1), flat, weight.transpose(1, 2))
    return out.view(*x.shape[:-1], weight.shape[1])


def sub(params: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries of a submodule (`prefix` ends with '.'), keyed by their names inside it."""
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
