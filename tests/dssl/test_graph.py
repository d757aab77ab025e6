"""The DecL communication graph: a seeded, connected random d-regular graph, or one clear line."""
from __future__ import annotations

import networkx as nx
import pytest

from osmotic.holarchy.builders import regular, regular_edges


@pytest.mark.parametrize(("n", "d"), [(20, 2), (20, 4), (20, 8), (20, 19), (7, 4)])
def test_degree_exact_and_connected(n: int, d: int) -> None:
    g = nx.Graph(regular_edges(n, d, seed=3))
    assert sorted(g.nodes) == list(range(n))
    assert {deg for _, deg in g.degree} == {d}
    assert nx.is_connected(g)


def test_seeded() -> None:
    assert regular_edges(20, 4, seed=1) == regular_edges(20, 4, seed=1)
    assert regular_edges(20, 4, seed=1) != regular_edges(20, 4, seed=2)


def test_holarchy_neighbours_are_the_graph() -> None:
    h = regular(10, 4, seed=0)
    assert all(len(h.neighbours(t)) == 4 for t in h.terminals())


@pytest.mark.parametrize(("n", "d", "message"), [
    (10, 10, "between 1 and clients - 1 = 9"),
    (5, 3, "n·d = 15 is odd"),
    (5, 0, "between 1 and clients - 1"),
])
def test_bad_degree_is_one_line(n: int, d: int, message: str) -> None:
    with pytest.raises(ValueError, match=message) as e:
        regular_edges(n, d)
    assert "\n" not in str(e.value)
