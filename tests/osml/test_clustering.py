"""Sub-context grouping on constructed similarity matrices and embeddings."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from osmotic.osml.clustering import average_linkage, cluster


def _scores(n: int, pairs: dict[tuple[int, int], float], rest: float = 0.1) -> np.ndarray:
    s = np.full((n, n), rest)
    for (i, j), v in pairs.items():
        s[i, j] = s[j, i] = v
    np.fill_diagonal(s, 1.0)
    return s


def test_two_clear_blocks_in_any_agent_order() -> None:
    s = _scores(5, {(0, 2): 0.99, (1, 3): 0.98, (1, 4): 0.99, (3, 4): 0.985})
    assert average_linkage(s, 0.97) == [[0, 2], [1, 3, 4]]


def test_no_pair_above_threshold_gives_no_sub_context() -> None:
    assert average_linkage(_scores(4, {(0, 1): 0.9}), 0.97) == []


def test_threshold_is_inclusive() -> None:
    s = _scores(3, {(0, 1): 0.97})
    assert average_linkage(s, 0.97) == [[0, 1]]
    assert average_linkage(s, 0.9700001) == []


def test_average_not_single_linkage() -> None:
    # 2 is close to 1 but not to 0: its average link to {0, 1} is (0.98 + 0.90) / 2 = 0.94.
    s = _scores(3, {(0, 1): 0.99, (1, 2): 0.98, (0, 2): 0.90})
    assert average_linkage(s, 0.95) == [[0, 1]]
    assert average_linkage(s, 0.94) == [[0, 1, 2]]


def test_a_collapsed_pair_is_excluded_by_min_rank() -> None:
    """Agents 0, 1 agree step by step; 2, 3 output one constant vector: perfect |sim|, rank 0.5."""
    g = torch.Generator().manual_seed(0)
    varying = torch.cat([torch.randn(20, 2, generator=g), torch.zeros(20, 1)], dim=-1)
    constant = torch.tensor([0.0, 0.0, 1.0]).expand(20, 3)  # orthogonal to 0 and 1
    E = torch.stack([varying, 2 * varying, constant, constant])
    groups, scores, ranks = cluster(E, threshold=0.97, beta=2.0, min_rank=0.75)
    assert groups == [[0, 1]]
    assert scores[2, 3] == pytest.approx(1.0) and ranks[2, 3] == pytest.approx(0.5)
    assert ranks[0, 1] == pytest.approx(1.0)
    paper_rule, _, _ = cluster(E, threshold=0.97, beta=2.0, min_rank=0.0)
    assert paper_rule == [[0, 1], [2, 3]]  # |sim| alone cannot tell agreement from collapse


def test_condensed_distances_equal_scipys_form_of_the_symmetrised_matrix() -> None:
    """Built row by row (no n × n float64 copies), bit for bit what squareform gives."""
    from scipy.spatial.distance import squareform

    from osmotic.osml.clustering import condensed_distances

    rng = np.random.default_rng(0)
    for n in (2, 3, 40):
        s = (rng.random((n, n)) * 1.2 - 0.1).astype(np.float32)  # some above 1: clipped at 0
        d = 1.0 - s.astype(np.float64)
        d = np.clip((d + d.T) / 2, 0.0, None)
        np.fill_diagonal(d, 0.0)
        assert np.array_equal(condensed_distances(s), squareform(d, checks=False))
