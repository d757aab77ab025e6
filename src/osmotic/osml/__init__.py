"""Osmotic Learning (OSM-L): agents align embeddings of their own data to a diffused context.

`osmotic.osml.run(...)` runs one from Python (docs/api.md)."""
from __future__ import annotations

from typing import Any

__all__ = ["run"]


def __getattr__(name: str) -> Any:
    """`run` and `OsmlConfig` are imported on first use, so that `import osmotic.osml.metrics`
    (and the CLI's start-up) does not load the training code."""
    if name in ("run", "OsmlConfig"):
        from osmotic.osml import api

        return getattr(api, name)
    raise AttributeError(f"module 'osmotic.osml' has no attribute {name!r}")
