"""Buffered asynchronous aggregation (FedBuff, Nguyen et al. 2022) at a single head.

The head keeps `concurrency` terminals training at once, each from the model of the head's
version when it started, and finishing at a time the simulated clock gives
(`runtime.clock.SimClock`). As soon as `buffer` (B) updates have arrived, the head aggregates
them (its version goes up by one) and B terminals not in flight start from the new model, drawn
with a generator seeded by (seed, head, version): the draw `Participation` makes for the same
round, so with B = concurrency every aggregation is a synchronous round.

Dropouts (`dropout_rate`): a terminal that started from version v drops out of round v + 1
with the draw `Participation` makes for it in that round (seed, terminal, "dropout:{v + 1}").
It trains, but its update never arrives: when it would have arrived the head stops waiting
for it and counts its flight as ended, one of the B it waits for (a time-out, as a
synchronous head does not wait for a member that dropped out), but aggregates only the
updates that arrived; its slot is refilled by the aggregation's draw like every other ended
flight. An aggregation to which no update arrived leaves the head's model as it is (its
version still goes up: the next draw is the next round's). With equal speeds and
B = concurrency this is the synchronous round with the same dropouts, bit for bit, except
when nobody reports: a synchronous round then leaves every terminal its trained model, while
here the terminals hold the head's model.

An update started from version v and aggregated into version u + 1 is s = u - v versions stale.
A fresh one (s = 0) is the member's trained model as it is; a stale one is applied as the
head's current model plus the member's delta (its trained model minus the model it started
from). The updates are then averaged with weights data size × (1 + s)^(-a) (FedAsync's
polynomial staleness, Xie et al. 2019), normalised. With equal speeds and B = concurrency
nothing is ever stale and the run equals the synchronous one bit for bit.

Scope: `buffering_head` is the root of a one-level holarchy (FedAvg: `builders.fedavg`, or a
holarchy YAML with one level), which `holarchy.asynchronous.BufferedRounds` drives through a
mode's run, the same for every mode. In a deeper holarchy without neighbour edges
(`buffering_heads`) every head over terminals is a `BufferedHead` of its own and its
superiors wait for their member heads' reports (`holarchy.asynchronous.LayeredRounds`); a
model a head receives from above (`receive`) replaces its model and makes the updates in
flight one step staler, without changing the version its draws are keyed by.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from osmotic.holarchy.holarchy import Holarchy
from osmotic.holarchy.schedule import drops_out
from osmotic.runtime.population import agent_seed
from osmotic.runtime.strategies import make_strategy


def buffering_head(holarchy: Holarchy) -> str:
    """The head that buffers: the root of a one-level holarchy (an aggregating root whose
    members are all terminals, no neighbour edges); else one line saying what it needs."""
    root = holarchy.holons[holarchy.root]
    one_level = root.aggregates and not root.terminal and not holarchy.edges \
        and all(holarchy.holons[m].terminal for m in root.members)
    if not one_level:
        raise ValueError(f"aggregation: buffered needs a one-level holarchy (one aggregating "
                         f"root whose members are all terminals, no neighbour edges); got "
                         f"{holarchy!r} (every head buffering on its own in deeper "
                         f"holarchies is not supported yet)")
    return holarchy.root


def buffering_heads(holarchy: Holarchy) -> list[str]:
    """The heads that buffer in a holarchy of any depth: those whose members are terminals
    (holarchy order). Every non-terminal must aggregate, have members that are all terminals
    or all non-terminals, and there must be no neighbour edges (a buffered head has no round
    in which its members would average with their neighbours); else one line."""
    if holarchy.edges:
        raise ValueError(f"aggregation: buffered needs a holarchy without neighbour edges; got "
                         f"{holarchy!r} (remove its edges)")
    heads = []
    for h in holarchy.nonterminals():
        holon = holarchy.holons[h]
        kinds = {holarchy.holons[m].terminal for m in holon.members}
        if not holon.aggregates or len(kinds) != 1:
            raise ValueError(f"aggregation: buffered needs every non-terminal to aggregate "
                             f"members that are all terminals or all non-terminals; {h} of "
                             f"{holarchy!r} does not")
        if kinds == {True}:
            heads.append(h)
    if not heads:
        raise ValueError(f"aggregation: buffered needs a head over terminals; got {holarchy!r}")
    return heads


def staleness_weight(staleness: int, exponent: float) -> float:
    """FedAsync's polynomial staleness factor (1 + s)^(-a): exactly 1.0 for a fresh update."""
    return (1.0 + staleness) ** -exponent


@dataclass
class Flight:
    """A terminal in flight: the head version it started from, when it started and when its
    update reaches the head (simulated seconds)."""

    version: int
    start: float
    arrival: float
    changes: int
    """The head's `changes` when the terminal started."""


