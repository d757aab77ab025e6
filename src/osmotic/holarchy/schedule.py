"""The synchronous HoAL schedule: who averages with whom after each round of local training.

One round, after every terminal has trained (paper §3, Eqs. 10 and 12; issue §2):
1. terminals average with their neighbours (own model included, data-size weights);
2. bottom-up, every aggregating non-terminal whose members have all reported since its last
   aggregation averages their models, then averages with those of its neighbours that also
   aggregated this round, and uses one unit of its budget. Terminals report every round; a
   non-terminal reports to its superior each time it has used K units;
3. top-down, every holon that aggregated, or received a model from above, sends it to its
   members, which take it (a non-terminal that receives from above resets its budget).
So a holon h levels above the terminals synchronises with its superior every K^h rounds.

With partial participation (`Participation`) only the terminals drawn for the round train, and
only those of them that do not drop out report: they alone average with their neighbours, and
a head aggregates the members that reported (a terminal that sat the round out is not waited
for; a head that heard from none keeps its model), weighted by data size as always. Heads still
send their model to every member, so a terminal drawn later starts from the latest model.

Every message is counted for its sender, split horizontal (neighbours) / vertical (tree).
Models are flat parameter vectors; averaging uses the package's "mean" strategy.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from osmotic.holarchy.holarchy import Holarchy
from osmotic.runtime.population import Population, agent_seed
from osmotic.runtime.strategies import make_strategy

DIRECTIONS = ("horizontal", "vertical")


class Traffic:
    """Messages and bytes each holon sent, per direction."""

    def __init__(self, holon_ids: Sequence[str], message_bytes: int):
        self.message_bytes = message_bytes
        self.messages = {h: dict.fromkeys(DIRECTIONS, 0) for h in holon_ids}
        self.extra = dict.fromkeys(DIRECTIONS, 0)  # bytes beyond the models (secure aggregation)
        self.secure_seconds = 0.0  # masking and unmasking (secure aggregation)

    def send(self, sender: str, direction: str, n: int = 1) -> None:
        self.messages[sender][direction] += n

    def totals(self) -> dict[str, dict[str, int]]:
        """{"messages": {"horizontal": m, "vertical": m}, "bytes": {...}} summed over holons."""
        msgs = {d: sum(c[d] for c in self.messages.values()) for d in DIRECTIONS}
        totals: dict[str, Any] = {"messages": msgs, "bytes": {
            d: m * self.message_bytes + self.extra[d] for d, m in msgs.items()}}
        if self.secure_seconds:  # secure aggregation's time overhead, wall seconds
            totals["secure_aggregation_seconds"] = self.secure_seconds
        return totals

    def per_holon(self) -> dict[str, dict[str, int]]:
        return {h: dict(c) for h, c in self.messages.items()}


def drawn_per_round(members: int, fraction: float) -> int:
    """How many of a head's `members` terminals train in a round: max(1, round(fraction ·
    members)), Flower's `fraction_fit`."""
    return max(1, int(fraction * members + 0.5))


def drops_out(seed: int, terminal: str, round_: int, rate: float) -> bool:
    """Whether `terminal`, drawn for round `round_`, fails to report: a draw that depends only
    on (seed, terminal, round), whoever asks (a synchronous round, a buffered head)."""
    if not rate:
        return False
    draw = np.random.default_rng(agent_seed(seed, terminal, f"dropout:{round_}"))
    return bool(draw.random() < rate)


