"""The diffuser: the head of an OSM-L run.

It receives every agent's embeddings for a batch of steps, computes one context embedding per
sub-context and step with its osmotic strategy, and sends each agent the context it should
align to. Every `cluster_every` epochs it regroups agents into sub-contexts from the agents'
current embeddings of sampled steps, and puts agents that may belong to a sub-context they are
not in on probation (see `cluster`). It never sees data or weights.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from osmotic.osml.clustering import Clustering, average_linkage, cluster, membership_changes
from osmotic.osml.metrics import mapped_ranks
from osmotic.runtime.strategies import Strategy

JOIN_BLOCK = 50
"""Steps per block of `mapped_ranks` when judging probations: fitted on even blocks, scored on
odd ones."""


class Diffuser:
    """Context embeddings for `n_agents` agents under a strategy and a sub-context partition.

    Its keyword defaults are the paper's rules; `OsmlConfig` holds the tool's defaults."""

    def __init__(self, n_agents: int, strategy: Strategy, *, unclustered: str = "global",
                 threshold: float = 0.97, beta: float = 2.0, samples: int = 50,
                 min_rank: float = 0.0, stay_rank: float | None = None,
                 join_score: float | None = None, seed: int = 0):
        if unclustered not in ("global", "rest", "self", "nearest"):
            raise ValueError(f"unclustered must be global, rest, self or nearest, got {unclustered!r}")
        self.n = n_agents
        self.strategy = strategy
        self.unclustered = unclustered
        self.threshold, self.beta, self.samples, self.min_rank = threshold, beta, samples, min_rank
        self.stay_rank, self.join_score = stay_rank, join_score
        self.rng = np.random.default_rng(seed)
        self.groups: list[list[int]] = [list(range(n_agents))]  # one context until clustered
        self.trial: dict[int, list[int]] = {}  # agent on probation -> whose context it receives
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
        targets: dict[tuple[int, ...], list[int]] = {}
        for i, target in self.trial.items():
            targets.setdefault(tuple(target), []).append(i)
        for target, agents in targets.items():
            out[agents] = self.strategy.aggregate(E[list(target)])
        clustered = self.clustered
        loose = [i for i in range(self.n) if i not in clustered and i not in self.trial]
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
        [agents, steps, d], made by the agents' current models; then start probations.

        Current, not the embeddings that arrived during the epoch: those come from models that
        moved after every batch, and that drift alone gives two pure-noise agents a shared
        trend over the epoch (sampled rank up to 0.66 on the paper's `robust` data, where the
        current models give 0.47–0.53), while it blurs the agreement of related agents.

        An agent whose rank agreement with its sub-context falls below `stay_rank` (default:
        the gate, `min_rank`) leaves it. But an agent outside a sub-context has aligned to another context, so
        its agreement with the sub-context cannot rise by itself. With `join_score`, agents
        whose embeddings map well onto a sub-context's context (`mapped_ranks` ≥ join_score,
        no alignment needed) are put on probation: until the next clustering they align to that
        context without contributing to it, and that clustering, with its usual gate, decides
        whether they are in. See `_start_probations`."""
        pick = np.sort(self.rng.choice(E.shape[1], size=min(self.samples, E.shape[1]), replace=False))
        before = self.groups if self.history else []  # until the first clustering: none
        groups, scores, ranks = cluster(E[:, pick], self.threshold, self.beta, self.min_rank,
                                        before, self.stay_rank)
        changes = membership_changes(before, groups, list(self.trial))
        together = {i: set(g) for g in groups for i in g}
        changes += [{"agent": i, "change": "rejected", "subcontext": target}
                    for i, target in sorted(self.trial.items())
                    if not together.get(i, set()) & (set(target) - {i})]
        self.groups, self.trial = groups, {}
        if self.join_score is not None:
            changes += self._start_probations(E)
        record = Clustering(epoch, groups, scores, ranks, changes)
        self.history.append(record)
        return record

    def _start_probations(self, E: Tensor) -> list[dict[str, Any]]:
        """Who aligns to which context until the next clustering, from `mapped_ranks` on all
        the steps of E, each with its best candidate at or above `join_score`:

        * an agent in no sub-context, to the sub-context it maps onto best;
        * a sub-context to a larger one (a group that formed as two halves), one merge each;
        * agents in no sub-context that are left, among themselves: average linkage at
          join_score gives tentative sub-contexts, whose members align to their common context.

        With fewer than 4·(d + 2) steps there are too few to fit a map and score it on other
        steps: nobody is put on probation.
        """
        events: list[dict[str, Any]] = []

        def start(agents: list[int], target: list[int], score: float) -> None:
            for i in agents:
                self.trial[i] = target
                events.append({"agent": i, "change": "probation", "subcontext": target,
                               "score": round(score, 4)})

        if E.shape[1] < 4 * (E.shape[2] + 2):  # too few steps to fit a map on half of them
            return events
        block = min(JOIN_BLOCK, E.shape[1] // 4)  # short series: at least two blocks of each
        clustered = self.clustered  # a property that builds the set: once, not per agent
        loose = [i for i in range(self.n) if i not in clustered]
        contexts = torch.stack([self.strategy.aggregate(E[g]) for g in self.groups]) if self.groups else None
        if loose and contexts is not None:
            fit = mapped_ranks(E[loose], contexts, block, self.samples)
            for i, row in zip(loose, fit):
                if float(row.max()) >= self.join_score:
                    start([i], self.groups[int(row.argmax())], float(row.max()))
        if len(self.groups) > 1:
            fit = mapped_ranks(contexts, contexts, block, self.samples).fill_diagonal_(0)
            busy: set[int] = set()
            order = torch.argsort(fit.flatten(), descending=True)
            for k in order[: len(self.groups) ** 2].tolist():
                a, b = divmod(k, len(self.groups))
                if fit[a, b] < self.join_score:
                    break
                if a < b and not {a, b} & busy:
                    small, large = sorted((a, b), key=lambda g: (len(self.groups[g]), -g))
                    start(self.groups[small], self.groups[large], float(fit[a, b]))
                    busy |= {a, b}
        left = [i for i in loose if i not in self.trial]
        if len(left) > 1:
            fit = mapped_ranks(E[left], E[left], block, self.samples)
            for g in average_linkage(fit.numpy(), self.join_score):
                members = [left[k] for k in g]
                start(members, members, float(fit[g][:, g].mean()))
        return events

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """(tensors, JSON-able rest) for a checkpoint: the sub-contexts, the clustering
        history and the sampling RNG."""
        tensors = {}
        for k, c in enumerate(self.history):  # n×n matrices: tensors, not JSON (header limit)
            tensors[f"history/{k}/scores"] = torch.from_numpy(np.asarray(c.scores, np.float32))
            tensors[f"history/{k}/ranks"] = torch.from_numpy(np.asarray(c.ranks, np.float32))
        return tensors, {
            "groups": self.groups,
            "trial": [[i, target] for i, target in self.trial.items()],
            "rng": self.rng.bit_generator.state,
            "history": [{"epoch": c.epoch, "groups": c.groups, "changes": c.changes}
                        for c in self.history],
        }

    def load_state(self, tensors: dict[str, Tensor], rest: dict[str, Any]) -> None:
        self.groups = [list(g) for g in rest["groups"]]
        self.trial = {int(i): list(target) for i, target in rest.get("trial", [])}
        self.rng.bit_generator.state = rest["rng"]
        self.history = [Clustering(h["epoch"], h["groups"], tensors[f"history/{k}/scores"].numpy(),
                                   tensors[f"history/{k}/ranks"].numpy(), h.get("changes", []))
                        for k, h in enumerate(rest["history"])]

