"""Differential privacy for the averaging modes (holonic learning and D-SSL, FedAvg, HFL and P2P
as holarchies): what a terminal's update goes through before a head or a neighbour sees it,
and the ε a run has spent.

User level (`level: user`, DP-FedAvg, McMahan et al. 2018): a terminal's update (the model it
sends minus the model it received) is clipped to L2 norm `clip`.
- `where: central`: the head that averages its terminals adds Gaussian noise of standard
  deviation noise_multiplier × clip to the SUM of the clipped updates and divides by a fixed
  denominator, the number of members it draws per round, with every member weighing the same.
  Data-size weights would let one terminal's weight, and a denominator that changes with who
  reported, scale its contribution past the clip: the sensitivity the noise is sized for would
  no longer hold. A drawn member that drops out contributes nothing; the denominator stays. A
  head whose members are not terminals averages already private models as before
  (post-processing). Neighbour averaging between terminals sees each terminal's model, so
  central noise is refused there.
- `where: local`: each terminal adds the noise to its clipped update before it sends it (to
  its head and its neighbours); averaging then keeps its data-size weights (post-processing).
  The head knows who sent, so no subsampling amplification is claimed: a terminal's ε counts
  every round it reported, at sampling rate 1; ε is that of the terminal that reported most.
Record level (`level: record`): DP-SGD inside each terminal (per-sample clipping and noise,
`holarchy.trainer`); ε is per training sample, at sampling rate batch / samples for every
local step of every round its terminal trains in. It is reported for the smallest terminal as
if drawn as often as the busiest one: an upper bound for all, since over E local epochs a
terminal with n samples spends about 2·b·E·α / (σ²·n) in Rényi terms (rate b / n, E·n / b
steps): the less data, the more it spends.

Without noise no guarantee is claimed (ε None) and averaging keeps data-size weights; clipping
alone still applies. An infinite clip and no noise change nothing, bit for bit.

Buffered aggregation (`buffered=True`, `holarchy.asynchronous`): a terminal whose update
arrives sends it through `sent` relative to the model it started from, its noise keyed by the
version it started from + 1 (the round a synchronous run keys it by). ε counts the updates
each terminal actually sent (`count`, one call per aggregation unit, in the driver's
checkpoints: `counting_state`), not `Participation`'s draws, which buffered does not follow;
local DP at sampling rate 1, record level as above. `target_epsilon` is calibrated for
`rounds` updates, the most any terminal can send (one per unit): conservative. Refused with it
(`buffered_refusal`): central noise and secure aggregation.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from osmotic.holarchy.holarchy import Holarchy
from osmotic.holarchy.schedule import Participation
from osmotic.runtime.population import agent_seed
from osmotic.runtime.privacy import Budget, Mechanism, PrivacySettings, Release, warn_delta
from osmotic.runtime.secagg import SecureAggregation
from osmotic.settings import InputError


class HolarchyPrivacy:
    """The privacy of one holarchy run: the mechanism, who adds noise where, and ε per round.

    `sizes[t]` is terminal t's number of training samples; local work is `epochs` epochs or
    `steps` steps of `batch_size`; `participation` gives the rounds each terminal reports.
    """

    def __init__(self, settings: PrivacySettings, holarchy: Holarchy,
                 participation: Participation, sizes: dict[str, int], rounds: int, *,
                 batch_size: int, epochs: int | None = None, steps: int | None = None,
                 seed: int = 0, buffered: bool = False):
        if buffered and (refusal := buffered_refusal(settings)) is not None:
            raise InputError(refusal)
        self.settings, self.h, self.seed, self.buffered = settings, holarchy, seed, buffered
        self.terminals = holarchy.terminals()
        self._terminal_set = frozenset(self.terminals)
        self.record = settings.level == "record"
        self.central = settings.where == "central" and not self.record and settings.noisy
        if self.central:
            self._check_central()
        self.secure = SecureAggregation(seed) if settings.secure_aggregation else None
        if self.secure is not None:
            self._check_secure(participation)
        reports = self._count_reports(participation, rounds)
        most = rounds if buffered else int(reports[-1].max())  # a terminal's reports, at most
        if self.record:
            self._work = (batch_size, epochs, steps)
            smallest = min(sizes.values())
            if steps is not None and smallest < batch_size:
                small = min(sizes, key=sizes.__getitem__)
                raise InputError(f"privacy.level: record: terminal {small} holds {smallest} "
                                 f"samples, fewer than a batch of {batch_size}, so a sample "
                                 "would count twice in one DP-SGD step; lower batch_size or "
                                 "count local work in epochs")
            worst = Release(min(1.0, batch_size / smallest), self._steps(smallest))
            self.budget = Budget.plan(settings, worst, most)
        elif self.central:
            rate = max(participation.drawn(parent) / len(members)
                       for parent, members in participation.groups.items())
            self.budget = Budget.plan(settings, Release(rate), rounds)
        else:
            self.budget = Budget.plan(settings, Release(1.0), most)
        self._reports = reports
        self._sent = dict.fromkeys(self.terminals, 0)  # buffered: updates sent per terminal
        self._busiest = [0]  # buffered: the most any terminal has sent, after each unit
        self.drawn = {parent: participation.drawn(parent) for parent in participation.groups}
        if self.record:  # the protected unit is a training sample
            warn_delta(settings.delta, sum(sizes.values()), "training samples")
        else:
            warn_delta(settings.delta, len(self.terminals), "terminals")

    def _check_central(self) -> None:
        for t in self.terminals:
            if self.h.neighbours(t):
                raise InputError(f"privacy.where: central noise is added by a head, but terminal "
                                 f"{t} averages with neighbours that would see its update: use "
                                 "where: local")
            parent = self.h.parent[t]
            if parent is None or not self.h.holons[parent].aggregates:
                raise InputError(f"privacy.where: central noise is added by a head, but terminal "
                                 f"{t} has no head that averages: use where: local")
        for s in self.h.nonterminals():
            members = self.h.holons[s].members
            kinds = {self.h.holons[m].terminal for m in members}
            if len(kinds) > 1:
                raise InputError(f"privacy.where: central: head {s} averages terminals and "
                                 "holons together; central noise needs heads of terminals only")

    def _check_secure(self, participation: Participation) -> None:
        for t in self.terminals:
            if self.h.neighbours(t):
                raise InputError(f"privacy.secure_aggregation: terminal {t} averages with "
                                 "neighbours, which see its model itself; masks hide members "
                                 "only from a head that sums them")
        for parent, members in participation.groups.items():
            if not self.h.holons[parent].aggregates or not all(
                    self.h.holons[m].terminal for m in self.h.holons[parent].members):
                raise InputError(f"privacy.secure_aggregation: head {parent} does not average "
                                 "terminals alone; masks need a head of terminals")
            if participation.drawn(parent) < 2:
                raise InputError(f"privacy.secure_aggregation: head {parent} draws "
                                 f"{participation.drawn(parent)} of its {len(members)} "
                                 "terminals a round; masks hide a member only among two or more")

    def _count_reports(self, participation: Participation, rounds: int) -> np.ndarray:
        """[rounds + 1, terminals]: how many rounds each terminal has reported in after r."""
        index = {t: i for i, t in enumerate(self.terminals)}
        counts = np.zeros((rounds + 1, len(self.terminals)), dtype=np.int64)
        for r in range(1, rounds + 1):
            counts[r] = counts[r - 1]
            _, reported = participation.draw(r)
            counts[r, [index[t] for t in reported]] += 1
        return counts

    def _steps(self, size: int) -> int:
        """DP-SGD steps a terminal of `size` samples takes in one round."""
        batch_size, epochs, steps = self._work
        return steps if steps is not None else epochs * math.ceil(size / batch_size)

    @property
    def noise_multiplier(self) -> float:
        return self.budget.noise_multiplier

    @property
    def mechanism(self) -> Mechanism:
        return self.budget.mechanism

    def dp_sgd(self) -> Mechanism | None:
        """The per-sample mechanism the terminals' trainers apply (record level only)."""
        return self.mechanism if self.record else None

    def epsilon(self, round_: int) -> float | None:
        """ε spent after round `round_` (None: no noise, no guarantee)."""
        if not self.settings.noisy:
            return None
        if self.central:
            return self.budget.epsilon(round_)
        if self.buffered:
            return self.budget.epsilon(self._busiest[min(round_, len(self._busiest) - 1)])
        return self.budget.epsilon(int(self._reports[min(round_, len(self._reports) - 1)].max()))

    def count(self, senders: Sequence[str]) -> None:
        """Buffered: one aggregation unit has passed, in which `senders` sent their updates."""
        for t in senders:
            self._sent[t] += 1
        self._busiest.append(max(self._sent.values(), default=0))

    def counting_state(self) -> dict[str, Any]:
        """Buffered: the counts `count` keeps, for the driver's checkpoint (JSON)."""
        return {"sent": dict(self._sent), "busiest": list(self._busiest)}

    def load_counting_state(self, meta: dict[str, Any]) -> None:
        """Inverse of `counting_state`."""
        self._sent = {t: int(meta["sent"].get(t, 0)) for t in self.terminals}
        self._busiest = [int(n) for n in meta["busiest"]]

    def summary(self, round_: int) -> dict[str, Any]:
        return {**self.budget.summary(round_), "epsilon": self.epsilon(round_)}

    # -- what travels -----------------------------------------------------------------------

    def sent(self, round_: int, terminal: str, trained: Tensor, received: Tensor
             ) -> tuple[Tensor, Tensor]:
        """What `terminal` sends after training (`trained`, having received `received`), and
        the update it stands for: the update clipped (user level), plus the terminal's own
        noise when noise is local. The very same `trained` when nothing changes it."""
        update = trained - received
        if self.record:
            return trained, update
        rows = update[None]
        clipped = self.mechanism.clipped(rows)
        noise = None if self.central else self.mechanism.noise(
            update.shape, _generator(self.seed, terminal, round_), update.dtype)
        if clipped is rows and noise is None:
            return trained, update
        update = clipped[0] if noise is None else clipped[0] + noise
        return received + update, update

    def head_noise(self, round_: int, head: str, shape: torch.Size,
                   dtype: torch.dtype) -> Tensor | None:
        """Central noise the head `head` adds to the sum of its members' clipped updates."""
        return self.mechanism.noise(shape, _generator(self.seed, head, round_), dtype)

    def averages_centrally(self, head: str) -> bool:
        """Whether `head` averages its terminals under central noise (uniform weights, fixed
        denominator)."""
        return self.central and self.h.holons[head].members[0] in self._terminal_set

    def secures(self, head: str) -> bool:
        """Whether `head` sums its members' updates through masks."""
        return self.secure is not None and self.h.holons[head].members[0] in self._terminal_set

    def secure_sum(self, round_: int, head: str, members: Sequence[str],
                   vectors: dict[str, Tensor]) -> tuple[Tensor | None, int, float]:
        """The sum of the senders' `vectors` as `head` learns it: each sender masks its own
        with every other member of `members` (the round's trained members), the head adds the
        messages and removes the masks of members that dropped out from the survivors' revealed
        keys. None when fewer than two sent (the head learns nothing that round). Also the
        bytes the masks added and the seconds masking and unmasking took."""
        assert self.secure is not None
        if len(vectors) < 2:
            return None, 0, 0.0
        like = next(iter(vectors.values()))
        messages = {m: self.secure.mask(head, round_, members, m, v) for m, v in vectors.items()}
        total, overhead = self.secure.unmask(head, round_, members, messages)
        return (torch.from_numpy(total).to(like.dtype), overhead.total_bytes,
                overhead.mask_seconds + overhead.unmask_seconds)