class Participation:
    """Which terminals train, and which of them report, in each round.

    Per super-holon (the terminals' direct superior, the root in FedAvg), a seeded draw of
    max(1, round(fraction · members)) of its terminals trains (Flower's `fraction_fit`); each of
    them then fails to report with probability `dropout_rate`. Draws depend only on (seed,
    round, holon), so a resumed run or any number of actors sees the same ones.
    """

    def __init__(self, holarchy: Holarchy, fraction: float = 1.0, dropout_rate: float = 0.0,
                 seed: int = 0):
        if not 0 < fraction <= 1 or not 0 <= dropout_rate < 1:
            raise ValueError(f"need 0 < participation <= 1 and 0 <= dropout_rate < 1, got "
                             f"{fraction} and {dropout_rate}")
        self.fraction, self.dropout_rate, self.seed = fraction, dropout_rate, seed
        self.terminals = holarchy.terminals()
        self.groups: dict[str, list[str]] = {}
        for t in self.terminals:
            self.groups.setdefault(str(holarchy.parent[t]), []).append(t)

    @property
    def everyone(self) -> bool:
        return self.fraction == 1 and self.dropout_rate == 0

    @property
    def per_round(self) -> int:
        """How many terminals train in every round."""
        return sum(self.drawn(p) for p in self.groups)

    def drawn(self, parent: str) -> int:
        """How many of `parent`'s terminals train in every round."""
        return drawn_per_round(len(self.groups[parent]), self.fraction)

    def draw(self, round_: int) -> tuple[list[str], list[str]]:
        """(trained, reported) terminals of round `round_`, in holarchy order."""
        if self.everyone:
            return list(self.terminals), list(self.terminals)
        chosen: set[str] = set()
        for parent, members in self.groups.items():
            k = self.drawn(parent)
            rng = np.random.default_rng(agent_seed(self.seed, parent, f"participation:{round_}"))
            chosen.update(members[i] for i in rng.choice(len(members), k, replace=False))
        trained = [t for t in self.terminals if t in chosen]
        reported = [t for t in trained
                    if not drops_out(self.seed, t, round_, self.dropout_rate)]
        return trained, reported


class Private(Protocol):
    """What the schedule asks of a privacy block (`holarchy.privacy.HolarchyPrivacy`)."""

    drawn: dict[str, int]

    def sent(self, round_: int, terminal: str, trained: Tensor, received: Tensor
             ) -> tuple[Tensor, Tensor]: ...

    def averages_centrally(self, head: str) -> bool: ...

    def secures(self, head: str) -> bool: ...

    def secure_sum(self, round_: int, head: str, members: Sequence[str],
                   vectors: dict[str, Tensor]) -> tuple[Tensor | None, int, float]: ...

    def head_noise(self, round_: int, head: str, shape: torch.Size,
                   dtype: torch.dtype) -> Tensor | None: ...


