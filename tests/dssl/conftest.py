"""D-SSL tests compute with one thread, on tiny pools, for one or two rounds."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from osmotic.dssl.config import DsslConfig
from osmotic.engines.inprocess import cpu_threads

TINY = {"clients": 4, "rounds": 2, "local_steps": 2, "batch_size": 8, "pool_size": 160,
        "holdout": 60, "drift_batch": 16, "mar_latents": 4, "checkpoint_every": 1}


def tiny(**changes: Any) -> DsslConfig:
    return DsslConfig(**{**TINY, **changes})


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with cpu_threads(1):
        yield
