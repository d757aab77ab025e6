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
        self._pending: tuple[Tensor, Tensor] | None = None

    def steps(self, split: str) -> int:
        return self.windows[split].shape[1]

    def embed(self, split: str, start: int, stop: int, train: bool = False) -> tuple[Tensor, Tensor]:
        """Embeddings [agents, B, d] and preservation losses [agents] for steps [start, stop).

        With `train`, the graph is kept for the `step` that follows (the paper's forward pass,
        then the update once the context has arrived)."""
        # The batch's windows are copied out of the series' view (B·w·k values per agent):
        # encoders may reshape them as contiguous arrays.
        x = self.windows[split][:, start:stop].contiguous()
        if self._needs_noise:  # evaluation draws its own noise: it must not change training
            noise = self.pop.randn(stop - start, self.config.dim,
                                   stream=None if train else f"eval:{split}:{start}")
        else:
            noise = x.new_zeros(len(self.agent_ids), 1)
        with torch.set_grad_enabled(train):
            e, preserve = self.pop(x, noise)
        if train:
            self._pending = (e, preserve)
        return e.detach(), preserve.detach()

    def step(self, context: Tensor) -> Tensor:
        """One Adam step of every agent towards its context; returns the per-agent losses."""
        if self._pending is None:
            raise RuntimeError("step() needs a training embed() first")
        e, preserve = self._pending
        self._pending = None
        loss = objective(e, preserve, context, self.config.alpha)
        self.optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()  # agents share no parameter: this is every agent's own gradient
        self.optimizer.step()
        return loss.detach()

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
