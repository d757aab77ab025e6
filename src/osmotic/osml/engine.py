"""OSM-L's engines: where the agents' shards live and how their embeddings travel.

`InProcessEngine` runs every shard in this process, passing arrays by reference; `RayEngine`
puts shards on Ray actors (each actor holds an `InProcessEngine` for its agents, so inside an
actor agents run batched with exactly the in-process code) and per batch only embeddings
travel, as NumPy arrays. Seeds are per agent, so the numbers do not depend on the number of
actors.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from osmotic.engines.inprocess import heap_kept
from osmotic.engines.ray import ActorPool


class Shard(Protocol):
    """Agents of one architecture that embed a span of steps and take an aligning step (an
    OSM-L `OsmoticShard`); the engine only moves their arrays."""

    agent_ids: list[str]

    def embed(self, split: str, start: int, stop: int, train: bool) -> tuple[Tensor, Tensor]: ...

    def step(self, C: Tensor) -> Tensor: ...

    def state(self) -> dict[str, Tensor]: ...

    def load_state(self, state: dict[str, Tensor]) -> None: ...


class InProcessEngine:
    """Runs OSM-L shards in-process; embeddings come back in the global agent order."""

    name = "inprocess"

    def __init__(self, shards: Sequence[Shard], order: Sequence[str]):
        self.shards = list(shards)
        concatenated = [a for sh in self.shards for a in sh.agent_ids]
        self._perm = torch.tensor([concatenated.index(a) for a in order])  # global -> concatenated
        self._inverse = torch.argsort(self._perm)

    def embed(self, split: str, start: int, stop: int, train: bool = False) -> tuple[Tensor, Tensor]:
        with heap_kept() if train else nullcontext():
            parts = [sh.embed(split, start, stop, train) for sh in self.shards]
        E = torch.cat([p[0] for p in parts])[self._perm]
        P = torch.cat([p[1] for p in parts])[self._perm]
        return E, P

    def step(self, C: Tensor) -> Tensor:
        C = C[self._inverse]
        losses, offset = [], 0
        with heap_kept():
            for sh in self.shards:
                n = len(sh.agent_ids)
                losses.append(sh.step(C[offset : offset + n]))
                offset += n
        return torch.cat(losses)[self._perm]

    def embed_numpy(self, split: str, start: int, stop: int, train: bool) -> tuple[np.ndarray, np.ndarray]:
        """`embed` as NumPy arrays, the form in which embeddings travel between processes."""
        E, P = self.embed(split, start, stop, train)
        return E.numpy(), P.numpy()

    def step_numpy(self, C: np.ndarray) -> np.ndarray:
        return self.step(torch.from_numpy(C)).numpy()

    def state(self) -> dict[str, Tensor]:
        return {k: v for sh in self.shards for k, v in sh.state().items()}

    def load_state(self, state: dict[str, Tensor]) -> None:
        for sh in self.shards:
            sh.load_state(state)

    def recover(self) -> None:
        """Nothing runs elsewhere, so nothing can be lost."""


class RayEngine:
    """OSM-L agents over Ray actors; the same interface as `InProcessEngine`."""

    name = "ray"

    def __init__(self, ids: Sequence[str], build: Callable[[list[str]], Callable[[], InProcessEngine]],
                 **pool: Any):
        self.pool = ActorPool(ids, build, **pool)

    def recover(self) -> None:
        self.pool.recover()

    def shutdown(self) -> None:
        self.pool.shutdown()

    def embed(self, split: str, start: int, stop: int, train: bool = False) -> tuple[Tensor, Tensor]:
        parts = self.pool.broadcast("embed_numpy", split, start, stop, train)
        return (torch.from_numpy(np.concatenate([p[0] for p in parts])),
                torch.from_numpy(np.concatenate([p[1] for p in parts])))

    def step(self, C: Tensor) -> Tensor:
        return torch.from_numpy(np.concatenate(self.pool.call("step_numpy", self.pool.scatter(C.numpy()))))

    def state(self) -> dict[str, Tensor]:
        return {k: v for part in self.pool.broadcast("state") for k, v in part.items()}

    def load_state(self, state: dict[str, Tensor]) -> None:
        self.pool.broadcast("load_state", state)
