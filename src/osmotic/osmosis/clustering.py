"""Sub-contexts (paper §III-E): group agents whose embeddings agree.

Pairs are scored on embeddings at S sampled steps by the mean of |sim| (paper Eq. 14), then
grouped by average-linkage agglomeration at threshold θ. Mean |sim| alone cannot tell agreement
from collapse (two constant embeddings agree perfectly), so a pair whose sampled rank score is
below `min_rank` counts as unrelated (score 0); `min_rank=0` is the paper's rule.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from torch import Tensor

from osmotic.osmosis.metrics import pair_scores, pairwise_ranks


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
    SciPy's average linkage on distances 1 − score; cutting its tree at 1 − θ stops exactly where
    the best average similarity falls below θ (average linkage has no inversions).
    """
    n = len(scores)
    if n < 2:
        return []
    d = 1.0 - np.asarray(scores, dtype=np.float64)
    d = np.clip((d + d.T) / 2, 0.0, None)
    np.fill_diagonal(d, 0.0)
    labels = fcluster(linkage(squareform(d, checks=False), method="average"),
                      t=1.0 - threshold, criterion="distance")
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def cluster(E: Tensor, threshold: float, beta: float, min_rank: float) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """Groups from embeddings E [agents, S, d] at S sampled steps: (groups, scores, ranks)."""
    scores = pair_scores(E, beta).numpy()
    ranks = pairwise_ranks(E).numpy()
    ranks = (ranks + ranks.T) / 2
    affinity = np.where(ranks >= min_rank, scores, 0.0)
    return average_linkage(affinity, threshold), scores, ranks
