"""Asynchronous rounds for every mode that trains terminals under a holarchy (holonic, D-SSL):
the checks of `runtime.clock.AsyncSettings` that need the holarchy, and the drivers a mode's
job hands its units to.

- `check_asynchronous`: what `aggregation: buffered` and a `clock:` block need of the holarchy
  and the rest of the settings; each mode's config calls it (the one place they are checked).
- `asynchronous_rounds`: for a mode's settings, nothing (plain synchronous rounds),
  `ClockedRounds` (synchronous rounds timed by the simulated clock: `sim_time`) or
  `BufferedRounds` (one buffered aggregation per unit at the root of a one-level holarchy:
  `holarchy.buffered`) or `LayeredRounds` (every head over terminals buffers on its own in a
  deeper holarchy; one event per unit).

A terminal's local work for the clock is given by the mode as samples per epoch and epochs
(`SimClock`): holonic, its data size × E; D-SSL, local_steps × batch_size (one "epoch") or its
data size × local_epochs.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from osmotic.holarchy.buffered import (
    BufferedHead,
    buffering_head,
    buffering_heads,
)
from osmotic.holarchy.holarchy import Holarchy
from osmotic.holarchy.privacy import HolarchyPrivacy, buffered_refusal
from osmotic.holarchy.schedule import SyncSchedule, drawn_per_round
from osmotic.runtime.clock import AsyncSettings, ClockSettings, SimClock, read_clock_file
from osmotic.runtime.lifecycle import check_finite
from osmotic.runtime.privacy import PrivacySettings


def check_asynchronous(settings: AsyncSettings, holarchy: Callable[[], Holarchy | None], *,
                       participation: float) -> None:
    """One line (a `ValueError`, or the clock file's `InputError`) for what the run cannot do:
    `aggregation: buffered` takes local DP and record-level DP-SGD but not central noise or
    secure aggregation (`holarchy.privacy.buffered_refusal`, on the settings' `privacy` block), a holarchy without neighbour edges whose
    non-terminals all aggregate (`buffering_heads`), and `buffer` at most the terminals drawn
    per round by each head over terminals; `dropout_rate` is taken (`BufferedHead.drops`); a
    clock file must list exactly the terminals. `holarchy` builds the
    run's holarchy, only when needed; None: it cannot be built, which the run reports in its
    own words."""
    block = getattr(settings, "privacy", None)
    if settings.aggregation == "buffered" and isinstance(block, PrivacySettings) \
            and (refusal := buffered_refusal(block)) is not None:
        raise ValueError(refusal)
    clock_file = None if settings.clock is None else settings.clock.file
    if settings.aggregation == "sync" and clock_file is None:
        return
    built = holarchy()
    if built is None:
        return
    if clock_file is not None:
        read_clock_file(clock_file, built.terminals())
    if settings.aggregation == "buffered":
        heads = buffering_heads(built)
        drawn = min(drawn_per_round(len(built.holons[h].members), participation)
                    for h in heads)
        if settings.buffer is not None and settings.buffer > drawn:
            where = "per round" if heads == [built.root] else "per round by the smallest head"
            raise ValueError(f"buffer: at most the {drawn} terminals drawn {where} "
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
    """One buffered aggregation, for the mode's row: `loss` [T] (NaN for the terminals that
    did not train), `trained` [T, P] the terminals' models after local training, `models`
    [T, P] what each terminal holds now (already loaded into the engine), `aggregated` the
    terminals whose updates were aggregated (member order), `dropped` those that trained but
    dropped out (member order), and `row` its fields: `trained` (aggregated and dropped) and
    `reported` (aggregated), `staleness` (the aggregated updates' mean; None if none
    arrived), `arrived` (their ids in the order the updates reached the head), and
    `sim_time` with a `clock:` block."""

    loss: np.ndarray
    trained: Tensor
    models: Tensor
    aggregated: list[str]
    row: dict[str, Any]
    dropped: list[str] = field(default_factory=list)


def buffered_privacy(schedule: SyncSchedule) -> HolarchyPrivacy | None:
    """The run's privacy block (`schedule.privacy`), which must have been planned for buffered
    aggregation (`plan_privacy(..., buffered=True)`: its target and ε count updates sent)."""
    p = schedule.privacy
    if p is not None and not (isinstance(p, HolarchyPrivacy) and p.buffered):
        raise ValueError("aggregation: buffered needs the privacy block planned for it "
                         "(holarchy.privacy.plan_privacy(..., buffered=True))")
    return p


def privatised(privacy: HolarchyPrivacy | None, head: BufferedHead,
               trained: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """What each terminal whose update arrived at `head` ({terminal: trained model}) sends:
    under `privacy` (`HolarchyPrivacy.sent`) its update relative to the model it started from,
    clipped and with its own noise, keyed by the version it started from + 1 (the round a
    synchronous run keys it by); else its trained model."""
    if privacy is None:
        return dict(trained)
    return {t: privacy.sent(head.flights[t].version + 1, t, x, head.starts[t])[0]
            for t, x in trained.items()}


def _privacy_state(privacy: HolarchyPrivacy | None) -> dict[str, Any]:
    return {} if privacy is None else {"privacy": privacy.counting_state()}


def _load_privacy_state(privacy: HolarchyPrivacy | None, meta: dict[str, Any]) -> None:
    if privacy is not None and "privacy" in meta:
        privacy.load_counting_state(meta["privacy"])


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
    round does (hence its bits when B = all drawn). With `dropout_rate` a terminal that drops
    out trains but is not aggregated (`BufferedHead.drops`): its flight ends, one of the B,
    when its update would have arrived. Under local DP (`schedule.privacy`) the head
    aggregates what each terminal sent (`privatised`) and every unit counts who sent."""

    def __init__(self, holarchy: Holarchy, schedule: SyncSchedule, clock: SimClock,
                 settings: AsyncSettings, *, participation: float, seed: int, timed: bool,
                 dropout_rate: float = 0.0):
        self.schedule, self.clock, self.timed = schedule, clock, timed
        self.terminals = holarchy.terminals()
        self.root = buffering_head(holarchy)
        concurrency = drawn_per_round(len(self.terminals), participation)
        self.head = BufferedHead(self.root, self.terminals, schedule.weights,
                                 schedule.models[self.root],
                                 buffer=settings.buffer or concurrency, concurrency=concurrency,
                                 exponent=settings.staleness_exponent, seed=seed,
                                 dropout_rate=dropout_rate)
        self.index = {t: i for i, t in enumerate(self.terminals)}
        self.privacy = buffered_privacy(schedule)
        schedule.traffic.send(self.root, "vertical", len(self.head.fill(clock.durations)))

    def step(self, engine: Engine, epochs: int | None = None, steps: int | None = None
             ) -> Aggregation:
        """One aggregation: train the next B flights to end (`epochs` or `steps` of local
        work), aggregate those whose updates arrive, start as many terminals as ended, and
        load what every terminal holds."""
        head = self.head
        ended = head.arrivals()
        dropped = [t for t in ended if head.drops(t)]
        arrived = [t for t in ended if t not in dropped]
        order = head.in_arrival_order(arrived)
        loss, flat = engine.train(epochs, ended, steps)
        check_finite(loss.tolist(), self.terminals, ended, flat)
        trained = torch.from_numpy(flat)
        staleness = [head.staleness(t) for t in arrived]
        self.schedule.models[self.root] = head.aggregate(privatised(
            self.privacy, head, {t: trained[self.index[t]] for t in arrived}), dropped)
        if self.privacy is not None:
            self.privacy.count(arrived)
        for t in arrived:
            self.schedule.traffic.send(t, "vertical")
        started = head.fill(self.clock.durations)
        self.schedule.traffic.send(self.root, "vertical", len(started))
        models = head.holding(self.terminals)
        engine.load_flat(models.numpy())
        row: dict[str, Any] = {"trained": len(ended), "reported": len(arrived),
                               "staleness": float(np.mean(staleness)) if staleness else None,
                               "arrived": order}
        if self.timed:
            row["sim_time"] = head.now
        return Aggregation(loss, trained, models, arrived, row, dropped)

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors, meta = self.head.state()
        return tensors, {**meta, **_privacy_state(self.privacy)}

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        self.head.load_state(tensors, meta)
        _load_privacy_state(self.privacy, meta)


class LayeredRounds:
    """Buffered aggregation in a holarchy of any depth without neighbour edges
    (`buffering_heads`): every head over terminals is a `BufferedHead` of its own (its
    `participation` × members in flight, its draws and dropouts keyed as `Participation`'s
    for it, B = `buffer` or that many), and every head above waits, like the synchronous
    schedule's, for each of its member heads to have reported once, then averages their
    reports by data size (so nothing it aggregates is ever stale in its own versions).

    One unit (a metrics row) is one event: the earliest time at which some head over
    terminals has B flights ended; every such head whose B-th flight ends then aggregates, in
    holarchy order, and then as in `SyncSchedule.step`: a head that aggregated (with at least
    one update: an aggregation nobody reached changes nothing and uses no budget) uses one
    unit of the budget K and reports its model to its superior every K units; a superior
    whose members have all reported aggregates, uses a unit and reports on likewise; top-down,
    every head that aggregated or received a model sends it to its member heads, which take
    it (`BufferedHead.receive`; the budget count restarts). Then the heads that aggregated
    start as many terminals as ended, from their (possibly received) model. With equal speeds
    and B = all drawn, every head fills at the same time, an event is a synchronous round and
    the run equals the synchronous one bit for bit. Rows as `BufferedRounds`' (summed over
    the heads that aggregated; `arrived` over all of them, by arrival time, ties in terminal
    order) plus `aggregated_heads` (those heads, holarchy order). Local DP as
    `BufferedRounds`' (each terminal's noise keyed by its own head's version + 1)."""

    def __init__(self, holarchy: Holarchy, schedule: SyncSchedule, clock: SimClock,
                 settings: AsyncSettings, *, participation: float, seed: int, timed: bool,
                 dropout_rate: float = 0.0):
        self.h, self.schedule, self.clock, self.timed = holarchy, schedule, clock, timed
        self.terminals = holarchy.terminals()
        self.index = {t: i for i, t in enumerate(self.terminals)}
        self.heads: dict[str, BufferedHead] = {}
        for name in buffering_heads(holarchy):
            members = list(holarchy.holons[name].members)
            concurrency = drawn_per_round(len(members), participation)
            self.heads[name] = BufferedHead(
                name, members, schedule.weights, schedule.models[name],
                buffer=min(settings.buffer or concurrency, concurrency),
                concurrency=concurrency, exponent=settings.staleness_exponent, seed=seed,
                dropout_rate=dropout_rate)
        for name, head in self.heads.items():
            schedule.traffic.send(name, "vertical", len(head.fill(clock.durations)))
        self.privacy = buffered_privacy(schedule)
        self.now = 0.0

    def step(self, engine: Engine, epochs: int | None = None, steps: int | None = None
             ) -> Aggregation:
        """One event (class docstring): train the flights that end, aggregate bottom-up,
        send down, start terminals, and load what every terminal holds."""
        due = {name: head.due() for name, head in self.heads.items()}
        when = min(due.values())
        firing = [name for name in self.heads if due[name] == when]
        ended = {name: self.heads[name].arrivals() for name in firing}
        everyone = [t for name in firing for t in ended[name]]
        dropped = {t for name in firing for t in ended[name] if self.heads[name].drops(t)}
        arrived = [t for t in everyone if t not in dropped]
        loss, flat = engine.train(epochs, everyone, steps)
        check_finite(loss.tolist(), self.terminals, everyone, flat)
        trained = torch.from_numpy(flat)
        staleness, order = [], []
        sched, fresh = self.schedule, set()
        for name in firing:
            head = self.heads[name]
            got = [t for t in ended[name] if t not in dropped]
            staleness += [head.staleness(t) for t in got]
            order += [(head.flights[t].arrival, self.index[t], t) for t in got]
            sched.models[name] = head.aggregate(privatised(
                self.privacy, head, {t: trained[self.index[t]] for t in got}),
                                                [t for t in ended[name] if t in dropped])
            for t in got:
                sched.traffic.send(t, "vertical")
            if got:
                fresh.add(name)
        if self.privacy is not None:
            self.privacy.count(arrived)
        self.now = max(self.now, when)
        for s in self.h.nonterminals():  # bottom-up, from the heads that just aggregated
            holon = self.h.holons[s]
            if s not in self.heads:
                got_s = sched.reports[s]
                if any(m not in got_s for m in holon.members):
                    continue
                sched.models[s] = sched._average(list(holon.members), got_s)
                sched.reports[s] = {}
                fresh.add(s)
            if s not in fresh:
                continue
            sched.used[s] += 1
            parent = self.h.parent[s]
            if parent is not None and sched.used[s] % sched.budget == 0:
                sched.reports[parent][s] = sched.models[s]
                sched.traffic.send(s, "vertical")
        received: set[str] = set()
        for s in self.h.preorder():  # top-down: a model from above overrides and flows on
            if s in self.heads or self.h.holons[s].terminal \
                    or (s not in fresh and s not in received):
                continue
            for m in self.h.holons[s].members:
                sched.models[m] = sched.models[s].clone()  # its own: saved next to it
                sched.used[m] = 0
                received.add(m)
                if m in self.heads:
                    self.heads[m].receive(sched.models[s])
            sched.traffic.send(s, "vertical", len(self.h.holons[s].members))
        for name in firing:
            started = self.heads[name].fill(self.clock.durations)
            sched.traffic.send(name, "vertical", len(started))
        holding = {}
        for head in self.heads.values():
            holding.update(zip(head.members, head.holding(head.members), strict=True))
        models = torch.stack([holding[t] for t in self.terminals])
        engine.load_flat(models.numpy())
        row: dict[str, Any] = {"trained": len(everyone), "reported": len(arrived),
                               "staleness": float(np.mean(staleness)) if staleness else None,
                               "arrived": [t for *_, t in sorted(order)],
                               "aggregated_heads": firing}
        if self.timed:
            row["sim_time"] = self.now
        reported = set(arrived)
        return Aggregation(loss, trained, models, [t for t in self.terminals if t in reported],
                           row, [t for t in self.terminals if t in dropped])

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors: dict[str, Tensor] = {}
        meta: dict[str, Any] = {"now": self.now, "heads": {}}
        for name, head in self.heads.items():
            t, m = head.state()
            tensors.update({f"{name}/{k}": v for k, v in t.items()})
            meta["heads"][name] = m
        return tensors, {**meta, **_privacy_state(self.privacy)}

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        self.now = float(meta["now"])
        _load_privacy_state(self.privacy, meta)
        for name, head in self.heads.items():
            prefix = f"{name}/"
            head.load_state({k[len(prefix):]: v for k, v in tensors.items()
                             if k.startswith(prefix)}, meta["heads"][name])


def asynchronous_rounds(settings: AsyncSettings, holarchy: Holarchy, schedule: SyncSchedule,
                        samples: Mapping[str, int], epochs: int, *, participation: float,
                        seed: int) -> ClockedRounds | BufferedRounds | LayeredRounds | None:
    """The driver `settings` ask for: None (synchronous rounds, no clock), `ClockedRounds`
    (a `clock:` block, sync rounds) or `BufferedRounds` (`aggregation: buffered`; without a
    `clock:` block arrivals follow speed 1 and no delay, and rows carry no `sim_time`).
    `samples` × `epochs` is each terminal's local work per turn (module docstring). The
    mode's `dropout_rate` (if its settings have one) makes buffered terminals drop out as
    `Participation` draws it."""
    if settings.clock is None and settings.aggregation == "sync":
        return None
    clock = SimClock(settings.clock or ClockSettings(), samples, epochs, seed)
    if settings.aggregation == "sync":
        return ClockedRounds(clock)
    root = holarchy.holons[holarchy.root]
    one_level = not root.terminal and all(holarchy.holons[m].terminal for m in root.members)
    kind = BufferedRounds if one_level else LayeredRounds
    return kind(holarchy, schedule, clock, settings, participation=participation, seed=seed,
                timed=settings.clock is not None,
                dropout_rate=float(getattr(settings, "dropout_rate", 0.0)))
