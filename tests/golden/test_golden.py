"""The same numbers as before the reorganisation: every golden case, exactly."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.golden.cases import CASES, compute, path


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_numbers_as_recorded(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if "ray" in name:
        request.getfixturevalue("ray_local")
    expected = json.loads(path(name).read_text())
    assert compute(name, tmp_path) == expected