def buffered_refusal(settings: PrivacySettings) -> str | None:
    """Why buffered aggregation cannot take the privacy block `settings` (one line), or None."""
    if settings.where == "central" and settings.level == "user" and settings.noisy:
        return ("aggregation: buffered does not take privacy.where: central: a buffered head "
                "aggregates B arrivals at a time from a cohort that changes with the "
                "terminals' speeds, so no noise can be sized to a fixed cohort; use where: local")
    if settings.secure_aggregation:
        return ("aggregation: buffered does not take privacy.secure_aggregation: no fixed set "
                "of members trains together to agree the masks for one sum")
    return None


def _generator(seed: int, holon: str, round_: int) -> torch.Generator:
    """Noise of one holon in one round, seeded statelessly: resume and engines agree."""
    return torch.Generator().manual_seed(agent_seed(seed, holon, f"dp-noise:{round_}"))


def terminal_sizes(terminals: Sequence[str], parts: Sequence[Any]) -> dict[str, int]:
    """Training samples per terminal, from the data partition (terminal order)."""
    return {t: len(p) for t, p in zip(terminals, parts, strict=True)}


def plan_privacy(settings: PrivacySettings | None, holarchy: Holarchy,
                 participation: Participation, parts: Sequence[Any], rounds: int, *,
                 batch_size: int, epochs: int | None = None, steps: int | None = None,
                 seed: int = 0, buffered: bool = False) -> HolarchyPrivacy | None:
    """A run's `HolarchyPrivacy` (None without a privacy block): how holonic learning and
    D-SSL set theirs up, one way (`buffered`: for `aggregation: buffered`)."""
    if settings is None:
        return None
    return HolarchyPrivacy(settings, holarchy, participation,
                           terminal_sizes(holarchy.terminals(), parts), rounds,
                           batch_size=batch_size, epochs=epochs, steps=steps, seed=seed,
                           buffered=buffered)


def dp_sgd(privacy: HolarchyPrivacy | None) -> dict[str, Mechanism]:
    """The trainer keyword for DP-SGD, when the privacy block asks for it (record level)."""
    mechanism = None if privacy is None else privacy.dp_sgd()
    return {} if mechanism is None else {"dp_sgd": mechanism}
