"""The similarity, context accuracy, rank score and spread against hand-computed values."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.stats import rankdata

from osmotic.osml.metrics import (
    _mapped_one_way,
    context_accuracy,
    pair_scores,
    pairwise_ranks,
    rank_score,
    rank_scores,
    sim,
    spread,
)


def _unit(angle: float) -> list[float]:
    return [math.cos(angle), math.sin(angle)]


def _fixed_angle_pair(s: float, steps: int = 7) -> torch.Tensor:
    """Two agents whose embeddings have cosine exactly `s` at every step (in rotating frames)."""
    a = torch.tensor([_unit(0.4 * t) for t in range(steps)])
    b = torch.tensor([_unit(0.4 * t + math.acos(s)) for t in range(steps)])
    return torch.stack([a, 2.5 * b]).double()  # the norm must not matter


def test_sim_is_signed_power_of_the_cosine() -> None:
    cos = torch.tensor([-1.0, -0.5, 0.0, 0.3, 1.0])
    assert torch.allclose(sim(cos), torch.tensor([-1.0, -0.25, 0.0, 0.09, 1.0]))
    assert torch.allclose(sim(cos, beta=3.0), torch.tensor([-1.0, -0.125, 0.0, 0.027, 1.0]))
    assert torch.allclose(sim(cos, beta=1.0), cos)


@pytest.mark.parametrize("s", [0.9, 0.5, -0.6])
def test_context_accuracy_counts_only_distinct_pairs(s: float) -> None:
    E = _fixed_angle_pair(s)
    (acc,) = context_accuracy(E, [[0, 1]], beta=2.0)
    assert acc == pytest.approx(s**2)  # the published simulator's figure would be (1 + s²)/2
    assert acc != pytest.approx((1 + s**2) / 2)


def test_context_accuracy_per_group_and_singletons() -> None:
    E = torch.cat([_fixed_angle_pair(0.9), _fixed_angle_pair(0.5)])  # agents 0-1 and 2-3
    acc = context_accuracy(E, [[0, 1], [2, 3], [1]], beta=2.0)
    assert acc[:2] == pytest.approx([0.81, 0.25])
    assert math.isnan(acc[2])  # one agent has no pair


def test_pair_scores_are_symmetric_with_unit_diagonal() -> None:
    E = torch.randn(3, 11, 4, generator=torch.Generator().manual_seed(0))
    scores = pair_scores(E)
    assert torch.allclose(scores, scores.T)
    assert torch.allclose(torch.diagonal(scores), torch.ones(3))


def test_rank_score_of_a_constant_embedding_is_exactly_one_half() -> None:
    varying = torch.randn(1, 9, 3, generator=torch.Generator().manual_seed(1))
    constant = torch.tensor([0.3, -1.0, 2.0]).expand(1, 9, 3)
    E = torch.cat([varying, constant])
    assert rank_score(E, [[0, 1]]) == [0.5]  # exactly, whichever side is constant
    assert rank_score(torch.cat([constant, constant]), [[0, 1]]) == [0.5]


def test_rank_score_of_matched_distinct_embeddings_is_one() -> None:
    E = torch.randn(1, 12, 5, generator=torch.Generator().manual_seed(2))
    assert rank_score(torch.cat([E, 3 * E]), [[0, 1]]) == [pytest.approx(1.0)]


def test_tied_similarities_share_their_mean_rank() -> None:
    j = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # steps 0 and 1 look alike
    E = torch.stack([j.clone(), j])
    # t = 0 and t = 1: own step tied with one other -> rank 1.5 -> 1 - 0.5/2 = 0.75; t = 2: 1.0
    assert rank_scores(E, 0, [1]).item() == pytest.approx((0.75 + 0.75 + 1.0) / 3)


def test_rank_score_of_reversed_time_is_low() -> None:
    angles = torch.linspace(0, math.pi / 2, 6)
    a = torch.stack([angles.cos(), angles.sin()], -1)
    (score,) = rank_score(torch.stack([a, a.flip(0)]), [[0, 1]])
    assert score < 0.5


def test_spread() -> None:
    constant = torch.tensor([0.5, -2.0]).expand(1, 6, 2)
    alternating = torch.tensor([[1.0, 2.0], [-1.0, -2.0]]).repeat(3, 1).unsqueeze(0)
    out = spread(torch.cat([constant, alternating, 4 * alternating]))
    assert out.tolist() == pytest.approx([0.0, 1.0, 1.0])  # scale-free; 0 means collapse


def test_rank_score_samples_pairs_only_beyond_max_pairs():
    torch.manual_seed(0)
    E = torch.randn(12, 30, 5)
    full = rank_score(E, [list(range(12))])
    assert rank_score(E, [list(range(12))], max_pairs=132) == full  # 12·11 pairs: all of them
    sampled = rank_score(E, [list(range(12))], max_pairs=40, seed=1)
    assert sampled != full and abs(sampled[0] - full[0]) < 0.05
    assert rank_score(E, [list(range(12))], max_pairs=40, seed=1) == sampled  # seeded


def test_pairwise_ranks_equal_rank_scores_pair_by_pair() -> None:
    """The compiled sign count gives every ordered pair's rank score, ties included (a
    collapsed agent ties every step), the same on one thread or two."""
    E = torch.randn(7, 12, 5, generator=torch.Generator().manual_seed(0))
    E[2] = 1.0
    E[4, 3] = E[4, 5]  # two equal steps: a tie inside one agent
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        got = pairwise_ranks(E)
        torch.set_num_threads(2)
        assert torch.equal(pairwise_ranks(E), got)
    finally:
        torch.set_num_threads(before)
    want = torch.stack([rank_scores(E, i, range(7)) for i in range(7)])
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(got.diagonal()[[0, 1, 3]], torch.ones(3))
    assert got[2, 0] == got[0, 2] == 0.5  # a constant embedding: chance, exactly
    assert torch.allclose(got, _ranks_by_sorting(E), atol=1e-6)
    assert torch.equal(rank_scores(E, -1, [0, 1]), rank_scores(E, 6, [0, 1]))
    as_float64 = pairwise_ranks(E.double().requires_grad_())
    assert as_float64.dtype == torch.float64 and torch.allclose(as_float64.float(), got)


_IN_A_FRESH_PROCESS = """
import os, sys, torch
import osmotic
from osmotic.osml.metrics import pairwise_ranks
E = torch.randn(16, 12, 5)
torch.randn(256, 256) @ torch.randn(256, 256)  # torch's OpenMP pool exists
torch.set_num_threads(1)
pairwise_ranks(E)
assert torch.get_num_threads() == 1, torch.get_num_threads()
pid = os.fork()
if pid == 0:
    pairwise_ranks(E)
    os._exit(0)
