"""The agent side of OSM-L: a shard of agents that live together (one process or one actor).

A shard owns its agents' windows, models and optimizer. It only ever hands out embeddings and
loss values, and only ever receives context embeddings: that is the whole agent/diffuser
contract, so an engine can put shards anywhere.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from osmotic.osml.agent import OsmoticAgent
from osmotic.osml.config import OsmlConfig
from osmotic.runtime.population import Population


def windows(series: np.ndarray, w: int) -> Tensor:
    """Sliding windows [..., T − w + 1, w, k] of [..., T, k] series (one, or one per agent on a
    leading axis), stride 1, in time order: a view of the float32 series, w times smaller than
    the windows themselves."""
    flat = torch.from_numpy(np.ascontiguousarray(series, dtype=np.float32))
    return flat.unfold(-2, w, 1).transpose(-1, -2)


def parts(agents: int, size: int | None) -> list[slice] | None:
    """Consecutive ranges of `size` agents trained one after another (`OsmlConfig.shard_size`),
    or None where one range would hold them all."""
    if size is None or size >= agents:
        return None
    return [slice(a, min(a + size, agents)) for a in range(0, agents, size)]


def objective(e: Tensor, preserve: Tensor, context: Tensor, alpha: float) -> Tensor:
    """Per-agent L_i = α·MSE(e_i, context_i) + (1 − α)·L_preserve (paper Eqs. 5–7)."""
    return alpha * ((e - context) ** 2).mean((1, 2)) + (1 - alpha) * preserve


class OsmoticShard:
    """Agents with the same feature count, trained batched."""

    def __init__(self, agent_ids: Sequence[str], train: Sequence[np.ndarray],
                 test: Sequence[np.ndarray], config: OsmlConfig):
        k = train[0].shape[1]
        self.config = config
        self.agent_ids = list(agent_ids)
        if config.normalize_inputs:  # each agent's own training statistics: nothing leaves it
            stats = [(s.mean(0), s.std(0) + 1e-8) for s in train]
            train = [(s - m) / sd for s, (m, sd) in zip(train, stats)]
            test = [(s - m) / sd for s, (m, sd) in zip(test, stats)]
        self.windows = {"train": windows(np.stack(train), config.window),  # views: see embed
                        "test": windows(np.stack(test), config.window)}
        self.pop = Population(
            lambda: OsmoticAgent(k, config.window, config.hidden, config.dim, config.preserve,
                                 config.temperature, config.sphere, config.encoder,
                                 config.encoder_params),
            self.agent_ids, config.seed)
        # foreach: one kernel per Adam operation for all tensors, bit-identical to the default
        # per-tensor loop (fused=True is faster still but rounds differently).
        self.optimizer = torch.optim.Adam(self.pop.params.values(), lr=config.lr, foreach=True)
        self._needs_noise = self.pop.template.preserve.needs_noise
        self.parts = parts(len(self.agent_ids), config.shard_size)
        # What `step` needs from the training `embed`: the graph's outputs (e, preserve), or
        # with `parts` the inputs (windows, noise) from which each part's graph is rebuilt.
        self._pending: tuple[Tensor, Tensor] | None = None

    def steps(self, split: str) -> int:
        return self.windows[split].shape[1]

    def embed(self, split: str, start: int, stop: int, train: bool = False) -> tuple[Tensor, Tensor]:
        """Embeddings [agents, B, d] and preservation losses [agents] for steps [start, stop).

        With `train`, the graph is kept for the `step` that follows (the paper's forward pass,
        then the update once the context has arrived); with `parts`, only the inputs are."""
        # The batch's windows are copied out of the series' view (B·w·k values per agent):
        # encoders may reshape them as contiguous arrays.
        x = self.windows[split][:, start:stop].contiguous()
        if self._needs_noise:  # evaluation draws its own noise: it must not change training
            noise = self.pop.randn(stop - start, self.config.dim,
                                   stream=None if train else f"eval:{split}:{start}")
        else:
            noise = x.new_zeros(len(self.agent_ids), 1)
        if train and self.parts is not None:
            self._pending = (x, noise)
            return self._embed_parts(x, noise)
        with torch.set_grad_enabled(train):
            e, preserve = self.pop(x, noise)
        if train:
            self._pending = (e, preserve)
        return e.detach(), preserve.detach()

    def _embed_parts(self, x: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        """The training forward part by part, each part's graph dropped at once. It runs the
        kernels the training step runs (the no-gradient forward rounds differently), so the
        contexts built from these embeddings are those of an unsharded run."""
        e = x.new_empty(len(self.agent_ids), x.shape[1], self.config.dim)
        preserve = x.new_empty(len(self.agent_ids))
        for sl in self.parts or []:
            (e_part, p_part), _ = self.pop.part(sl, x[sl], noise[sl])
            e[sl], preserve[sl] = e_part.detach(), p_part.detach()
        return e, preserve

    def step(self, context: Tensor) -> Tensor:
        """One Adam step of every agent towards its context; returns the per-agent losses."""
        if self._pending is None:
            raise RuntimeError("step() needs a training embed() first")
        pending, self._pending = self._pending, None
        self.optimizer.zero_grad(set_to_none=True)
        if self.parts is None:
            loss = objective(*pending, context, self.config.alpha)
            loss.sum().backward()  # agents share no parameter: every agent's own gradient
        else:
            loss = self._backward_parts(*pending, context)
        self.optimizer.step()
        return loss.detach()

    def _backward_parts(self, x: Tensor, noise: Tensor, context: Tensor) -> Tensor:
        """Every agent's gradient into the stack's `.grad`, one part at a time: each part's
        forward runs again with its graph, which its backward frees before the next part's, so
        activations are held for one part only. Returns the per-agent losses."""
        losses = context.new_empty(len(self.agent_ids))
        grads: dict[str, Tensor] = {}
        for sl in self.parts or []:
            (e, preserve), leaves = self.pop.part(sl, x[sl], noise[sl])
            loss = objective(e, preserve, context[sl], self.config.alpha)
            loss.sum().backward()
            for name, leaf in leaves.items():
                if leaf.grad is not None:  # as unsharded: a parameter no loss uses gets none
                    stack = self.pop.params[name]
                    grads.setdefault(name, torch.empty_like(stack))[sl] = leaf.grad
            losses[sl] = loss.detach()
        for name, g in grads.items():
            self.pop.params[name].grad = g
        return losses

    # -- checkpoints: keyed per agent, so a checkpoint resumes on any grouping of agents ------
    def state(self) -> dict[str, Tensor]:
        """The population's per-agent state plus Adam's moments (`<agent>/exp_avg/<name>`, ...);
        Adam's step count is shared, since agents step together."""
        out = self.pop.agent_state()
        for name, p in self.pop.params.items():
            moments = self.optimizer.state.get(p, {})
            if "step" in moments:
                out["_adam_step"] = moments["step"].clone()
            for m in ("exp_avg", "exp_avg_sq"):
                if m in moments:
                    out.update({f"{a}/{m}/{name}": moments[m][i].clone()
                                for i, a in enumerate(self.agent_ids)})
        return out

    def load_state(self, state: dict[str, Tensor]) -> None:
        """Inverse of `state` for this shard's agents (the checkpoint may hold more). A state
        saved before the first step (epoch 0) clears Adam, as at the start."""
        self.pop.load_agent_state(state)
        self._pending = None
        self.optimizer.state.clear()
        if "_adam_step" in state:
            for name, p in self.pop.params.items():
                self.optimizer.state[p] = {
                    "step": state["_adam_step"].clone(),
                    **{m: torch.stack([state[f"{a}/{m}/{name}"] for a in self.agent_ids])
                       for m in ("exp_avg", "exp_avg_sq")},
                }
