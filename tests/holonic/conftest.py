"""Every holonic test computes with one thread, as runs do by default (`threads: 1`): on a busy
2-core machine two threads made these tiny models train several times slower."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from osmotic.engines.inprocess import cpu_threads


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with cpu_threads(1):
        yield
