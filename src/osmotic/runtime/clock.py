"""A simulated clock: how long each terminal takes for its local work, in simulated seconds.

The model: terminal t has a compute speed v_t (samples per simulated second) and a link delay
d_t (simulated seconds per round trip: the model down, the update up). One turn of local
training over its n_t samples for E local epochs lasts

    duration_t = n_t · E / v_t + d_t.

Nothing runs slower for real: the clock only orders and times events (a synchronous round
lasts as long as its slowest trained terminal; a buffered head aggregates when its B-th
update arrives). Speeds and delays come from a config's `clock:` block: drawn per terminal
from a distribution (constant, lognormal, uniform), with a share of stragglers whose speed is
divided by `straggler_factor`, or read from a CSV or YAML file. Draws depend only on the run's
seed and the terminal ids (`agent_seed`), never on the order or grouping of terminals.
"""
from __future__ import annotations

import csv
import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import Field, field_validator, model_validator

from osmotic.runtime.population import agent_seed
from osmotic.settings import InputError, Settings


class Distribution(Settings):
    """One positive number per terminal: `{distribution: lognormal, sigma: 0.5}`, say; a plain
    number means that constant."""

    distribution: Literal["constant", "lognormal", "uniform"] = "constant"
    value: float = Field(1.0, ge=0, description="constant: the number; lognormal: the median")
    sigma: float = Field(0.5, ge=0, description="lognormal: standard deviation of the log")
    low: float | None = Field(None, ge=0, description="uniform: the lower bound")
    high: float | None = Field(None, ge=0, description="uniform: the upper bound")

    @model_validator(mode="after")
    def _parameters(self) -> Distribution:
        takes = {"constant": {"value"}, "lognormal": {"value", "sigma"},
                 "uniform": {"low", "high"}}[self.distribution]
        extra = sorted(k for k in self.model_fields_set - takes - {"distribution"}
                       if getattr(self, k) != type(self).model_fields[k].default)
        if extra:
            raise ValueError(f"{self.distribution} takes {', '.join(sorted(takes))}, not "
                             f"{', '.join(extra)}")
        if self.distribution == "uniform" and (self.low is None or self.high is None
                                               or self.low > self.high):
            raise ValueError("uniform needs low <= high")
        return self

    @property
    def smallest(self) -> float:
        """The least value a draw can take."""
        return self.low if self.distribution == "uniform" else self.value

    def draw(self, rng: np.random.Generator) -> float:
        if self.distribution == "lognormal":
            return float(self.value * math.exp(self.sigma * rng.standard_normal()))
        if self.distribution == "uniform":
            return float(rng.uniform(self.low, self.high))
        return self.value


class ClockSettings(Settings):
    """The `clock:` block: each terminal's compute speed and link delay (module docstring)."""

    speed: Distribution = Field(default_factory=Distribution, description="samples per "
                                "simulated second, per terminal (default: 1)")
    delay: Distribution = Field(default_factory=lambda: Distribution(value=0.0),
                                description="simulated seconds per round trip, per terminal "
                                "(default: 0)")
    stragglers: float = Field(0.0, ge=0, le=1, description="share of terminals (seeded draw) "
                              "whose speed is divided by straggler_factor")
    straggler_factor: float = Field(10.0, ge=1, description="how many times slower a "
                                    "straggler computes")
    file: str | None = Field(None, description="CSV (columns terminal, speed, delay) or YAML "
                             "({terminal: {speed, delay}}) of every terminal's speed and delay "
                             "(exclusive with speed, delay and stragglers)")

    @field_validator("speed", "delay", mode="before")
    @classmethod
    def _constant(cls, v: Any) -> Any:
        """A plain number as a constant distribution."""
        if isinstance(v, int | float) and not isinstance(v, bool):
            return {"distribution": "constant", "value": v}
        return v

    @model_validator(mode="after")
    def _checks(self) -> ClockSettings:
        if self.file is not None:
            default = ClockSettings()
            drawn = [k for k in ("speed", "delay", "stragglers", "straggler_factor")
                     if getattr(self, k) != getattr(default, k)]
            if drawn:
                raise ValueError(f"file gives every terminal's speed and delay; drop "
                                 f"{', '.join(drawn)}")
        if not self.speed.smallest > 0:
            raise ValueError("speed: every draw must be positive (a constant, median or low "
                             "bound above 0)")
        return self


class AsyncSettings(Settings):
    """The settings of simulated time and asynchronous aggregation, the same in every mode
    that has them: a `clock:` block and how a head (a diffuser) waits for its members.

    Checked here: what needs no more than these fields. What needs the holarchy (buffered:
    heads of terminals only under plain averaging heads, no neighbour edges, B at most what a
    head draws per round, no privacy; a clock file listing exactly the terminals) is
    `holarchy.asynchronous.check_asynchronous`, which the holarchy modes' configs (holonic,
    D-SSL) call; this layer cannot see a holarchy."""

    clock: ClockSettings | None = Field(None, description="simulated time: each member's "
                                        "(terminal's, agent's) speed and link delay {speed, "
                                        "delay, stragglers, straggler_factor} or {file}; rows "
                                        "gain sim_time")
    aggregation: Literal["sync", "buffered"] = Field("sync", description="sync: wait for every "
                                                     "drawn member each round (OSM-L: batch); "
                                                     "buffered: aggregate as soon as `buffer` "
                                                     "updates (embeddings) arrived")
    buffer: int | None = Field(None, ge=1, description="B: arrivals a buffered head or diffuser "
                               "waits for (at most, and by default, the members drawn per "
                               "round)")
    staleness_exponent: float = Field(0.5, ge=0, description="a: an update s versions stale "
                                      "weighs data size × (1 + s)^-a (not used by OSM-L)")

    @model_validator(mode="after")
    def _buffer_only_when_buffered(self) -> AsyncSettings:
        if self.aggregation == "sync" and self.buffer is not None:
            raise ValueError("buffer: only with aggregation: buffered")
        return self