assert os.waitpid(pid, 0)[1] == 0, "the forked child died"
"""


@pytest.mark.parametrize("layer", [None, "omp"])
def test_rank_scores_keep_torch_threads_and_survive_a_fork(layer: str | None) -> None:
    """In a fresh process (Numba changes OpenMP's thread count on its first parallel call
    only): torch's thread count is what it was; with osmotic's default threading layer a
    child forked after a clustering can rank too (Numba's GNU OpenMP layer would kill it)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    code = _IN_A_FRESH_PROCESS
    if layer is not None:
        env["NUMBA_THREADING_LAYER"] = layer
        code = code[: code.index("pid = os.fork()")]  # the thread count only
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr


def _ranks_by_sorting(E: torch.Tensor) -> torch.Tensor:
    """Every pair's rank score the plain way: for each t, rank step t of agent j among all its
    steps by cosine to agent i's step t, ties sharing their mean rank (SciPy's rankdata)."""
    En = torch.nn.functional.normalize(E, dim=-1).double()
    n, T = E.shape[:2]
    out = torch.empty(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            c = (En[i] @ En[j].T).numpy()  # [t, s]
            rank = [T - rankdata(c[t])[t] for t in range(T)]  # 0: the highest cosine
            out[i, j] = float(np.mean([1 - r / (T - 1) for r in rank]))
    return out.float()


def _mapped_pair(a: torch.Tensor, b: torch.Tensor, fit: torch.Tensor, scored: torch.Tensor,
                 ridge: float) -> float:
    """One pair the plain way: fit the map, predict, R² test, rank each step's prediction."""
    a1 = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype)], 1)
    w = torch.linalg.solve(a1[fit].T @ a1[fit] + ridge * len(fit) * torch.eye(a1.shape[1]),
                           a1[fit].T @ b[fit])
    t = b[scored]
    mu, sd = t.mean(0), t.std(0, correction=0).clamp_min(1e-6)
    pred, t = (a1[scored] @ w - mu) / sd, (t - mu) / sd
    if ((pred - t) ** 2).mean() >= (t**2).mean():
        return 0.5
    dist = torch.cdist(pred, t)
    own, S = dist.diagonal()[:, None], len(scored)
    better, tied = (dist < own).sum(1).double(), (dist == own).sum(1).double() - 1
    return float((1 - better / (S - 1) - tied / (2 * (S - 1))).mean())


@pytest.mark.parametrize("max_elements", [1, 1 << 24])
def test_mapped_ranks_equal_fitting_each_pair_alone(max_elements: int) -> None:
    """The all-pairs fit with the R² shortcut and chunked ranking gives what fitting, predicting
    and ranking each pair alone gives: related pairs (a linear map plus noise), unrelated random
    walks and a constant agent."""
    g = torch.Generator().manual_seed(1)
    A = torch.randn(4, 80, 3, generator=g, dtype=torch.float64).cumsum(1)
    A[3] = 2.0
    B = torch.cat([A[:2] @ torch.randn(3, 3, generator=g, dtype=torch.float64)
                   + 0.3 * torch.randn(2, 80, 3, generator=g, dtype=torch.float64),
                   torch.randn(1, 80, 3, generator=g, dtype=torch.float64).cumsum(1)])
    fit, scored = torch.arange(0, 80, 2), torch.arange(1, 80, 4)
    got = _mapped_one_way(A, B, fit, scored, 1e-3, max_elements)
    want = torch.tensor([[_mapped_pair(a, b, fit, scored, 1e-3) for b in B] for a in A],
                        dtype=torch.float64)
    assert torch.allclose(got, want, atol=1e-9)
    assert (got[:2, :2].diagonal() > 0.9).all() and (want != 0.5).any() and (want == 0.5).any()
    # in float32, as clustering runs: the same ranks up to the rounding of the result
    as_float32 = _mapped_one_way(A.float(), B.float(), fit, scored, 1e-3, max_elements)
    assert as_float32.dtype == torch.float32 and torch.allclose(as_float32.double(), want, atol=1e-6)
