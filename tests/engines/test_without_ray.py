"""Without Ray installed, asking for the Ray engine is one clear error saying how to get it."""
from __future__ import annotations

import sys

import pytest

from osmotic.osml.trainer import train_osml


def test_engine_ray_without_ray_is_one_clear_error(monkeypatch, tiny_context, tiny_config):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    with pytest.raises(ValueError, match=r"^engine 'ray' needs Ray: pip install 'osmotic\[ray\]'$"):
        train_osml(tiny_config(engine="ray"), *tiny_context())
