"""Holonic Learning (HoL) and its averaging instance HoAL: agents grouped into a holarchy (a tree
of holons), models averaged horizontally among neighbours and vertically along the tree.
FedAvg, hierarchical (client-edge-cloud) FL and P2P learning are special holarchies.

`osmotic.holonic.run(...)` runs one from Python (docs/api.md)."""
from __future__ import annotations

from typing import Any

__all__ = ["run"]


def __getattr__(name: str) -> Any:
    """`run` is imported on first use, so that `import osmotic.holarchy.holarchy` (and the CLI's
    start-up) does not load the training code."""
    if name == "run":
        from osmotic.holonic.api import run

        return run
    raise AttributeError(f"module 'osmotic.holonic' has no attribute {name!r}")
