"""Each osmotic strategy against a case small enough to solve by hand; parameters; registry."""
from __future__ import annotations

import math

import pytest
import torch

from osmotic.runtime.strategies import (
    STRATEGIES,
    GeometricMedian,
    Mean,
    SimilarityWeighted,
    Strategy,
    TrimmedMean,
    make_strategy,
)


def _points(*rows: list[float]) -> torch.Tensor:
    """Members as [members, 1 problem, dim]."""
    return torch.tensor(rows, dtype=torch.float64).unsqueeze(1)


def test_mean_plain_and_weighted() -> None:
    x = _points([0.0, 0.0], [2.0, 0.0], [4.0, 6.0])
    assert Mean().aggregate(x).tolist() == [[2.0, 2.0]]
    weighted = Mean().aggregate(x, torch.tensor([1.0, 1.0, 2.0]))
    assert weighted.tolist()[0] == pytest.approx([(0 + 2 + 8) / 4, 12 / 4])


@pytest.mark.parametrize("weights", [torch.tensor([1.0, -1.0, 1.0]), torch.tensor([1.0, 1.0]),
                                     torch.tensor([0.0, 1.0, 1.0])])
def test_bad_weights_are_refused(weights: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="weights"):
        Mean().aggregate(_points([0.0], [1.0], [2.0]), weights)


def test_geometric_median_of_an_equilateral_triangle_is_its_centre() -> None:
    x = _points([0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2])
    assert GeometricMedian().aggregate(x).tolist()[0] == pytest.approx([0.5, math.sqrt(3) / 6])


def test_geometric_median_at_an_obtuse_vertex() -> None:
    # With an angle of 120° or more at a vertex, that vertex is the Fermat point.
    x = _points([0.0, 0.0], [10.0, 0.5], [-10.0, 0.5])
    median = GeometricMedian(iterations=500).aggregate(x)
    assert median.tolist()[0] == pytest.approx([0, 0], abs=1e-6)


def test_geometric_median_in_one_dimension_is_the_median_and_ignores_an_outlier() -> None:
    x = _points([0.0], [1.0], [2.0], [3.0], [1000.0])
    assert GeometricMedian().aggregate(x).item() == pytest.approx(2.0, abs=1e-6)
    assert Mean().aggregate(x).item() == pytest.approx(201.2)


def test_geometric_median_is_robust_to_an_outlying_agent() -> None:
    inliers = [[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]]
    near, far = (GeometricMedian().aggregate(_points(*inliers, [o, o])) for o in (10.0, 1e6))
    assert 1.0 < near[0, 0] < 2.0 and 1.0 < far[0, 0] < 2.0  # inside the inliers' square
    assert far.tolist()[0] == pytest.approx(near.tolist()[0], abs=0.1)  # bounded, however far


def test_weighted_geometric_median_is_the_weighted_median() -> None:
    x = _points([0.0], [1.0], [2.0])
    median = GeometricMedian().aggregate(x, torch.tensor([1.0, 1.0, 5.0]))
    assert median.item() == pytest.approx(2.0, abs=1e-6)


def test_trimmed_mean_drops_the_extremes_coordinate_wise() -> None:
    x = _points([1.0, 50.0], [2.0, 40.0], [3.0, 30.0], [4.0, 20.0], [100.0, -1000.0])
    assert TrimmedMean(trim=0.2).aggregate(x).tolist() == [[3.0, 30.0]]
    assert TrimmedMean(trim=0.1).aggregate(x).tolist() == Mean().aggregate(x).tolist()  # 0 cut


def test_similarity_weighted_by_hand() -> None:
    x = _points([1.0, 0.0], [1.0, 0.0], [0.0, 1.0])
    # mean (2/3, 1/3): cosines 2/√5, 2/√5, 1/√5; softmax of cos / τ
    tau = 0.5
    w = [math.exp(c / tau) for c in (2 / math.sqrt(5), 2 / math.sqrt(5), 1 / math.sqrt(5))]
    expected = [(w[0] + w[1]) / sum(w), w[2] / sum(w)]
    assert SimilarityWeighted(temperature=tau).aggregate(x).tolist()[0] == pytest.approx(expected)


def test_similarity_weighted_tends_to_the_mean_at_high_temperature() -> None:
    x = _points([1.0, 0.0], [0.0, 3.0], [-1.0, 1.0])
    hot = SimilarityWeighted(temperature=1e6).aggregate(x)
    assert torch.allclose(hot, Mean().aggregate(x), atol=1e-5)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategies_work_per_problem(name: str) -> None:
    """Aggregating many steps at once equals aggregating each step on its own."""
    x = torch.randn(5, 7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    strategy = make_strategy(name)
    together = strategy.aggregate(x)
    assert together.shape == (7, 3)
    for t in range(7):
        assert torch.allclose(together[t], strategy.aggregate(x[:, t : t + 1])[0], atol=1e-6)


@pytest.mark.parametrize(("name", "params", "match"), [
    ("geometric_median", {"iterations": 0}, "iterations"),
    ("trimmed_mean", {"trim": 0.5}, "trim"),
    ("trimmed_mean", {"trim": -0.1}, "trim"),
    ("similarity_weighted", {"temperature": 0.0}, "temperature"),
])
def test_bad_parameters_are_refused(name: str, params: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_strategy(name, **params)


def test_trimmed_mean_refuses_weights() -> None:
    with pytest.raises(ValueError, match="weights"):
        TrimmedMean().aggregate(_points([0.0], [1.0]), torch.ones(2))


def test_registry() -> None:
    assert set(STRATEGIES) == {"mean", "geometric_median", "trimmed_mean", "similarity_weighted"}
    assert all(issubclass(cls, Strategy) and cls.name == name for name, cls in STRATEGIES.items())
    assert make_strategy("trimmed_mean", trim=0.25).trim == 0.25
    with pytest.raises(ValueError, match="unknown strategy 'median'.*geometric_median"):
        make_strategy("median")
