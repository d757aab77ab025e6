"""Holonic Learning (HoL) and its averaging instance HoAL: agents grouped into a holarchy (a tree
of holons), models averaged horizontally among neighbours and vertically along the tree.
FedAvg, hierarchical (client-edge-cloud) FL and P2P learning are special holarchies.

The mode's face: `Config` (`HolonicConfig`), `run`, `resume` (docs/api.md) and `MODE`; the
training code is imported on first use, so that the CLI's start-up does not load it."""
from __future__ import annotations

from osmotic.holonic.config import HolonicConfig
from osmotic.runtime.session import mode_face

Config = HolonicConfig
__all__ = ["MODE", "Config", "HolonicConfig", "resume", "run"]
__getattr__ = mode_face(__name__)
