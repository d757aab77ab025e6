"""Optimisers over a population's stacked parameters, one agent at a time in effect.

Element-wise rules (SGD, AdamW) over the stacked tensors are exactly per-agent optimisation,
with one exception `torch.optim` cannot express: agents that sit out a step (no data left in
their epoch) must not move at all, while AdamW moves any parameter with momentum or weight
decay. So these keep a step count per agent and update only the agents named in `active`.
State is a dict of tensors keyed per agent (`<agent>/opt/<name>`), for checkpoints that load
into any grouping of the same agents.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from osmotic.runtime.population import Population


class Optimizer:
    """Base: `step(active)` after `backward()`; `reset()` forgets the state (a new round)."""

    name: ClassVar[str]
    slots: ClassVar[tuple[str, ...]] = ()

    def __init__(self, pop: Population, lr: float):
        if not lr > 0:
            raise ValueError(f"optimizer lr must be > 0, got {lr}")
        self.pop, self.lr = pop, lr
        self.steps = torch.zeros(len(pop), dtype=torch.long)
        self.buf = {s: {k: torch.zeros_like(v) for k, v in pop.params.items()} for s in self.slots}

    def zero_grad(self) -> None:
        for v in self.pop.params.values():
            v.grad = None

    @torch.no_grad()
    def step(self, active: Tensor | None = None) -> None:
        """Update the agents at positions `active` (all if None; distinct positions) from
        their gradients. When every agent is active the stacks are updated where they are:
        the same numbers, without gathering and scattering every parameter and state."""
        if active is None or len(active) == len(self.pop):
            self.steps += 1
            for k, p in self.pop.params.items():
                if p.grad is not None:
                    p.copy_(self._update(p, p.grad, {s: b[k] for s, b in self.buf.items()},
                                         self.steps))
            return
        idx = active
        self.steps[idx] += 1
        for k, p in self.pop.params.items():
            if p.grad is None:
                continue
            bufs = {s: b[k][idx] for s, b in self.buf.items()}
            new = self._update(p[idx], p.grad[idx], bufs, self.steps[idx])
            p.index_copy_(0, idx, new)
            for s, b in self.buf.items():
                b[k].index_copy_(0, idx, bufs[s])

    def _update(self, p: Tensor, g: Tensor, bufs: dict[str, Tensor], t: Tensor) -> Tensor:
        raise NotImplementedError

    def reset(self) -> None:
        self.steps.zero_()
        for b in self.buf.values():
            for v in b.values():
                v.zero_()

    def state(self) -> dict[str, Tensor]:
        out = {}
        for i, a in enumerate(self.pop.agent_ids):
            out[f"{a}/opt/steps"] = self.steps[i : i + 1].clone()
            out.update({f"{a}/opt/{s}.{k}": v[i].clone()
                        for s, b in self.buf.items() for k, v in b.items()})
        return out

    def load_state(self, state: dict[str, Tensor]) -> None:
        ids = self.pop.agent_ids
        if f"{ids[0]}/opt/steps" not in state:  # a checkpoint from before optimiser state
            return
        self.steps = torch.cat([state[f"{a}/opt/steps"] for a in ids])
        self.buf = {s: {k: torch.stack([state[f"{a}/opt/{s}.{k}"] for a in ids]) for k in b}
                    for s, b in self.buf.items()}


class SGD(Optimizer):
    """Plain SGD, no momentum: p ← p − lr·g (HoAL's local optimiser; stateless)."""

    name = "sgd"

    def _update(self, p: Tensor, g: Tensor, bufs: dict[str, Tensor], t: Tensor) -> Tensor:
        return p.add(g, alpha=-self.lr)


class AdamW(Optimizer):
    """AdamW (decoupled weight decay), as `torch.optim.AdamW` computes it, per agent."""

    name = "adamw"
    slots = ("exp_avg", "exp_avg_sq")

    def __init__(self, pop: Population, lr: float, weight_decay: float = 0.05,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(pop, lr)
        if weight_decay < 0:
            raise ValueError(f"adamw weight_decay must be >= 0, got {weight_decay}")
        self.weight_decay, self.betas, self.eps = weight_decay, betas, eps

    def _update(self, p: Tensor, g: Tensor, bufs: dict[str, Tensor], t: Tensor) -> Tensor:
        b1, b2 = self.betas
        m = bufs["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
        v = bufs["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
        shape = (-1,) + (1,) * (p.dim() - 1)
        c1 = (1 - b1 ** t.double()).to(p.dtype).reshape(shape)
        c2 = (1 - b2 ** t.double()).to(p.dtype).reshape(shape)
        p = p * (1 - self.lr * self.weight_decay)
        return p - self.lr * (m / c1) / ((v / c2).sqrt() + self.eps)


OPTIMIZERS: dict[str, type[Optimizer]] = {o.name: o for o in (SGD, AdamW)}


def make_optimizer(name: str, pop: Population, lr: float, **params: float) -> Optimizer:
    try:
        cls = OPTIMIZERS[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; choose from {sorted(OPTIMIZERS)}") from None
    return cls(pop, lr, **params)
