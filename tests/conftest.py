"""Shared fixtures: tiny OSM-L runs, so the whole suite stays fast on a 2-core machine."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from osmotic.data.synthetic import generate_context
from osmotic.osmosis.config import OsmlConfig

Series = dict[str, np.ndarray]

TINY = {"epochs": 2, "hidden": 4, "batch_size": 20, "cluster_every": 1, "cluster_samples": 20}
"""Settings small enough for a run in about a second, with a clustering every epoch."""


@pytest.fixture
def tiny_context() -> Callable[..., tuple[Series, Series]]:
    """The first steps of a generated context: real structure, a fraction of the cost."""

    def make(kind: str = "simple", seed: int = 0, train_steps: int = 120,
             test_steps: int = 40) -> tuple[Series, Series]:
        train, test = generate_context(kind, seed)
        return ({a: v[:train_steps] for a, v in train.items()},
                {a: v[:test_steps] for a, v in test.items()})

    return make


@pytest.fixture
def tiny_config() -> Callable[..., OsmlConfig]:
    """OsmlConfig with the TINY settings, plus any changes."""
    return lambda **changes: OsmlConfig(**{**TINY, **changes})