class BufferedHead:
    """The buffering head's state between aggregations: its model and version, the simulated
    time, the terminals in flight and the model each of them started from."""

    def __init__(self, head: str, members: Sequence[str], weights: Mapping[str, float],
                 model: Tensor, *, buffer: int, concurrency: int, exponent: float = 0.5,
                 seed: int = 0, dropout_rate: float = 0.0):
        if not 1 <= buffer <= concurrency <= len(members):
            raise ValueError(f"need 1 <= buffer <= concurrency <= members, got {buffer}, "
                             f"{concurrency} and {len(members)}")
        if exponent < 0:
            raise ValueError(f"staleness exponent must be >= 0, got {exponent}")
        if not 0 <= dropout_rate < 1:
            raise ValueError(f"need 0 <= dropout_rate < 1, got {dropout_rate}")
        self.dropout_rate = dropout_rate
        self.head, self.members = head, list(members)
        self.rank = {m: i for i, m in enumerate(self.members)}
        self.weights = {m: float(weights[m]) for m in self.members}
        self.buffer, self.concurrency, self.exponent, self.seed = buffer, concurrency, \
            exponent, seed
        self.model = model
        self.version = 0
        self.changes = 0  # the model's changes: own aggregations and models from above
        self.now = 0.0
        self.flights: dict[str, Flight] = {}
        self.starts: dict[str, Tensor] = {}
        self._mean = make_strategy("mean")

    def draw(self, k: int) -> list[str]:
        """`k` members not in flight, drawn by (seed, head, next version), in member order."""
        idle = [m for m in self.members if m not in self.flights]
        rng = np.random.default_rng(
            agent_seed(self.seed, self.head, f"participation:{self.version + 1}"))
        picked = {idle[i] for i in rng.choice(len(idle), k, replace=False)}
        return [m for m in self.members if m in picked]

    def start(self, terminals: Sequence[str], durations: Mapping[str, float]) -> None:
        """`terminals` start now from the head's current model."""
        for t in terminals:
            self.flights[t] = Flight(self.version, self.now, self.now + durations[t],
                                     self.changes)
            self.starts[t] = self.model

    def fill(self, durations: Mapping[str, float]) -> list[str]:
        """Start as many drawn members as it takes to have `concurrency` in flight."""
        started = self.draw(self.concurrency - len(self.flights))
        self.start(started, durations)
        return started

    def arrivals(self) -> list[str]:
        """The next B flights to end (ties: member order), in member order: updates that
        arrive, and terminals that drop out (`drops`) when theirs would have arrived."""
        chosen = set(self.in_arrival_order(self.flights)[: self.buffer])
        return [m for m in self.members if m in chosen]

    def in_arrival_order(self, terminals: Iterable[str]) -> list[str]:
        """`terminals` (in flight) in the order their updates reach the head: by simulated
        arrival time, ties in member order. Decided by the clock alone, never by which
        process finished first, so every engine consumes the same updates in the same order."""
        return sorted(terminals, key=lambda t: (self.flights[t].arrival, self.rank[t]))

    def drops(self, terminal: str) -> bool:
        """Whether `terminal` (in flight) drops out of the round it started for (version + 1):
        `Participation`'s draw for that terminal and round."""
        return drops_out(self.seed, terminal, self.flights[terminal].version + 1,
                         self.dropout_rate)

    def due(self) -> float:
        """When the next B flights will have ended: the head's next aggregation time."""
        return max(self.flights[t].arrival for t in self.arrivals())

    def staleness(self, terminal: str) -> int:
        """Versions the head has moved on since `terminal` started (models received from
        above included: `receive`)."""
        return self.changes - self.flights[terminal].changes

    def receive(self, model: Tensor) -> None:
        """Take `model` from a superior: the head's model from now on; the updates in flight
        are one step staler (applied as deltas to it), the version (draw keys) unchanged."""
        self.model = model
        self.changes += 1

    def aggregate(self, trained: Mapping[str, Tensor], ended: Iterable[str] = ()) -> Tensor:
        """Consume the updates `trained` (in flight, {terminal: trained model}) and end the
        flights `ended` too (terminals that dropped out: their updates are not aggregated):
        the simulated time moves to the last of these flights' ends and the head's model to
        the staleness-weighted average of the updates (module docstring; as it was if there
        are none); returns the new model."""
        ids = [m for m in self.members if m in trained]
        gone = set(ids).union(ended)
        if gone:
            self.now = max(self.now, *(self.flights[t].arrival for t in gone))
        if ids:
            updates, weights = [], []
            for t in ids:
                s = self.staleness(t)
                updates.append(trained[t] if s == 0
                               else self.model + (trained[t] - self.starts[t]))
                weights.append(self.weights[t] * staleness_weight(s, self.exponent))
            self.model = self.average(torch.stack(updates), torch.tensor(weights))
        for t in gone:
            del self.flights[t], self.starts[t]
        self.version += 1
        self.changes += 1
        return self.model

    def average(self, updates: Tensor, weights: Tensor) -> Tensor:
        """The head's averaging of the applied updates [n, P] with (unnormalised) weights [n]:
        where privacy or secure aggregation would plug in. The package's "mean" strategy, as
        the synchronous schedule uses (so both give the same bits)."""
        return self._mean.aggregate(updates[:, None, :], weights)[0]

    def holding(self, terminals: Sequence[str]) -> Tensor:
        """[terminals, P]: what each terminal holds: the model it started from while in
        flight, else the head's current model (what it would receive on starting)."""
        return torch.stack([self.starts.get(t, self.model) for t in terminals])

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """For checkpoints: the head's model and the start models as tensors (copies), the
        version, time and flights as JSON."""
        tensors = {"model": self.model.clone()}
        tensors.update({f"start/{t}": x.clone() for t, x in self.starts.items()})
        return tensors, {"version": self.version, "now": self.now, "changes": self.changes,
                         "flights": {t: list(astuple(f)) for t, f in self.flights.items()}}

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        """Inverse of `state`."""
        self.model = tensors["model"].clone()
        self.version, self.now = int(meta["version"]), float(meta["now"])
        self.changes = int(meta.get("changes", self.version))
        self.flights = {t: Flight(int(f[0]), float(f[1]), float(f[2]),
                                  int(f[3 if len(f) > 3 else 0]))
                        for t, f in meta["flights"].items()}
        self.starts = {t: tensors[f"start/{t}"].clone() for t in self.flights}
