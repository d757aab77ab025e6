"""Osmotic Learning (OSM-L): agents align embeddings of their own data to a diffused context.

The mode's face: `Config` (`OsmlConfig`), `run`, `resume` (docs/api.md) and `MODE`; the
training code is imported on first use, so that `import osmotic.osml.metrics` (and the CLI's
start-up) does not load it."""
from __future__ import annotations

from typing import Any

from osmotic.osml.config import OsmlConfig

Config = OsmlConfig
__all__ = ["MODE", "Config", "OsmlConfig", "resume", "run"]


def __getattr__(name: str) -> Any:
    if name in ("run", "resume", "MODE"):
        from osmotic.osml import api

        return getattr(api, name)
    raise AttributeError(f"module 'osmotic.osml' has no attribute {name!r}")