class SyncSchedule:
    """Holds the non-terminals' models, budgets and pending reports between rounds."""

    def __init__(self, holarchy: Holarchy, weights: dict[str, float], budget: int, init: Tensor,
                 privacy: Private | None = None):
        if budget < 1:
            raise ValueError(f"budget K must be >= 1, got {budget}")
        self.h = holarchy
        self.weights = weights
        self.budget = budget
        self.terminals = holarchy.terminals()
        self.top_down = [h for h in holarchy.preorder() if not holarchy.holons[h].terminal]
        self.models: dict[str, Tensor] = {h: init.clone() for h in holarchy.nonterminals()}
        self.used = dict.fromkeys(self.models, 0)
        self.reports: dict[str, dict[str, Tensor]] = {h: {} for h in self.models}
        self.init = init
        self.traffic = Traffic(holarchy.preorder(), init.numel() * init.element_size())
        self._mean = make_strategy("mean")
        self.privacy = privacy
        self.round = 0
        self._trained: set[str] = set(self.terminals)
        self.held: dict[str, Tensor] = {}  # what each terminal started the round from (privacy)

    @classmethod
    def starting(cls, holarchy: Holarchy, build: Callable[[], nn.Module],
                 parts: Sequence[np.ndarray], seed: int, budget: int,
                 privacy: Private | None = None) -> SyncSchedule:
        """The schedule of a fresh run: every holon starts from the weights the root's seed
        draws (`init`), and a terminal weighs by its data size (`parts`, in terminal order)."""
        init = Population(build, [holarchy.root], seed).flat()[0]
        sizes = {t: len(p) for t, p in zip(holarchy.terminals(), parts, strict=True)}
        return cls(holarchy, holarchy.weights(sizes), budget, init, privacy)

    def _average(self, ids: Sequence[str], models: dict[str, Tensor]) -> Tensor:
        """Paper Eq. 12: models of `ids` weighted by their data sizes."""
        x = torch.stack([models[i] for i in ids])[:, None, :]
        return self._mean.aggregate(x, torch.tensor([self.weights[i] for i in ids]))[0]

    def _horizontal(self, fresh: list[str], models: dict[str, Tensor]) -> None:
        """Simultaneous neighbour averaging among the `fresh` members of one super-holon."""
        fresh_set = set(fresh)
        new = {}
        for m in fresh:
            peers = [n for n in self.h.neighbours(m) if n in fresh_set]
            self.traffic.send(m, "horizontal", len(peers))
            if peers:
                new[m] = self._average([m, *peers], models)
        models.update(new)

    def step(self, terminal_models: Tensor, reported: Collection[str] | None = None,
             trained: Collection[str] | None = None) -> Tensor:
        """One round of communication; `terminal_models` is [terminals, P] in holarchy order,
        `reported` the terminals whose models arrive this round, `trained` those that trained
        (default: all; secure aggregation's masks are agreed among them). Returns every
        terminal's model after the round, [terminals, P]."""
        trained = self.terminals if trained is None else trained
        rows = {t: i for i, t in enumerate(self.terminals)}
        changed = self.exchange({t: terminal_models[rows[t]] for t in trained}, reported)
        out = terminal_models.clone()
        for t, model in changed.items():
            out[rows[t]] = model
        if self.privacy is not None:
            self.held = dict(zip(self.terminals, out.clone(), strict=True))
        return out

    def exchange(self, sent: dict[str, Tensor], reported: Collection[str] | None = None
                 ) -> dict[str, Tensor]:
        """One round of communication given the models of the terminals that trained (`sent`,
        terminal -> flat model); `reported` (default: all of them) are those whose models
        arrive. Returns the models of the terminals the round touched (those that trained and
        those that received one), the others keep theirs: so a round costs what its
        participants and heads hold, not the population. Models are shared, never written to
        in place."""
        self.round += 1
        self._trained = set(sent)
        models: dict[str, Tensor] = dict(sent)
        reporting = set(sent if reported is None else reported)
        updates = self._privatised(models, reporting)
        models.update(self.models)
        fresh = set(reporting)  # models new this round
        for s in self.h.nonterminals():  # bottom-up: members before their super-holon
            head = self.h.holons[s]
            self._horizontal([m for m in head.members if m in fresh], models)
            if not head.aggregates:
                continue
            for m in head.members:
                if m in reporting:
                    self.reports[s][m] = models[m]
                    self.traffic.send(m, "vertical")
            got = self.reports[s]
            # wait for a slower member (one not reporting although it did not sit the round
            # out: a non-terminal), unless nobody reported
            if not got or any(m not in got and m in self.models for m in head.members):
                continue
            models[s] = self._aggregate(s, [m for m in head.members if m in got], got, updates)
            self.reports[s] = {}
            fresh.add(s)
            self.used[s] += 1
            parent = self.h.parent[s]
            if parent is not None and self.h.holons[parent].aggregates \
                    and self.used[s] % self.budget == 0:
                reporting.add(s)
        touched = set(sent)
        for s in self.top_down:  # a model from above overrides and flows on
            head = self.h.holons[s]
            if s not in fresh and s not in touched:
                continue
            for m in head.members:
                models[m] = models[s]
                touched.add(m)
                if m in self.used:
                    self.used[m] = 0
            self.traffic.send(s, "vertical", len(head.members))
        self.models = {h: models[h].clone() for h in self.models}
        changed = {t: models[t] for t in self.terminals if t in touched}
        if self.privacy is not None:
            self.held.update(changed)
        return changed

    def _privatised(self, models: dict[str, Tensor], reporting: set[str]) -> dict[str, Tensor]:
        """Replace each reporting terminal's model by what it sends under the privacy block
        (`holarchy.privacy`); returns their updates (empty without privacy)."""
        if self.privacy is None:
            return {}
        updates = {}
        for t in self.terminals:
            if t in reporting:
                received = self.held.get(t, self.init)
                models[t], updates[t] = self.privacy.sent(self.round, t, models[t], received)
        return updates

    def _aggregate(self, head: str, ids: list[str], got: dict[str, Tensor],
                   updates: dict[str, Tensor]) -> Tensor:
        """The new model of `head` from its members `ids` that reported: Eq. 12; under central
        noise the head's model plus the noisy sum of the clipped updates over the number of
        members it draws; under secure aggregation from the masked sum alone
        (`holarchy.privacy`). A masked round with fewer than two senders leaves the head's
        model as it was: one sender's sum would be its update."""
        p = self.privacy
        central = p is not None and p.averages_centrally(head)
        secure = p is not None and p.secures(head)
        if p is None or not (central or secure):
            return self._average(ids, got)
        if central:
            total = self._sum(head, {m: updates[m] for m in ids}, secure)
            if total is None:
                return self.models[head]
            noise = p.head_noise(self.round, head, total.shape, total.dtype)
            if noise is not None:
                total = total + noise
            return self.models[head] + total / p.drawn[head]
        members = self.h.holons[head].members
        scale = sum(self.weights[m] for m in members)
        weight = {m: self.weights[m] / scale for m in ids}
        total = self._sum(head, {m: got[m] * weight[m] for m in ids}, secure)
        if total is None:
            return self.models[head]
        return total / sum(weight.values())

    def _sum(self, head: str, vectors: dict[str, Tensor], secure: bool) -> Tensor | None:
        """The sum of `vectors`, plainly or through masks agreed among the head's members that
        trained this round (their overhead counted as vertical bytes)."""
        if not secure:
            return torch.stack(list(vectors.values())).sum(0)
        assert self.privacy is not None
        members = [m for m in self.h.holons[head].members if m in self._trained]
        total, extra, seconds = self.privacy.secure_sum(self.round, head, members, vectors)
        self.traffic.extra["vertical"] += extra
        self.traffic.secure_seconds += seconds
        return total

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """For checkpoints: holon models and pending reports as tensors (copies, so none share
        memory), budgets used and message counts as JSON."""
        tensors = {f"model/{h}": m.clone() for h, m in self.models.items()}
        tensors.update({f"report/{s}/{m}": x.clone()
                        for s, got in self.reports.items() for m, x in got.items()})
        tensors.update({f"held/{t}": x.clone() for t, x in self.held.items()})
        return tensors, {"used": dict(self.used), "messages": self.traffic.per_holon(),
                         "reports": {s: list(got) for s, got in self.reports.items()},
                         "round": self.round, "extra_bytes": dict(self.traffic.extra),
                         "secure_seconds": self.traffic.secure_seconds}

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        """Inverse of `state`."""
        self.models = {h: tensors[f"model/{h}"].clone() for h in self.models}
        self.reports = {s: {m: tensors[f"report/{s}/{m}"].clone() for m in members}
                        for s, members in meta["reports"].items()}
        self.used = dict(meta["used"])
        self.round = meta.get("round", 0)
        self.traffic.extra = dict(meta.get("extra_bytes", self.traffic.extra))
        self.traffic.secure_seconds = float(meta.get("secure_seconds", 0.0))
        self.held = {t: tensors[f"held/{t}"].clone() for t in self.terminals
                     if f"held/{t}" in tensors}
        self.traffic.messages = {h: dict(c) for h, c in meta["messages"].items()}
