"""Differential privacy on what travels: the `privacy:` block every mode's config has, the
Gaussian mechanism (clip, then noise) and the accounting, done by Opacus' accountants.

What a mechanism protects differs by mode, so each mode says how many releases a round makes
and at what sampling rate (`Release`); this module turns that into ε at the configured δ, and
a `target_epsilon` into the noise multiplier that reaches it, both by Opacus (never by a
formula of ours). The accountant assumes Poisson subsampling; participation here draws a
fixed number of terminals per round uniformly, which Opacus, like most DP-FedAvg code, treats
as Poisson at rate k / n.

Clipping and noise leave a vector untouched (the same object, bit for bit) when the clip is
infinite and the noise multiplier 0, so a privacy block that does nothing changes nothing.
"""
from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor

from osmotic.settings import InputError, Settings

ACCOUNTANTS = ("rdp", "prv")


class PrivacySettings(Settings):
    """The `privacy:` block: what is clipped, how much noise, and the guarantee reported."""

    clip: float | None = Field(None, gt=0, description="L2 bound on what each sender releases "
                               "(a terminal's update, an OSM-L embedding, a per-sample gradient "
                               "with level: record); null or .inf: no clipping")
    noise_multiplier: float | None = Field(None, ge=0, description="Gaussian noise standard "
                                           "deviation in units of `clip` (exclusive with "
                                           "target_epsilon; neither: no noise)")
    target_epsilon: float | None = Field(None, gt=0, description="the ε the whole run may spend "
                                         "at `delta`: the noise multiplier is calibrated to it "
                                         "before the run starts")
    delta: float = Field(1e-5, gt=0, lt=1, description="δ of the reported (ε, δ) guarantee")
    where: Literal["central", "local"] = Field("central", description="who adds the noise: the "
                                               "head that averages (central) or each terminal "
                                               "before it sends (local); neighbours: local")
    level: Literal["user", "record"] = Field("user", description="user: a terminal's whole "
                                             "update is protected (DP-FedAvg); record: each "
                                             "training sample, by DP-SGD inside the terminal")
    secure_aggregation: bool = Field(False, description="pairwise masks: a head sees only the "
                                     "sum of its members' updates")
    accountant: Literal["rdp", "prv"] = Field("rdp", description="Opacus accountant")

    @field_validator("clip", mode="before")
    @classmethod
    def _infinite_clip(cls, v: Any) -> Any:
        """`.inf` (YAML's infinity) means no clipping, as null does."""
        return None if isinstance(v, float) and v == math.inf else v

    @model_validator(mode="after")
    def _checks(self) -> PrivacySettings:
        if self.noise_multiplier is not None and self.target_epsilon is not None:
            raise ValueError("give noise_multiplier or target_epsilon, not both")
        if self.target_epsilon is not None and self.clip is None:
            raise ValueError("target_epsilon needs a finite clip: noise is in units of clip")
        if self.noisy and self.clip is None:
            raise ValueError("noise_multiplier > 0 needs a finite clip: noise is in units of clip")
        return self

    @property
    def noisy(self) -> bool:
        """Whether noise is added (a DP guarantee is claimed)."""
        return self.target_epsilon is not None or (self.noise_multiplier or 0.0) > 0

    @property
    def identity(self) -> bool:
        """Whether the mechanism leaves everything as it is (no clipping, no noise)."""
        return self.clip is None and not self.noisy


@dataclass(frozen=True)
class Release:
    """How a protected unit (a terminal, a record, a time step) takes part in a run: `steps`
    Gaussian releases per round (epoch) at sampling rate `sample_rate`, each with L2
    sensitivity `sensitivity` × clip."""

    sample_rate: float
    steps: int = 1
    sensitivity: float = 1.0


def epsilon(noise_multiplier: float, release: Release, rounds: int, delta: float,
            accountant: str = "rdp") -> float:
    """ε after `rounds` rounds of `release` at `delta`, by Opacus' accountant (inf without
    noise, 0 before the first round)."""
    if rounds == 0 or release.steps == 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    acc = _accountant(accountant)
    acc.history = [(noise_multiplier / release.sensitivity, release.sample_rate,
                    rounds * release.steps)]
    with warnings.catch_warnings():  # "optimal order is the largest alpha": a looser bound
        warnings.simplefilter("ignore")
        return float(acc.get_epsilon(delta))


