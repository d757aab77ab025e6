"""Sub-contexts (paper §III-E): group agents whose embeddings agree.

Pairs are scored on embeddings at S sampled steps by the mean of |sim| (paper Eq. 14), then
grouped by average-linkage agglomeration at threshold θ. Mean |sim| alone cannot tell agreement
from collapse (two constant embeddings agree perfectly), so a pair whose sampled rank score is
below `min_rank` counts as unrelated (score 0); `min_rank=0` is the paper's rule.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from osmotic.osmosis.metrics import pair_scores, rank_scores


@dataclass
class Clustering:
    """One clustering decision, as recorded in the run's history."""

    epoch: int
    groups: list[list[int]]  # sub-contexts of two or more agents, agent indices sorted
    scores: np.ndarray  # [agents, agents] mean |sim| over the sampled steps
    ranks: np.ndarray  # [agents, agents] rank score over the sampled steps


def average_linkage(scores: np.ndarray, threshold: float) -> list[list[int]]:
    """Agglomerate while the best average-linkage similarity is ≥ threshold.

    Returns the groups of two or more members, each sorted, ordered by their first member.
    Uses the Lance–Williams update, so each merge costs O(n) after an O(n²) search.
    """
    n = len(scores)
    s = scores.astype(np.float64).copy()
    np.fill_diagonal(s, -np.inf)
    members = {i: [i] for i in range(n)}
    active = np.ones(n, dtype=bool)
    while active.sum() > 1:
        masked = np.where(active[:, None] & active[None, :], s, -np.inf)
        a, b = np.unravel_index(np.argmax(masked), masked.shape)
        if masked[a, b] < threshold:
            break
        na, nb = len(members[a]), len(members[b])
        s[a, :] = s[:, a] = (na * s[a, :] + nb * s[b, :]) / (na + nb)
        s[a, a] = -np.inf
        members[a] += members.pop(b)
        active[b] = False
    return sorted((sorted(m) for m in members.values() if len(m) > 1), key=lambda g: g[0])


def cluster(E: Tensor, threshold: float, beta: float, min_rank: float) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """Groups from embeddings E [agents, S, d] at S sampled steps: (groups, scores, ranks)."""
    n = E.shape[0]
    scores = pair_scores(E, beta).numpy()
    ranks = torch.stack([rank_scores(E, i, range(n)) for i in range(n)]).numpy()
    ranks = (ranks + ranks.T) / 2
    affinity = np.where(ranks >= min_rank, scores, 0.0)
    return average_linkage(affinity, threshold), scores, ranks
