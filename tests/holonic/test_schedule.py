"""The synchronous HoAL schedule on scalar "models": who averages when, and what it costs."""
from __future__ import annotations

import torch

from osmotic.holarchy.builders import fedavg, p2p, structure
from osmotic.holarchy.holarchy import Holarchy
from osmotic.holarchy.schedule import SyncSchedule


def schedule(h: Holarchy, budget: int = 2) -> SyncSchedule:
    return SyncSchedule(h, h.weights(dict.fromkeys(h.terminals(), 1)), budget, torch.zeros(1))


def aggregation_rounds(name: str, holon: str, rounds: int, budget: int = 2) -> list[int]:
    """Rounds in which `holon` produced a new model (terminals hold distinct random models)."""
    s = schedule(structure(name), budget)
    gen = torch.Generator().manual_seed(0)
    seen = []
    for r in range(1, rounds + 1):
        before = s.used.get(holon, 0)
        s.step(torch.rand(10, 1, generator=gen))
        if s.used[holon] != before:
            seen.append(r)
    return seen


def test_weighted_average() -> None:
    h = fedavg(2)
    s = SyncSchedule(h, h.weights({"0": 1, "1": 3}), 2, torch.zeros(1))
    out = s.step(torch.tensor([[0.0], [4.0]]))
    assert out.flatten().tolist() == [3.0, 3.0]


def test_heads_sync_every_k_to_the_h() -> None:
    """A holon h levels above the terminals synchronises with its superior every K^h rounds."""
    assert aggregation_rounds("2L", "R", 8) == [2, 4, 6, 8]
    assert aggregation_rounds("3L", "H1", 8) == [2, 4, 6, 8]
    assert aggregation_rounds("3L", "R", 8) == [4, 8]
    assert aggregation_rounds("4L", "R", 16) == [8, 16]  # H1 is 3 levels up: 2^3
    assert aggregation_rounds("4L", "R", 9, budget=3) == []  # 3^3 = 27 rounds
    assert aggregation_rounds("4L", "H2", 3) == [1, 2, 3]  # directly above terminals


def test_messages_2L() -> None:
    s = schedule(structure("2L"))
    s.step(torch.rand(10, 1))
    # 8 terminal edges and (H1, H2), both ways; 10 reports up, 10 models down
    assert s.traffic.totals()["messages"] == {"horizontal": 18, "vertical": 20}
    s.step(torch.rand(10, 1))  # + H1, H2 report, R sends 2 down
    assert s.traffic.totals()["messages"] == {"horizontal": 36, "vertical": 44}
    assert s.traffic.totals()["bytes"]["vertical"] == 44 * 4  # one float32 parameter
    assert s.traffic.per_holon()["R"] == {"horizontal": 0, "vertical": 2}


def test_model_from_above_reaches_terminals_and_resets_budget() -> None:
    s = schedule(structure("2L"))
    s.step(torch.rand(10, 1))
    out = s.step(torch.rand(10, 1))
    assert torch.all(out == s.models["R"])  # R averaged and everyone took its model
    assert s.used["H1"] == s.used["H2"] == 0


def test_p2p_root_only_forwards() -> None:
    s = schedule(p2p(3, [(0, 1), (1, 2)]))
    out = s.step(torch.tensor([[0.0], [3.0], [6.0]]))
    assert out.flatten().tolist() == [1.5, 3.0, 4.5]
    assert s.traffic.totals()["messages"] == {"horizontal": 4, "vertical": 0}
