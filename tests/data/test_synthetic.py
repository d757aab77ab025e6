"""Generated contexts: the paper's sizes and agents, determinism, and its correlation structure."""

from __future__ import annotations

import numpy as np
import pytest

from osmotic.data.synthetic import generate_context

SEEDS = [0, 1, 2]


def _whole(kind: str, seed: int) -> dict[str, np.ndarray]:
    """Train and test pooled: each is a run of the same process, so every property below
    holds for the pair as for each split."""
    train, test = generate_context(kind, seed)
    return {a: np.concatenate([train[a], test[a]]).astype(np.float64) for a in train}


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.parametrize(
    ("kind", "agents", "features", "sizes"),
    [
        ("simple", ["0", "1", "M0", "M1"], [1, 1, 1, 1], (925, 200)),
        ("complex", ["0", "1", "2", "3", "4"], [1, 1, 1, 1, 2], (900, 191)),
    ],
)
def test_shapes_sizes_and_agent_ids(
    kind: str, agents: list[str], features: list[int], sizes: tuple[int, int]
) -> None:
    train, test = generate_context(kind, 0)
    for split, steps in zip((train, test), sizes):
        assert list(split) == agents
        assert [a.shape for a in split.values()] == [(steps, k) for k in features]
        assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in split.values())


@pytest.mark.parametrize("kind", ["simple", "complex"])
def test_deterministic_per_seed_and_seeds_differ(kind: str) -> None:
    first, again, other = _whole(kind, 7), _whole(kind, 7), _whole(kind, 8)
    for agent in first:
        np.testing.assert_array_equal(first[agent], again[agent])
        assert not np.allclose(first[agent], other[agent])


@pytest.mark.parametrize("seed", SEEDS)
def test_test_split_is_a_fresh_run_laid_out_like_the_papers(seed: int) -> None:
    """Held out (no training value reappears) yet, like the paper's test file, a restart of the
    series: agent 1's first oscillation (agent 0's first stationary phase) starts at step 40-69."""
    train, test = generate_context("simple", seed)
    assert not np.isin(test["0"], train["0"]).any()
    oscillating = np.abs(test["1"][:, 0] - test["0"][:, 0] - 1.0) > 1e-5
    assert 40 <= int(np.argmax(oscillating)) < 70


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown context 'medium'"):
        generate_context("medium", 0)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("kind", "offset"), [("simple", 1.0), ("complex", -3.0)])
def test_agent_1_mirrors_agent_0_with_offset_and_oscillations(
    kind: str, offset: float, seed: int
) -> None:
    s = _whole(kind, seed)
    x0, x1 = s["0"][:, 0], s["1"][:, 0]
    assert _corr(x0, x1) > 0.9
    gap = x1 - x0 - offset
    oscillating = np.abs(gap) > 1e-5
    assert 0.2 < oscillating.mean() < 0.5  # a third of the time, as in the paper
    assert np.abs(gap).max() == pytest.approx(0.5, abs=1e-3)
    # Agent 0 is stationary (near 1, little noise) exactly where agent 1 oscillates.
    assert abs(x0[oscillating].mean() - 1.0) < 0.05 and x0[oscillating].std() < 0.1
    assert x0[~oscillating].std() > 0.5


@pytest.mark.parametrize("seed", SEEDS)
def test_misleading_agents_are_standard_normal_and_unrelated(seed: int) -> None:
    s = _whole("simple", seed)
    for noise in ("M0", "M1"):
        x = s[noise][:, 0]
        assert abs(x.mean()) < 0.15 and abs(x.std() - 1.0) < 0.1
        for other in s:
            if other != noise:
                assert abs(_corr(x, s[other][:, 0])) < 0.15


@pytest.mark.parametrize("seed", SEEDS)
def test_complex_context_correlation_structure(seed: int) -> None:
    s = _whole("complex", seed)
    x2, x3 = s["2"][:, 0], s["3"][:, 0]
    discretised, mixed = s["4"][:, 0], s["4"][:, 1]
    assert _corr(x2, x3) < -0.5
    assert set(np.unique(discretised)) == {2.0, 10.0}
    assert 0.3 < _corr(discretised, x2) < 0.9 and -0.9 < _corr(discretised, x3) < -0.3
    assert 0.3 < _corr(mixed, x2) < 0.9 and -0.9 < _corr(mixed, x3) < -0.3
    assert 9 < x2.mean() < 11 and -14 < x3.mean() < -12  # the paper's levels


def _sinusoid_amplitude(y: np.ndarray, level: np.ndarray, period: float) -> float:
    """Amplitude of the ``period`` sinusoid in ``y``, fit jointly with a linear term in level."""
    angle = 2 * np.pi * np.arange(y.size) / period
    design = np.stack([level, np.ones_like(level), np.sin(angle), np.cos(angle)], axis=1)
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    return float(np.hypot(coef[2], coef[3]))


@pytest.mark.parametrize("seed", SEEDS)
def test_agent_4_second_feature_carries_a_period_20_sinusoid(seed: int) -> None:
    s = _whole("complex", seed)
    mixed, x3 = s["4"][:, 1], s["3"][:, 0]
    assert _sinusoid_amplitude(mixed, x3, 20.0) > 0.5
    assert _sinusoid_amplitude(mixed, x3, 13.0) < 0.45  # no such component: noise only
