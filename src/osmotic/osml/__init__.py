"""Osmotic Learning (OSM-L): agents align embeddings of their own data to a diffused context.

The mode's face: `Config` (`OsmlConfig`), `run`, `resume` (docs/api.md) and `MODE`; the
training code is imported on first use, so that `import osmotic.osml.metrics` (and the CLI's
start-up) does not load it."""
from __future__ import annotations

from osmotic.osml.config import OsmlConfig
from osmotic.runtime.session import mode_face

Config = OsmlConfig
__all__ = ["MODE", "Config", "OsmlConfig", "resume", "run"]
__getattr__ = mode_face(__name__)
