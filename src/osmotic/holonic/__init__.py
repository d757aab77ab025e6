"""Holonic Learning (HoL) and its averaging instance HoAL: agents grouped into a holarchy (a tree
of holons), models averaged horizontally among neighbours and vertically along the tree.
FedAvg, hierarchical (client-edge-cloud) FL and P2P learning are special holarchies.

The mode's face: `Config` (`HolonicConfig`), `run`, `resume` (docs/api.md) and `MODE`; the
training code is imported on first use, so that the CLI's start-up does not load it."""
from __future__ import annotations

from typing import Any

from osmotic.holonic.config import HolonicConfig

Config = HolonicConfig
__all__ = ["MODE", "Config", "HolonicConfig", "resume", "run"]


def __getattr__(name: str) -> Any:
    if name in ("run", "resume", "MODE"):
        from osmotic.holonic import api

        return getattr(api, name)
    raise AttributeError(f"module 'osmotic.holonic' has no attribute {name!r}")
