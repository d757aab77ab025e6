"""The diffuser: the head of an OSM-L run.

It receives every agent's embeddings for a batch of steps, computes one context embedding per
sub-context and step with its osmotic strategy, and sends each agent the context it should
align to. Every `cluster_every` epochs it regroups agents into sub-contexts from the agents'
current embeddings of sampled steps. It never sees data or weights.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from osmotic.osmosis.clustering import Clustering, cluster
from osmotic.runtime.strategies import Strategy


class Diffuser:
    """Context embeddings for `n_agents` agents under a strategy and a sub-context partition.

    Its keyword defaults are the paper's rules; `OsmlConfig` holds the tool's defaults."""

    def __init__(self, n_agents: int, strategy: Strategy, *, unclustered: str = "global",
                 threshold: float = 0.97, beta: float = 2.0, samples: int = 50,
                 min_rank: float = 0.0, seed: int = 0):
        if unclustered not in ("global", "rest", "self", "nearest"):
            raise ValueError(f"unclustered must be global, rest, self or nearest, got {unclustered!r}")
        self.n = n_agents
        self.strategy = strategy
        self.unclustered = unclustered
        self.threshold, self.beta, self.samples, self.min_rank = threshold, beta, samples, min_rank
        self.rng = np.random.default_rng(seed)
        self.groups: list[list[int]] = [list(range(n_agents))]  # one context until clustered
        self.history: list[Clustering] = []

    @property
    def clustered(self) -> frozenset[int]:
        """Agents in some sub-context."""
        return frozenset(i for g in self.groups for i in g)

    def contexts(self, E: Tensor) -> Tensor:
        """The context each agent aligns to, [agents, steps, d], for embeddings E of the same shape."""
        E = E.detach()
        out = torch.empty_like(E)
        group_ctx = [self.strategy.aggregate(E[g]) for g in self.groups]
        for g, c in zip(self.groups, group_ctx):
            out[g] = c
        clustered = self.clustered
        loose = [i for i in range(self.n) if i not in clustered]
        if loose:
            if self.unclustered == "self":
                out[loose] = E[loose]
            elif self.unclustered == "rest":
                out[loose] = self.strategy.aggregate(E[loose])
            elif self.unclustered == "global" or not group_ctx:
                out[loose] = self.strategy.aggregate(E)
            else:  # nearest: the sub-context whose context agrees best with the agent over the batch
                C = torch.stack(group_ctx)  # [groups, steps, d]
                agree = F.cosine_similarity(E[loose].unsqueeze(1), C.unsqueeze(0), dim=-1).mean(-1)
                out[loose] = C[agree.argmax(1)]
        return out

    def cluster(self, epoch: int, E: Tensor) -> Clustering:
        """Regroup agents from S randomly sampled steps of their training embeddings E
        [agents, steps, d], made by the agents' current models.

        Current, not the embeddings that arrived during the epoch: those come from models that
        moved after every batch, and that drift alone gives two pure-noise agents a shared
        trend over the epoch (sampled rank up to 0.66 on the paper's `robust` data, where the
        current models give 0.47–0.53), while it blurs the agreement of related agents."""
        pick = np.sort(self.rng.choice(E.shape[1], size=min(self.samples, E.shape[1]), replace=False))
        groups, scores, ranks = cluster(E[:, pick], self.threshold, self.beta, self.min_rank)
        self.groups = groups
        record = Clustering(epoch, groups, scores, ranks)
        self.history.append(record)
        return record

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """(tensors, JSON-able rest) for a checkpoint: the sub-contexts, the clustering
        history and the sampling RNG."""
        tensors = {}
        for k, c in enumerate(self.history):  # n×n matrices: tensors, not JSON (header limit)
            tensors[f"history/{k}/scores"] = torch.from_numpy(np.asarray(c.scores, np.float32))
            tensors[f"history/{k}/ranks"] = torch.from_numpy(np.asarray(c.ranks, np.float32))
        return tensors, {
            "groups": self.groups,
            "rng": self.rng.bit_generator.state,
            "history": [{"epoch": c.epoch, "groups": c.groups} for c in self.history],
        }

    def load_state(self, tensors: dict[str, Tensor], rest: dict[str, Any]) -> None:
        self.groups = [list(g) for g in rest["groups"]]
        self.rng.bit_generator.state = rest["rng"]
        self.history = [Clustering(h["epoch"], h["groups"], tensors[f"history/{k}/scores"].numpy(),
                                   tensors[f"history/{k}/ranks"].numpy())
                        for k, h in enumerate(rest["history"])]

