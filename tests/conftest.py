"""Shared fixtures: tiny OSM-L runs, so the whole suite stays fast on a 2-core machine, and one
local Ray instance for the session."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from osmotic.data.synthetic import generate_context
from osmotic.osml.config import OsmlConfig

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


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Any]:
    """One local Ray instance (2 CPUs) for the whole test session, started and stopped here."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'osmotic[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
