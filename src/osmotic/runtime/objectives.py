"""Local objectives: what an agent minimises on its own data, pluggable into the local loop.

An objective builds the module an agent trains (a classifier as it is, or a backbone wrapped
with the heads a self-supervised method needs) and computes, for a batch of rows per agent,
each agent's mean loss. Randomness an objective needs (dropout, augmentations, masks) is drawn
from each agent's own generator (`Population.generators`), so an agent's numbers do not depend
on which agents it is batched with. Objectives that carry state between rounds (MAR's
reference latents) expose it through `state`/`load_state`, keyed per agent.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from osmotic.runtime.population import Population


class Objective:
    """Base class: supervised or self-supervised loss of a population on per-agent batches."""

    name: ClassVar[str]

    def build(self, backbone: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        """The builder of the module agents train, given the backbone's builder."""
        return backbone

    def loss(self, pop: Population, x: Tensor, y: Tensor, weight: Tensor,
             agents: Tensor) -> Tensor:
        """Mean loss [len(agents)] of the agents at positions `agents` on rows `x` [A, B, ...]
        (labels `y` [A, B]; `weight` [A, B]: 1 real row, 0 padding)."""
        raise NotImplementedError

    def state(self, ids: list[str]) -> dict[str, Tensor]:
        """State carried between rounds for agents `ids` (in population order), keyed
        `<agent>/...`; none by default."""
        return {}

    def load_state(self, state: dict[str, Tensor], ids: list[str]) -> None:
        """Inverse of `state` (nothing by default)."""


class CrossEntropy(Objective):
    """Supervised classification; dropout noise (models with `NOISE_WIDTH`) comes in as one
    [batch, width] uniform draw per step from each active agent's generator."""

    name = "cross_entropy"

    def loss(self, pop: Population, x: Tensor, y: Tensor, weight: Tensor,
             agents: Tensor) -> Tensor:
        width = int(getattr(pop.template, "NOISE_WIDTH", 0))
        noise = [pop.rand(x.shape[1], width, agents=agents.tolist())] if width else []
        logits = pop(x, *noise, agents=agents)
        ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        return (ce.view_as(weight) * weight).sum(1) / weight.sum(1)
