"""Comparing runs' numbers: the same results apart from timings and what a feature adds."""
from __future__ import annotations

from collections.abc import Collection
from typing import Any


def numbers(x: Any, drop: Collection[str] = ()) -> Any:
    """`x` (a summary, metrics rows), however nested, without timings (keys with "seconds")
    and the keys in `drop`."""
    if isinstance(x, dict):
        return {k: numbers(v, drop) for k, v in x.items() if "seconds" not in k and k not in drop}
    if isinstance(x, list):
        return [numbers(v, drop) for v in x]
    return x
