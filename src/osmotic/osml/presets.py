"""The OSM-L paper's experiments as data: which context, which agents, which settings differ
from the defaults. Light to import (the command line lists them before any training code
loads)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from osmotic.osml.config import OsmlConfig

Context = Literal["simple", "complex"]


@dataclass(frozen=True)
class Experiment:
    """One of the paper's experiments: a context, the agents taking part, changed settings."""

    name: str
    context: Context
    agents: tuple[str, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)
    about: str = ""

    def config(self, **overrides: Any) -> OsmlConfig:
        """The preset's config with `overrides` on top (None values leave a setting alone)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        preset = {"agents": list(self.agents), **self.settings}
        return OsmlConfig().with_overrides(**{**preset, **given})


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment("simple", "simple", ("0", "1"), {"epochs": 5},
                   "two strongly correlated agents: one context {0, 1}"),
        Experiment("robust", "simple", ("0", "1", "M0", "M1"), {"epochs": 5},
                   "plus two pure-noise agents, which must join no sub-context"),
        Experiment("complex", "complex", ("0", "1", "2", "3", "4"), {"epochs": 30},
                   "five agents: sub-contexts {0, 1} and {2, 3, 4}"),
    )
}