def with_clock_folder(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Settings read from a file in `folder` with a relative `clock: {file: ...}` taken from
    that folder (made absolute, so a resume from elsewhere finds it)."""
    clock = data.get("clock")
    if isinstance(clock, dict) and isinstance(clock.get("file"), str) \
            and not Path(clock["file"]).is_absolute():
        return {**data, "clock": {**clock, "file": str((folder / clock["file"]).resolve())}}
    return data


def read_clock_file(path: str | Path, terminals: Sequence[str]
                    ) -> dict[str, tuple[float, float]]:
    """{terminal: (speed, delay)} from a CSV (header `terminal,speed,delay`; delay optional,
    default 0) or a YAML mapping `terminal: {speed: v, delay: d}`; one line (`InputError`)
    naming the file and the terminal for an unknown or missing terminal or a bad number."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such clock file")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:  # terminal ids may read as numbers: not `settings.read_mapping`
            data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise InputError(f"{path}: cannot read ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a mapping of terminal: {{speed, delay}}")
        rows = {str(k): v if isinstance(v, dict) else {"speed": v} for k, v in data.items()}
    else:
        try:
            with path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                if "terminal" not in (reader.fieldnames or []) \
                        or "speed" not in reader.fieldnames:
                    raise InputError(f"{path}: needs a header with columns terminal, speed "
                                     "(and delay)")
                rows = {}
                for row in reader:
                    t = (row.get("terminal") or "").strip()
                    if t in rows:
                        raise InputError(f"{path}: terminal {t}: listed twice")
                    rows[t] = {k: v for k, v in row.items() if k != "terminal"}
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise InputError(f"{path}: cannot read ({e})") from None
    known = set(terminals)
    for t in rows:
        if t not in known:
            raise InputError(f"{path}: terminal {t}: not a terminal of the holarchy")
    out = {}
    for t in terminals:
        if t not in rows:
            raise InputError(f"{path}: terminal {t}: missing (every terminal needs a speed)")
        extra = set(rows[t]) - {"speed", "delay"}
        if extra:
            raise InputError(f"{path}: terminal {t}: unknown {', '.join(sorted(extra))} "
                             "(speed, delay)")
        speed = _number(rows[t].get("speed"), path, t, "speed", positive=True)
        delay = _number(rows[t].get("delay") or 0, path, t, "delay", positive=False)
        out[t] = (speed, delay)
    return out


def _number(v: Any, path: Path, terminal: str, name: str, *, positive: bool) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x) or x < 0 or (positive and x == 0):
        raise InputError(f"{path}: terminal {terminal}: {name} must be a "
                         f"{'positive' if positive else 'non-negative'} number, got {v!r}")
    return x


class SimClock:
    """Each terminal's speed, delay and duration for one turn of local work (module docstring).

    `sizes` are the terminals' sample counts (n_t), `epochs` the local epochs E per turn.
    """

    def __init__(self, settings: ClockSettings, sizes: Mapping[str, int], epochs: int,
                 seed: int):
        ids = list(sizes)
        if settings.file is not None:
            given = read_clock_file(settings.file, ids)
            self.speed = {t: given[t][0] for t in ids}
            self.delay = {t: given[t][1] for t in ids}
        else:
            self.speed = {t: settings.speed.draw(_rng(seed, t, "speed")) for t in ids}
            self.delay = {t: settings.delay.draw(_rng(seed, t, "delay")) for t in ids}
            for t in stragglers(ids, settings.stragglers, seed):
                self.speed[t] /= settings.straggler_factor
        self.durations = {t: sizes[t] * epochs / self.speed[t] + self.delay[t] for t in ids}

    def duration(self, terminal: str) -> float:
        """Simulated seconds terminal `terminal` takes for one turn of local work."""
        return self.durations[terminal]

    def round_time(self, terminals: Collection[str]) -> float:
        """A synchronous round's length: its slowest terminal's duration (0 for none)."""
        return max((self.durations[t] for t in terminals), default=0.0)


def stragglers(ids: Sequence[str], share: float, seed: int) -> list[str]:
    """round(share · terminals) of `ids`: those with the smallest seeded key, so the choice
    depends on the seed and the ids alone."""
    k = int(share * len(ids) + 0.5)
    keys = {t: _rng(seed, t, "straggler").random() for t in ids}
    return sorted(ids, key=lambda t: (keys[t], t))[:k]


def _rng(seed: int, terminal: str, what: str) -> np.random.Generator:
    return np.random.default_rng(agent_seed(seed, terminal, f"clock:{what}"))
