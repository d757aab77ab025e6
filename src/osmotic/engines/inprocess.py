"""The default engine: every shard in this process, arrays passed by reference."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import numpy as np
import torch
from torch import Tensor


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run with `n` intra-op threads, then restore. Per-agent operations are tiny, so extra
    threads mostly synchronise; on a loaded 2-core machine two threads ran 20x slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
        parts = [sh.embed(split, start, stop, train) for sh in self.shards]
        E = torch.cat([p[0] for p in parts])[self._perm]
        P = torch.cat([p[1] for p in parts])[self._perm]
        return E, P

    def step(self, C: Tensor) -> Tensor:
        C = C[self._inverse]
        losses, offset = [], 0
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

