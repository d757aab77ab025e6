"""Asynchronous rounds for every mode that trains terminals under a holarchy (holonic, D-SSL):
the checks of `runtime.clock.AsyncSettings` that need the holarchy, and the drivers a mode's
job hands its units to.

- `check_asynchronous`: what `aggregation: buffered` and a `clock:` block need of the holarchy
  and the rest of the settings; each mode's config calls it (the one place they are checked).
- `asynchronous_rounds`: for a mode's settings, nothing (plain synchronous rounds),
  `ClockedRounds` (synchronous rounds timed by the simulated clock: `sim_time`) or
  `BufferedRounds` (one buffered aggregation per unit at the root: `holarchy.buffered`).

A terminal's local work for the clock is given by the mode as samples per epoch and epochs
(`SimClock`): holonic, its data size × E; D-SSL, local_steps × batch_size (one "epoch") or its
data size × local_epochs.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from osmotic.holarchy.buffered import BufferedHead, buffering_head, drawn_per_round
from osmotic.holarchy.holarchy import Holarchy
from osmotic.holarchy.schedule import SyncSchedule
from osmotic.runtime.clock import AsyncSettings, ClockSettings, SimClock, read_clock_file
from osmotic.runtime.lifecycle import check_finite


def check_asynchronous(settings: AsyncSettings, holarchy: Callable[[], Holarchy | None], *,
                       participation: float, dropout_rate: float, privacy: bool) -> None:
    """One line (a `ValueError`, or the clock file's `InputError`) for what the run cannot do:
    `aggregation: buffered` needs every drawn terminal to report (no `dropout_rate`, no
    `privacy` yet), a one-level holarchy (`buffering_head`) and `buffer` at most the terminals
    drawn per round; a clock file must list exactly the terminals. `holarchy` builds the
    run's holarchy, only when needed; None: it cannot be built, which the run reports in its
    own words."""
    if settings.aggregation == "buffered" and (dropout_rate or privacy):
        raise ValueError("aggregation: buffered does not take dropout_rate or privacy yet")
    clock_file = None if settings.clock is None else settings.clock.file
    if settings.aggregation == "sync" and clock_file is None:
        return
    built = holarchy()
    if built is None:
        return
    if clock_file is not None:
        read_clock_file(clock_file, built.terminals())
    if settings.aggregation == "buffered":
        buffering_head(built)
        drawn = drawn_per_round(len(built.terminals()), participation)
        if settings.buffer is not None and settings.buffer > drawn:
            raise ValueError(f"buffer: at most the {drawn} terminals drawn per round "
                             f"(participation × terminals), got {settings.buffer}")


class Engine(Protocol):
    """What the drivers ask of a mode's terminals (`holarchy.terminals`, in-process or Ray)."""

    def train(self, epochs: int | None = None, active: Collection[str] | None = None,
              steps: int | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def load_flat(self, flat: np.ndarray) -> None: ...


class ClockedRounds:
    """Synchronous rounds on a simulated clock: a round lasts as long as its slowest trained
    terminal; `sim_time` is the simulated seconds so far."""

    def __init__(self, clock: SimClock):
        self.clock = clock
        self.sim_time = 0.0

    def advance(self, trained: Collection[str]) -> dict[str, float]:
        """A round of the terminals `trained` has passed: the row's `sim_time`."""
        self.sim_time += self.clock.round_time(trained)
        return {"sim_time": self.sim_time}

    def state(self) -> dict[str, Any]:
        return {"sim_time": self.sim_time}

    def load_state(self, meta: dict[str, Any]) -> None:
        self.sim_time = float(meta["sim_time"])


@dataclass
class Aggregation:
    """One buffered aggregation, for the mode's row: `loss` [T] (NaN for the terminals not
    aggregated), `trained` [T, P] the terminals' models after local training, `models` [T, P]
    what each terminal holds now (already loaded into the engine), `aggregated` the terminals
    whose updates were aggregated (member order), and `row` its fields: `trained` and
    `reported` (their number), `staleness` (their mean), `arrived` (their ids in the order the
    updates reached the head), and `sim_time` with a `clock:` block."""

    loss: np.ndarray
    trained: Tensor
    models: Tensor
    aggregated: list[str]
    row: dict[str, Any]


class BufferedRounds:
    """Buffered asynchronous aggregation at the root of a one-level holarchy
    (`holarchy.buffered`), driven one aggregation per unit: the next B updates to arrive are
    trained (from the model each terminal started from), aggregated with their staleness
    weights into the root's model (`schedule.models[root]`), and as many idle terminals start
    from it; a terminal in flight holds the model it started from. Traffic
    (`schedule.traffic`): an aggregated update is one vertical message of its terminal, a start
    one of the head. Which updates an aggregation consumes, and in which order they arrived,
    is decided by the simulated clock alone (`BufferedHead.in_arrival_order`, recorded as
    `arrived`), never by which process finished first, so every engine (Ray included) gives
    the same rows; the weighted average itself sums them in member order, as a synchronous
    round does (hence its bits when B = all drawn)."""

    def __init__(self, holarchy: Holarchy, schedule: SyncSchedule, clock: SimClock,
                 settings: AsyncSettings, *, participation: float, seed: int, timed: bool):
        self.schedule, self.clock, self.timed = schedule, clock, timed
        self.terminals = holarchy.terminals()
        self.root = buffering_head(holarchy)
        concurrency = drawn_per_round(len(self.terminals), participation)
        self.head = BufferedHead(self.root, self.terminals, schedule.weights,
                                 schedule.models[self.root],
                                 buffer=settings.buffer or concurrency, concurrency=concurrency,
                                 exponent=settings.staleness_exponent, seed=seed)
        self.index = {t: i for i, t in enumerate(self.terminals)}
        schedule.traffic.send(self.root, "vertical", len(self.head.fill(clock.durations)))

    def step(self, engine: Engine, epochs: int | None = None, steps: int | None = None
             ) -> Aggregation:
        """One aggregation: train the next B arrivals (`epochs` or `steps` of local work),
        aggregate them, start as many terminals, and load what every terminal holds."""
        head = self.head
        arrived = head.arrivals()
        order = head.in_arrival_order(arrived)
        loss, flat = engine.train(epochs, arrived, steps)
        check_finite(loss.tolist(), self.terminals, arrived, flat)
        trained = torch.from_numpy(flat)
        staleness = [head.staleness(t) for t in arrived]
        self.schedule.models[self.root] = head.aggregate(
            {t: trained[self.index[t]] for t in arrived})
        for t in arrived:
            self.schedule.traffic.send(t, "vertical")
        started = head.fill(self.clock.durations)
        self.schedule.traffic.send(self.root, "vertical", len(started))
        models = head.holding(self.terminals)
        engine.load_flat(models.numpy())
        row: dict[str, Any] = {"trained": len(arrived), "reported": len(arrived),
                               "staleness": float(np.mean(staleness)), "arrived": order}
        if self.timed:
            row["sim_time"] = head.now
        return Aggregation(loss, trained, models, arrived, row)

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return self.head.state()

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        self.head.load_state(tensors, meta)


def asynchronous_rounds(settings: AsyncSettings, holarchy: Holarchy, schedule: SyncSchedule,
                        samples: Mapping[str, int], epochs: int, *, participation: float,
                        seed: int) -> ClockedRounds | BufferedRounds | None:
    """The driver `settings` ask for: None (synchronous rounds, no clock), `ClockedRounds`
    (a `clock:` block, sync rounds) or `BufferedRounds` (`aggregation: buffered`; without a
    `clock:` block arrivals follow speed 1 and no delay, and rows carry no `sim_time`).
    `samples` × `epochs` is each terminal's local work per turn (module docstring)."""
    if settings.clock is None and settings.aggregation == "sync":
        return None
    clock = SimClock(settings.clock or ClockSettings(), samples, epochs, seed)
    if settings.aggregation == "sync":
        return ClockedRounds(clock)
    return BufferedRounds(holarchy, schedule, clock, settings, participation=participation,
                          seed=seed, timed=settings.clock is not None)
