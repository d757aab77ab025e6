"""Sub-context discovery in large populations: gates calibrated against chance agreement, and
candidate pairs from a nearest-neighbour index instead of all pairs.

**Calibrated gates.** A fixed gate (`min_rank`, `join_score`) admits an unrelated pair with a
small probability; over the N²/2 pairs of a large population that becomes many pairs. Both
statistics are compared here with their null: the same statistic on pairs whose time alignment
is broken (one agent's series shifted by a quarter to three quarters of its length), which
keeps each agent's own dynamics. The null's upper tail is heavier than a Gaussian matched to
its standard deviation (smooth embeddings agree by chance more often than rough ones), so the
Gaussian is matched to the null's median and its 1 − `NULL_TAIL` quantile, and the gate is its
1 − α/tests quantile (Bonferroni over the pairs tested), never below the fixed gate. On the
replicated 7-agent scenario at 1,022 agents this predicted 0.74–0.75 for the rank gate where
the highest of 518,665 unrelated pairs scored 0.75–0.77: an estimate, not a guarantee.

**Candidate pairs.** A faiss HNSW index over a sketch per agent gives each agent its nearest
neighbours; the exact statistics and gates are computed for those pairs only, and
`sparse_average_linkage` groups them. For clustering, the sketch is the agent's centred,
unit embeddings at the S sampled steps, flattened (`aligned_sketches`): the inner product of
two is the mean cosine of their centred embeddings step by step, which the rank score of an
agreeing pair needs. On the replicated scenario at 1,022 agents, 8 neighbours per agent held
every pair that passed the gate, in three clusterings. For probations (agents not aligned to
the context they may carry), the sketch is the projection onto the span of the centred
embeddings (`mapped_sketches`): the inner product of two is the sum of their squared
canonical correlations, which a linear map does not change.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.stats import norm
from torch import Tensor

from osmotic.osml.clustering import average_linkage
from osmotic.osml.metrics import pair_ranks, pair_scores_of

NULL_TAIL = 1e-3
"""The null quantile (1 − NULL_TAIL) that sets the scale of the Gaussian tail."""
NULL_SHIFTS = 4
"""Blocks of null pairs, each with its own shift."""
SKETCH_DIM = 512
"""Numbers per `mapped_sketches` sketch (S × S before the random projection)."""
PROBATION_NEIGHBOURS = 4
"""Candidates per agent or sub-context for probations, in multiples of `neighbours`: the
linear-map sketch tracks the mapped rank score less closely than the aligned sketch tracks the
rank score (at 1,022 agents, 16 neighbours held 61 of the 66 pairs ≥ 0.7, 64 held 65)."""
HNSW_LINKS = 32
"""Links per node of the HNSW graph."""

Statistic = Callable[[Tensor, Tensor], Tensor]
"""A pair statistic of every agent of X [a, T, d] against every agent of Y [b, T, d]: [a, b]."""


def shifted_null(E: Tensor, statistic: Statistic, samples: int,
                 rng: np.random.Generator) -> np.ndarray:
    """`statistic` of about `samples` pairs of distinct agents of E [agents, T, d], the second
    agent's series rolled by a random shift of T/4 to 3T/4 steps (`NULL_SHIFTS` blocks of
    agents, one shift each). Empty when E is too short to shift."""
    n, T = E.shape[:2]
    if T < 4 or n < 2:
        return np.empty(0)
    side = min(n, math.ceil(math.sqrt(samples / NULL_SHIFTS)))
    out = []
    for _ in range(NULL_SHIFTS):
        a, b = (rng.choice(n, side, replace=False) for _ in range(2))
        shifted = torch.roll(E[b], int(rng.integers(T // 4, 3 * T // 4 + 1)), dims=1)
        out.append(statistic(E[a], shifted).numpy()[a[:, None] != b[None, :]])
    return np.concatenate(out)


def calibrated_gate(null: np.ndarray, fixed: float, tests: int, alpha: float) -> float:
    """max(fixed, the 1 − alpha/tests quantile of the Gaussian through the null's median and
    its 1 − `NULL_TAIL` quantile): see the module docstring."""
    if len(null) == 0 or tests < 1:
        return fixed
    median, upper = np.quantile(null, [0.5, 1 - NULL_TAIL])
    scale = (upper - median) / norm.isf(NULL_TAIL)
    return max(fixed, float(median + scale * norm.isf(alpha / tests)))


def aligned_sketches(E: Tensor) -> np.ndarray:
    """[agents, S·d] float32 unit rows for embeddings E [agents, S, d]: each step's centred
    embedding as a unit vector, flattened (zero where an agent's embedding is constant)."""
    X = F.normalize(E - E.mean(1, keepdim=True), dim=-1).reshape(len(E), -1)
    return F.normalize(X, dim=1).float().numpy()


def mapped_sketches(E: Tensor, seed: int = 0) -> np.ndarray:
    """[agents, SKETCH_DIM] float32 unit rows for embeddings E [agents, S, d]: the projection
    onto the span of each agent's centred embeddings, randomly projected (seeded) and
    normalised. Directions of singular value below 1e-6 of the largest are left out, so a
    collapsed agent's sketch is zero."""
    X = (E - E.mean(1, keepdim=True)).double()
    U, s, _ = torch.linalg.svd(X, full_matrices=False)  # U [n, S, d]
    U = U * (s > 1e-6 * s[:, :1].clamp_min(1e-30)).unsqueeze(1)
    S = E.shape[1]
    R = torch.randn(S * S, SKETCH_DIM, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64) / math.sqrt(SKETCH_DIM)
    rows = max(1, (1 << 22) // (S * S))
    out = torch.cat([(U[k : k + rows] @ U[k : k + rows].transpose(1, 2)).reshape(-1, S * S) @ R
                     for k in range(0, len(U), rows)])
    return F.normalize(out, dim=1).float().numpy()


def nearest(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Indices [queries, k] of each query's k nearest rows of `base` (−1 where fewer), by an
    HNSW index (faiss). The index is built on one thread: HNSW built in parallel depends on
    thread timing, and a run must not."""
    import faiss

    index = faiss.IndexHNSWFlat(base.shape[1], HNSW_LINKS)
    index.hnsw.efSearch = max(64, 2 * k)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index.add(np.ascontiguousarray(base))
    finally:
        faiss.omp_set_num_threads(threads)
    return index.search(np.ascontiguousarray(queries), min(k, len(base)))[1]


def neighbour_pairs(X: np.ndarray, k: int) -> np.ndarray:
    """Unordered pairs [pairs, 2] (i < j, sorted) of rows of X that are among each other's k
    nearest (either way round)."""
    found = nearest(X, X, k + 1)
    i = np.repeat(np.arange(len(X)), found.shape[1])
    j = found.ravel()
    keep = (j >= 0) & (j != i)
    return unique_pairs(i[keep], j[keep])


def unique_pairs(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """[pairs, 2]: each unordered pair once, as (min, max), sorted."""
    pairs = np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1).astype(np.int64)
    return np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0).reshape(-1, 2)


def sparse_average_linkage(n: int, pairs: np.ndarray, values: np.ndarray, threshold: float,
                           missing: float = 0.0) -> list[list[int]]:
    """`average_linkage` of n items whose similarity is `values` on `pairs` and `missing`
    (below threshold) elsewhere, without an n × n matrix.

    A merge needs an average ≥ threshold, so at least one pair at or above it between the two
    groups: groups never cross the connected components of the pairs ≥ threshold, and each
    component is agglomerated on its own (a dense matrix per component). The result equals
    `average_linkage` of the full matrix filled the same way."""
    values = np.asarray(values, dtype=np.float64)
    strong = values >= threshold
    if not strong.any():
        return []
    i, j = pairs[strong, 0], pairs[strong, 1]
    _, label = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)),
                                    directed=False)
    size = np.bincount(label)
    inside = (label[pairs[:, 0]] == label[pairs[:, 1]]) & (size[label[pairs[:, 0]]] > 1)
    by_component: dict[int, list[int]] = {}
    for p in np.nonzero(inside)[0]:
        by_component.setdefault(int(label[pairs[p, 0]]), []).append(p)
    groups: list[list[int]] = []
    for c, ps in by_component.items():
        members = np.nonzero(label == c)[0]
        at = {int(a): k for k, a in enumerate(members)}
        sub = np.full((len(members), len(members)), missing)
        np.fill_diagonal(sub, 1.0)
        for p in ps:
            a, b = at[int(pairs[p, 0])], at[int(pairs[p, 1])]
            sub[a, b] = sub[b, a] = values[p]
        groups += [[int(members[k]) for k in g] for g in average_linkage(sub, threshold)]
    return sorted(groups, key=lambda g: g[0])


def cluster_pairs(E: Tensor, pairs: np.ndarray, threshold: float, beta: float, gate: float,
                  members: Sequence[Sequence[int]] = (), stay: float | None = None,
                  ) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """`clustering.cluster` on the candidate `pairs` [pairs, 2] of E [agents, S, d] only:
    (groups, scores, ranks), scores and ranks per pair. Pairs outside `pairs` count as
    unrelated (affinity 0), so the groups equal `cluster`'s whenever every pair that passes the
    gate is a candidate."""
    i, j = pairs[:, 0], pairs[:, 1]
    scores = pair_scores_of(E, i, j, beta).numpy()
    ranks = ((pair_ranks(E, i, j) + pair_ranks(E, j, i)) / 2).numpy()
    of = np.full(len(E), -1)
    for k, g in enumerate(members):
        of[list(g)] = k
    together = (of[i] >= 0) & (of[i] == of[j])
    needed = np.where(together, gate if stay is None else stay, gate)
    affinity = np.where(ranks >= needed, scores, 0.0)
    return sparse_average_linkage(len(E), pairs, affinity, threshold), scores, ranks
