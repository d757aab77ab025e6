"""The same numbers as before the reorganisation, for every golden case.

On one machine a case repeats bit for bit; across machines PyTorch's CPU kernels take other
vector paths (AVX-512 against AVX2, say) and round in the last bits. So everything discrete
(sub-contexts, counts, bytes, keys) must match exactly and every float to a relative 1e-3
(1e-6 absolute near zero): above what a last-bit difference grows into over a few epochs of
float32 training (measured between an AVX-512 and an AVX2 machine: losses 3e-5, one linear
probe's accuracy one test image in 4,000, 6e-4), below what a change to the code makes.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.golden.cases import CASES, compute, path


def differences(got: Any, want: Any, where: str = "") -> list[str]:
    """Where `got` and `want` differ: exactly, except floats beyond a relative 1e-3."""
    if isinstance(want, float) and isinstance(got, int | float) and not isinstance(got, bool):
        return [] if math.isclose(got, want, rel_tol=1e-3, abs_tol=1e-6) else \
            [f"{where}: {got!r} != {want!r}"]
    if isinstance(want, dict) and isinstance(got, dict):
        if got.keys() != want.keys():
            return [f"{where}: keys {sorted(got.keys() ^ want.keys())} differ"]
        return [d for k in want for d in differences(got[k], want[k], f"{where}.{k}")]
    if isinstance(want, list) and isinstance(got, list) and len(got) == len(want):
        return [d for i, (g, w) in enumerate(zip(got, want, strict=True))
                for d in differences(g, w, f"{where}[{i}]")]
    return [] if got == want else [f"{where}: {got!r} != {want!r}"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_numbers_as_recorded(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if "ray" in name:
        request.getfixturevalue("ray_local")
    expected = json.loads(path(name).read_text())
    assert differences(compute(name, tmp_path), expected) == []


def test_a_change_beyond_rounding_is_caught() -> None:
    assert differences({"a": [1.0, "x"]}, {"a": [1.0 + 1e-5, "x"]}) == []
    assert differences({"a": [1.01, "x"]}, {"a": [1.0, "x"]}) != []
    assert differences({"a": [1.0, "y"]}, {"a": [1.0, "x"]}) != []
    assert differences({"a": 1.0, "b": 2}, {"a": 1.0}) != []
