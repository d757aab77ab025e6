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

from osmotic.osml.clustering import Clustering, cluster, membership_changes
from osmotic.osml.discovery import (
    PROBATION_NEIGHBOURS,
    aligned_sketches,
    calibrated_gate,
    cluster_pairs,
    mapped_sketches,
    nearest,
    neighbour_pairs,
    shifted_null,
    sparse_average_linkage,
    unique_pairs,
)
from osmotic.osml.metrics import mapped_pair_ranks, mapped_ranks, ranks_between
from osmotic.runtime.strategies import Strategy

JOIN_BLOCK = 50
"""Steps per block of `mapped_ranks` when judging probations: fitted on even blocks, scored on
odd ones."""

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Pairs judged for probation: (rows, columns, mapped rank score)."""


class Diffuser:
    """Context embeddings for `n_agents` agents under a strategy and a sub-context partition.

    Its keyword defaults are the paper's rules; `OsmlConfig` holds the tool's defaults."""

    def __init__(self, n_agents: int, strategy: Strategy, *, unclustered: str = "global",
                 threshold: float = 0.97, beta: float = 2.0, samples: int = 50,
                 min_rank: float = 0.0, stay_rank: float | None = None,
                 join_score: float | None = None, seed: int = 0,
                 candidates_above: int | None = None, neighbours: int = 16,
                 null_alpha: float | None = None, null_above: int = 100,
                 null_samples: int = 10000):
        if unclustered not in ("global", "rest", "self", "nearest"):
            raise ValueError(f"unclustered must be global, rest, self or nearest, got {unclustered!r}")
        self.n = n_agents
        self.strategy = strategy
        self.unclustered = unclustered
        self.threshold, self.beta, self.samples, self.min_rank = threshold, beta, samples, min_rank
        self.stay_rank, self.join_score = stay_rank, join_score
        self.seed, self.rng = seed, np.random.default_rng(seed)
        # Large populations (osml.discovery): candidate pairs above `candidates_above` agents
        # (None: never), gates calibrated against a null above `null_above` (alpha None: never)
        self.candidates = candidates_above is not None and n_agents > candidates_above
        self.neighbours = neighbours
        self.null_alpha = null_alpha if n_agents > null_above else None
        self.null_samples = null_samples
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
        whether they are in. See `_start_probations`.

        In large populations (`osml.discovery`): above `null_above` agents the rank gate and
        the join gate are calibrated against a null of time-shifted pairs (the stay gate, which
        judges only pairs within a sub-context, stays fixed); above `candidates_above` agents
        only candidate pairs are judged, and the record keeps them with their scores instead of
        n × n matrices."""
        pick = np.sort(self.rng.choice(E.shape[1], size=min(self.samples, E.shape[1]), replace=False))
        before = self.groups if self.history else []  # until the first clustering: none
        null_rng = np.random.default_rng([self.seed, epoch])  # not self.rng: its draws are the run's
        gates: dict[str, float] = {}
        gate = self.min_rank
        if self.null_alpha is not None:
            def sampled_ranks(X: Tensor, Y: Tensor) -> Tensor:  # the gate's statistic
                X, Y = X[:, pick], Y[:, pick]
                return (ranks_between(X, Y) + ranks_between(Y, X).T) / 2

            null = shifted_null(E, sampled_ranks, self.null_samples, null_rng)
            gate = gates["rank"] = calibrated_gate(null,
                                                   self.min_rank, self.n * (self.n - 1) // 2,
                                                   self.null_alpha)
        stay = self.min_rank if self.stay_rank is None else self.stay_rank
        sampled = E[:, pick]
        pairs = None
        if self.candidates:
            pairs = self._with_members(neighbour_pairs(aligned_sketches(sampled), self.neighbours), before)
            groups, scores, ranks = cluster_pairs(sampled, pairs, self.threshold, self.beta, gate,
                                                  before, stay)
        else:
            groups, scores, ranks = cluster(sampled, self.threshold, self.beta, gate, before, stay)
        changes = membership_changes(before, groups, list(self.trial))
        together = {i: set(g) for g in groups for i in g}
        changes += [{"agent": i, "change": "rejected", "subcontext": target}
                    for i, target in sorted(self.trial.items())
                    if not together.get(i, set()) & (set(target) - {i})]
        self.groups, self.trial = groups, {}
        if self.join_score is not None:
            changes += self._start_probations(E, pick, null_rng, gates)
        record = Clustering(epoch, groups, scores, ranks, changes, pairs, gates)
        self.history.append(record)
        return record

    @staticmethod
    def _with_members(pairs: np.ndarray, groups: list[list[int]]) -> np.ndarray:
        """Candidate pairs and every pair within a current sub-context (its stay gate)."""
        within = [(a, b) for g in groups for a in g for b in g if a < b]
        if not within:
            return pairs
        i, j = np.array(within).T
        return unique_pairs(np.concatenate([pairs[:, 0], i]), np.concatenate([pairs[:, 1], j]))

    def _fits(self, X: Tensor, Y: Tensor | None, pick: np.ndarray, block: int) -> Pairs:
        """`mapped_ranks` of rows of X against rows of Y (None: X against itself, pairs i < j):
        every pair, or above `candidates_above` agents each row's PROBATION_NEIGHBOURS ×
        `neighbours` nearest by `mapped_sketches` on the sampled steps `pick`."""
        same = Y is None
        Y = X if Y is None else Y
        if not self.candidates:
            fit = mapped_ranks(X, Y, block, self.samples).numpy()
            rows, cols = np.triu_indices(len(X), 1) if same else np.indices(fit.shape).reshape(2, -1)
            return rows, cols, fit[rows, cols]
        queries = mapped_sketches(X[:, pick], self.seed)
        base = queries if same else mapped_sketches(Y[:, pick], self.seed)
        found = nearest(base, queries, PROBATION_NEIGHBOURS * self.neighbours + same)
        rows = np.repeat(np.arange(len(X)), found.shape[1])
        cols = found.ravel()
        keep = cols >= 0
        if same:
            rows, cols = unique_pairs(rows[keep], cols[keep]).T
        else:
            rows, cols = rows[keep], cols[keep]
        return rows, cols, mapped_pair_ranks(X, Y, rows, cols, block, self.samples).numpy()

    def _start_probations(self, E: Tensor, pick: np.ndarray, null_rng: np.random.Generator,
                          gates: dict[str, float]) -> list[dict[str, Any]]:
        """Who aligns to which context until the next clustering, from `mapped_ranks` on all
        the steps of E, each with its best candidate at or above the join gate (`join_score`,
        calibrated like the rank gate in large populations: `gates`):

        * an agent in no sub-context, to the sub-context it maps onto best;
        * a sub-context to a larger one (a group that formed as two halves), one merge each;
        * agents in no sub-context that are left, among themselves: average linkage at
          the gate gives tentative sub-contexts, whose members align to their common context.

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
        null = (shifted_null(E, lambda X, Y: mapped_ranks(X, Y, block, self.samples),
                             self.null_samples, null_rng) if self.null_alpha is not None else np.empty(0))

        def gate(tests: int, name: str) -> float:
            value = calibrated_gate(null, self.join_score, tests, self.null_alpha or 1.0)
            if len(null):
                gates[name] = value
            return value

        clustered = self.clustered  # a property that builds the set: once, not per agent
        loose = [i for i in range(self.n) if i not in clustered]
        contexts = torch.stack([self.strategy.aggregate(E[g]) for g in self.groups]) if self.groups else None
        if loose and contexts is not None:
            rows, cols, vals = self._fits(E[loose], contexts, pick, block)
            least = gate(len(loose) * len(self.groups), "join_context")
            order = np.lexsort((cols, -vals, rows))  # per row: best first, then the first context
            first = order[np.r_[True, rows[order][1:] != rows[order][:-1]]]
            for p in first[vals[first] >= least]:
                start([loose[rows[p]]], self.groups[cols[p]], float(vals[p]))
        if len(self.groups) > 1:
            rows, cols, vals = self._fits(contexts, None, pick, block)
            least = gate(len(self.groups) * (len(self.groups) - 1) // 2, "join_merge")
            busy: set[int] = set()
            for p in np.argsort(-vals, kind="stable"):
                if vals[p] < least:
                    break
                a, b = int(rows[p]), int(cols[p])
                if not {a, b} & busy:
                    small, large = sorted((a, b), key=lambda g: (len(self.groups[g]), -g))
                    start(self.groups[small], self.groups[large], float(vals[p]))
                    busy |= {a, b}
        left = [i for i in loose if i not in self.trial]
        if len(left) > 1:
            rows, cols, vals = self._fits(E[left], None, pick, block)
            least = gate(len(left) * (len(left) - 1) // 2, "join_loose")
            pairs = np.stack([rows, cols], axis=1)
            for g in sparse_average_linkage(len(left), pairs, vals, least, missing=0.5):
                within = np.isin(rows, g) & np.isin(cols, g)
                start([left[k] for k in g], [left[k] for k in g], float(vals[within].mean()))
        return events

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """(tensors, JSON-able rest) for a checkpoint: the sub-contexts, the clustering
        history and the sampling RNG."""
        tensors = {}
        for k, c in enumerate(self.history):  # n×n matrices: tensors, not JSON (header limit)
            tensors[f"history/{k}/scores"] = torch.from_numpy(np.asarray(c.scores, np.float32))
            tensors[f"history/{k}/ranks"] = torch.from_numpy(np.asarray(c.ranks, np.float32))
            if c.pairs is not None:
                tensors[f"history/{k}/pairs"] = torch.from_numpy(np.asarray(c.pairs, np.int64))
        return tensors, {
            "groups": self.groups,
            "trial": [[i, target] for i, target in self.trial.items()],
            "rng": self.rng.bit_generator.state,
            "history": [{"epoch": c.epoch, "groups": c.groups, "changes": c.changes,
                         **({"gates": c.gates} if c.gates else {})} for c in self.history],
        }

    def load_state(self, tensors: dict[str, Tensor], rest: dict[str, Any]) -> None:
        self.groups = [list(g) for g in rest["groups"]]
        self.trial = {int(i): list(target) for i, target in rest.get("trial", [])}
        self.rng.bit_generator.state = rest["rng"]
        self.history = [Clustering(h["epoch"], h["groups"], tensors[f"history/{k}/scores"].numpy(),
                                   tensors[f"history/{k}/ranks"].numpy(), h.get("changes", []),
                                   tensors[f"history/{k}/pairs"].numpy()
                                   if f"history/{k}/pairs" in tensors else None,
                                   h.get("gates", {}))
                        for k, h in enumerate(rest["history"])]

