"""The default engine: every shard in this process, arrays passed by reference."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from osmotic.osmosis.shard import OsmoticShard


class InProcessEngine:
    """Runs OSM-L shards in-process; embeddings come back in the global agent order."""

    name = "inprocess"

    def __init__(self, shards: Sequence[OsmoticShard], order: Sequence[str]):
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