def calibrate(target_epsilon: float, release: Release, rounds: int, delta: float,
              accountant: str = "rdp") -> float:
    """The noise multiplier (in units of clip) at which `rounds` rounds of `release` spend at
    most `target_epsilon` at `delta`, found by Opacus; one line naming the setting when no
    noise reaches it."""
    from opacus.accountants.utils import get_noise_multiplier

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sigma = get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta,
                                         sample_rate=release.sample_rate,
                                         steps=rounds * release.steps, accountant=accountant)
    except ValueError:
        raise InputError(f"privacy.target_epsilon: {target_epsilon:g} cannot be reached at "
                         f"delta {delta:g} over {rounds} rounds (no noise multiplier up to "
                         "1e6 is enough); raise it, or lower the rounds") from None
    return float(sigma) * release.sensitivity


@dataclass(frozen=True)
class Budget:
    """A run's privacy plan: the block, how a protected unit is released each round, and the
    noise multiplier in force (the block's, or the one calibrated to its `target_epsilon` over
    `rounds` before the run starts). Every mode reports ε the same way through it."""

    settings: PrivacySettings
    release: Release
    noise_multiplier: float

    @classmethod
    def plan(cls, settings: PrivacySettings, release: Release, rounds: int) -> Budget:
        sigma = settings.noise_multiplier or 0.0
        if settings.target_epsilon is not None:
            sigma = calibrate(settings.target_epsilon, release, rounds, settings.delta,
                              settings.accountant)
        return cls(settings, release, sigma)

    @property
    def mechanism(self) -> Mechanism:
        return Mechanism(self.settings.clip, self.noise_multiplier)

    def epsilon(self, rounds: int) -> float | None:
        """ε spent after `rounds` rounds of releases (None: no noise, no guarantee)."""
        eps = epsilon(self.noise_multiplier, self.release, rounds, self.settings.delta,
                      self.settings.accountant)
        return None if math.isinf(eps) else eps

    def summary(self, rounds: int) -> dict[str, Any]:
        """What a summary says of privacy after `rounds` rounds (ε None: no guarantee)."""
        s = self.settings
        return {"epsilon": self.epsilon(rounds), "delta": s.delta,
                "noise_multiplier": self.noise_multiplier, "clip": s.clip, "where": s.where,
                "level": s.level, "secure_aggregation": s.secure_aggregation,
                "sample_rate": self.release.sample_rate,
                "releases_per_round": self.release.steps}


def _accountant(name: str) -> Any:
    from opacus.accountants import PRVAccountant, RDPAccountant

    return {"rdp": RDPAccountant, "prv": PRVAccountant}[name]()


def warn_delta(delta: float, population: int, unit: str = "terminals") -> None:
    """One line on stderr when δ ≥ 1 / population: a guarantee that lets one member in every
    population leak in full is no guarantee."""
    if population > 0 and delta >= 1 / population:
        print(f"warning: privacy.delta {delta:g} is at or above 1 / {population} {unit}: the "
              f"guarantee allows one of them to leak in full; use delta < {1 / population:g}",
              file=sys.stderr)


class Mechanism:
    """Clip rows to L2 norm `clip`, then add Gaussian noise of standard deviation
    `noise_multiplier` × clip drawn from a given generator."""

    def __init__(self, clip: float | None, noise_multiplier: float):
        self.clip, self.noise_multiplier = clip, noise_multiplier

    @property
    def std(self) -> float:
        return 0.0 if self.clip is None else self.noise_multiplier * self.clip

    def clipped(self, rows: Tensor) -> Tensor:
        """`rows` [n, ...] each scaled to L2 norm at most `clip` over its trailing axes; the
        very same tensor when none is longer (no arithmetic, so nothing rounds)."""
        if self.clip is None:
            return rows
        norms = rows.flatten(1).norm(dim=1) if rows.dim() > 1 else rows.abs()
        over = norms > self.clip
        if not bool(over.any()):
            return rows
        scale = self.scale(norms)
        return rows * scale.reshape(-1, *([1] * (rows.dim() - 1))).to(rows.dtype)

    def scale(self, norms: Tensor) -> Tensor:
        """The factor that brings rows of L2 norm `norms` to at most `clip` (1 where none is
        needed; `clip` finite)."""
        assert self.clip is not None
        return torch.where(norms > self.clip, self.clip / norms.clamp_min(1e-30),
                           torch.ones_like(norms))

    def noise(self, shape: Sequence[int], generator: torch.Generator,
              dtype: torch.dtype = torch.float32) -> Tensor | None:
        """Gaussian noise of the mechanism's standard deviation (None when it is 0)."""
        if self.std == 0:
            return None
        return torch.randn(*shape, generator=generator, dtype=dtype) * self.std
