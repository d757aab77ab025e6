"""Sub-contexts (paper §III-E): group agents whose embeddings agree.

Pairs are scored on embeddings at S sampled steps by the mean of |sim| (paper Eq. 14), then
grouped by average-linkage agglomeration at threshold θ. Mean |sim| alone cannot tell agreement
from collapse (two constant embeddings agree perfectly), so a pair whose sampled rank score is
below `min_rank` counts as unrelated (score 0); `min_rank=0` is the paper's rule.

Every clustering starts afresh from the agents' current embeddings, so an agent whose
agreement with its sub-context falls below the gate leaves it. The way in for an agent that
missed the first clustering (it aligned to another context since, so its agreement cannot rise
by itself) is a probation, decided by the diffuser: see `Diffuser.cluster`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from torch import Tensor

from osmotic.osml.metrics import pair_scores, pairwise_ranks


@dataclass
class Clustering:
    """One clustering decision, as recorded in the run's history.

    Up to `candidates_above` agents, `scores` and `ranks` are [agents, agents] matrices; above
    it they hold the candidate `pairs` [pairs, 2] only (n × n is GBs at 16,384 agents)."""

    epoch: int
    groups: list[list[int]]  # sub-contexts of two or more agents, agent indices sorted
    scores: np.ndarray  # mean |sim| over the sampled steps, per pair
    ranks: np.ndarray  # rank score over the sampled steps, per pair
    changes: list[dict[str, Any]] = field(default_factory=list)  # see `membership_changes`
    pairs: np.ndarray | None = None  # [pairs, 2] when scores and ranks are per candidate pair
    gates: dict[str, float] = field(default_factory=dict)  # calibrated gates, when calibrated

    def as_record(self, ids: Sequence[str]) -> dict[str, Any]:
        """JSON-able, agents named by id: one entry of `clusterings.json`."""
        def names(g: Sequence[int]) -> list[str]:
            return sorted(ids[i] for i in g)

        changes = [{**c, "agent": ids[c["agent"]],
                    **{k: names(c[k]) for k in ("subcontext", "from", "to") if c.get(k)}}
                   for c in self.changes]
        record = {"epoch": self.epoch, "groups": [names(g) for g in self.groups],
                  "changes": changes, "scores": np.round(self.scores, 6).tolist(),
                  "ranks": np.round(self.ranks, 6).tolist()}
        if self.pairs is not None:
            record["pairs"] = [[ids[i], ids[j]] for i, j in self.pairs.tolist()]
        if self.gates:
            record["gates"] = {k: round(v, 6) for k, v in self.gates.items()}
        return record


def membership_changes(old: Sequence[Sequence[int]], new: Sequence[Sequence[int]],
                       on_probation: Sequence[int] = ()) -> list[dict[str, Any]]:
    """Who joined and who left a sub-context between two clusterings.

    A new sub-context continues the old one it shares most agents with; its other members
    joined it (`from`: the sub-context they were in, if any). Agents of an old sub-context that
    are not in its continuation left it (`to`: where they went, if anywhere). So a merge is
    recorded as joins, a split as leaves. A join of an agent in `on_probation` says so."""
    def successor(g: Sequence[int], among: Sequence[Sequence[int]]) -> list[int]:
        best = max(among, key=lambda h: len(set(g) & set(h)), default=[])
        return list(best) if set(g) & set(best) else []

    where_old = {i: list(g) for g in old for i in g}
    where_new = {i: list(g) for g in new for i in g}
    out: list[dict[str, Any]] = []
    for g in new:
        before = successor(g, old)
        out += [{"agent": i, "change": "join", "subcontext": list(g), "from": where_old.get(i),
                 "probation": i in on_probation} for i in g if i not in before]
    for g in old:
        after = successor(g, new)
        out += [{"agent": i, "change": "leave", "subcontext": list(g), "to": where_new.get(i)}
                for i in g if i not in after]
    return sorted(out, key=lambda c: c["agent"])


def average_linkage(scores: np.ndarray, threshold: float) -> list[list[int]]:
    """Agglomerate while the best average-linkage similarity is ≥ threshold.

    Returns the groups of two or more members, each sorted, ordered by their first member.
    SciPy's average linkage on distances 1 − score; cutting its tree at 1 − θ stops exactly where
    the best average similarity falls below θ (average linkage has no inversions).
    """
    n = len(scores)
    if n < 2:
        return []
    labels = fcluster(linkage(condensed_distances(scores), method="average"),
                      t=1.0 - threshold, criterion="distance")
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def condensed_distances(scores: np.ndarray) -> np.ndarray:
    """SciPy's condensed form (pairs i < j, row by row) of the distances 1 − score, made
    symmetric by averaging both directions and clipped at 0, in float64. Built one row at a
    time: as n × n float64 matrices (1 − score, its transpose sum, the clipped copy) it held
    0.4 GB at 4,096 agents."""
    n = len(scores)
    out = np.empty(n * (n - 1) // 2)
    start = 0
    for i in range(n - 1):
        ahead = 1.0 - np.asarray(scores[i, i + 1 :], dtype=np.float64)
        behind = 1.0 - np.asarray(scores[i + 1 :, i], dtype=np.float64)
        np.clip((ahead + behind) / 2, 0.0, None, out=out[start : start + n - 1 - i])
        start += n - 1 - i
    return out


def cluster(E: Tensor, threshold: float, beta: float, min_rank: float,
            members: Sequence[Sequence[int]] = (), stay_rank: float | None = None,
            ) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """Groups from embeddings E [agents, S, d] at S sampled steps: (groups, scores, ranks).

    Pairs already together in one of the sub-contexts `members` pass the rank gate at
    `stay_rank` (default: `min_rank`): with a gate lower for staying than for getting in, an
    agent whose rank hovers near the gate does not leave and rejoin at every clustering."""
    scores = pair_scores(E, beta).numpy()
    ranks = pairwise_ranks(E).numpy()
    ranks = (ranks + ranks.T) / 2
    affinity = np.where(ranks >= min_rank, scores, 0.0)
    stay = min_rank if stay_rank is None else stay_rank
    for g in members:  # their own gate, block by block (an n × n gate matrix is 64 MB at 4,096)
        block = np.ix_(g, g)
        affinity[block] = np.where(ranks[block] >= stay, scores[block], 0.0)
    return average_linkage(affinity, threshold), scores, ranks
