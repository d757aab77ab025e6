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

Every message is counted for its sender, split horizontal (neighbours) / vertical (tree).
Models are flat parameter vectors; averaging uses the package's "mean" strategy.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from osmotic.holonic.holarchy import Holarchy
from osmotic.runtime.strategies import make_strategy

DIRECTIONS = ("horizontal", "vertical")


class Traffic:
    """Messages and bytes each holon sent, per direction."""

    def __init__(self, holon_ids: Sequence[str], message_bytes: int):
        self.message_bytes = message_bytes
        self.messages = {h: dict.fromkeys(DIRECTIONS, 0) for h in holon_ids}

    def send(self, sender: str, direction: str, n: int = 1) -> None:
        self.messages[sender][direction] += n

    def totals(self) -> dict[str, dict[str, int]]:
        """{"messages": {"horizontal": m, "vertical": m}, "bytes": {...}} summed over holons."""
        msgs = {d: sum(c[d] for c in self.messages.values()) for d in DIRECTIONS}
        return {"messages": msgs, "bytes": {d: m * self.message_bytes for d, m in msgs.items()}}

    def per_holon(self) -> dict[str, dict[str, int]]:
        return {h: dict(c) for h, c in self.messages.items()}


class SyncSchedule:
    """Holds the non-terminals' models, budgets and pending reports between rounds."""

    def __init__(self, holarchy: Holarchy, weights: dict[str, float], budget: int, init: Tensor):
        if budget < 1:
            raise ValueError(f"budget K must be >= 1, got {budget}")
        self.h = holarchy
        self.weights = weights
        self.budget = budget
        self.terminals = holarchy.terminals()
        self.models: dict[str, Tensor] = {h: init.clone() for h in holarchy.nonterminals()}
        self.used = dict.fromkeys(self.models, 0)
        self.reports: dict[str, dict[str, Tensor]] = {h: {} for h in self.models}
        self.traffic = Traffic(holarchy.preorder(), init.numel() * init.element_size())
        self._mean = make_strategy("mean")

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

    def step(self, terminal_models: Tensor) -> Tensor:
        """One round of communication; `terminal_models` is [terminals, P] in holarchy order."""
        models: dict[str, Tensor] = dict(zip(self.terminals, terminal_models, strict=True))
        models.update(self.models)
        fresh = set(self.terminals)  # models new this round
        reporting = set(self.terminals)  # terminals report every round
        for s in self.h.nonterminals():  # bottom-up: members before their super-holon
            head = self.h.holons[s]
            self._horizontal([m for m in head.members if m in fresh], models)
            if not head.aggregates:
                continue
            for m in head.members:
                if m in reporting:
                    self.reports[s][m] = models[m]
                    self.traffic.send(m, "vertical")
            if len(self.reports[s]) < len(head.members):
                continue  # waiting for a slower member
            models[s] = self._average(head.members, self.reports[s])
            self.reports[s] = {}
            fresh.add(s)
            self.used[s] += 1
            parent = self.h.parent[s]
            if parent is not None and self.h.holons[parent].aggregates \
                    and self.used[s] % self.budget == 0:
                reporting.add(s)
        received: set[str] = set()
        for s in self.h.preorder():  # top-down: a model from above overrides and flows on
            head = self.h.holons[s]
            if head.terminal or (s not in fresh and s not in received):
                continue
            for m in head.members:
                models[m] = models[s]
                received.add(m)
                if m in self.used:
                    self.used[m] = 0
            self.traffic.send(s, "vertical", len(head.members))
        self.models = {h: models[h].clone() for h in self.models}
        return torch.stack([models[t] for t in self.terminals])

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """For checkpoints: holon models and pending reports as tensors (copies, so none share
        memory), budgets used and message counts as JSON."""
        tensors = {f"model/{h}": m.clone() for h, m in self.models.items()}
        tensors.update({f"report/{s}/{m}": x.clone()
                        for s, got in self.reports.items() for m, x in got.items()})
        return tensors, {"used": dict(self.used), "messages": self.traffic.per_holon(),
                         "reports": {s: list(got) for s, got in self.reports.items()}}

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        """Inverse of `state`."""
        self.models = {h: tensors[f"model/{h}"].clone() for h in self.models}
        self.reports = {s: {m: tensors[f"report/{s}/{m}"].clone() for m in members}
                        for s, members in meta["reports"].items()}
        self.used = dict(meta["used"])
        self.traffic.messages = {h: dict(c) for h, c in meta["messages"].items()}
