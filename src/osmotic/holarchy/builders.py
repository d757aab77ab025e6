"""Builders for standard holarchies: FedAvg, hierarchical FL, P2P and the paper's structures.

All go through `Holarchy.from_dict`, so a builder cannot produce a holarchy that a YAML file
with the same content would be refused for.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from osmotic.holarchy.holarchy import Holarchy

# The paper's terminal collaboration network (10 terminals), shared by its four structures.
PAPER_TERMINAL_EDGES = [(0, 1), (0, 3), (1, 4), (2, 3), (5, 6), (5, 8), (6, 9), (7, 8)]


def _ids(xs: Iterable[Any]) -> list[str]:
    return [str(x) for x in xs]


def fedavg(n: int) -> Holarchy:
    """Server (root R) over terminals 0..n-1, no neighbour edges: FedAvg, full participation."""
    _at_least_one(n)
    return Holarchy.from_dict({"holarchy": {"id": "R", "members": _ids(range(n))}}, "fedavg")


def hierarchical(groups: Sequence[Sequence[Any]]) -> Holarchy:
    """Client-edge-cloud FL: cloud R over edge holons E0, E1, ... over the given client groups."""
    if not groups or any(not g for g in groups):
        raise ValueError("hierarchical needs at least one group, each with at least one client")
    members = [{"id": f"E{i}", "members": _ids(g)} for i, g in enumerate(groups)]
    return Holarchy.from_dict({"holarchy": {"id": "R", "members": members}}, "hierarchical")


def p2p(n: int, edges: Iterable[tuple[Any, Any]]) -> Holarchy:
    """Terminals 0..n-1 averaging with graph neighbours; the root only starts the learning."""
    _at_least_one(n)
    return Holarchy.from_dict({"holarchy": {"id": "R", "aggregates": False,
                                            "members": _ids(range(n))},
                               "edges": [_ids(e) for e in edges]}, "p2p")


def regular_edges(n: int, degree: int, seed: int = 0) -> list[tuple[int, int]]:
    """Edges of a connected random `degree`-regular graph on 0..n-1, the same for the same seed
    (degree n-1: the complete graph; 2: a random ring)."""
    import networkx as nx
    import numpy as np

    if not 1 <= degree < n:
        raise ValueError(f"degree must be between 1 and clients - 1 = {n - 1}, got {degree}")
    if n * degree % 2:
        raise ValueError(f"no {degree}-regular graph on {n} clients exists (n·d = {n * degree} "
                         f"is odd)")
    rng = np.random.default_rng(seed)
    if degree == 2:  # random 2-regular graphs are mostly several cycles: draw one ring
        ring = rng.permutation(n).tolist()
        return sorted(tuple(sorted((ring[i], ring[(i + 1) % n]))) for i in range(n))
    for _ in range(1000):
        g = nx.random_regular_graph(degree, n, seed=int(rng.integers(2**31)))
        if nx.is_connected(g):
            return sorted(tuple(sorted(e)) for e in g.edges)
    raise ValueError(f"no connected {degree}-regular graph on {n} clients found in 1000 draws")


def regular(n: int, degree: int, seed: int = 0) -> Holarchy:
    """Decentralised learning: P2P over a seeded connected random `degree`-regular graph."""
    return p2p(n, regular_edges(n, degree, seed))


def _at_least_one(n: int) -> None:
    if n < 1:
        raise ValueError(f"a holarchy needs at least one terminal, got {n}")


def _paper(tree: dict[str, Any], extra_edges: Sequence[tuple[Any, Any]], name: str) -> Holarchy:
    """The paper's terminal edges restricted to those inside one super-holon (the paper confines
    collaboration to peers within a holon), plus `extra_edges`."""
    parent: dict[str, str] = {}

    def walk(node: dict[str, Any]) -> None:
        for m in node["members"]:
            if isinstance(m, dict):
                parent[m["id"]] = node["id"]
                walk(m)
            else:
                parent[str(m)] = node["id"]

    walk(tree)
    edges = [_ids(e) for e in PAPER_TERMINAL_EDGES if parent[str(e[0])] == parent[str(e[1])]]
    return Holarchy.from_dict({"holarchy": tree, "edges": edges + [_ids(e) for e in extra_edges]},
                              name)


def _h(hid: str, members: list[Any]) -> dict[str, Any]:
    return {"id": hid, "members": [m if isinstance(m, dict) else str(m) for m in members]}


def structure(name: str) -> Holarchy:
    """One of the paper's four structures over terminals 0..9: 1P, 2L, 3L, 4L (its Fig. 5)."""
    if name == "1P":  # the added edge (4, 5) joins the two halves of the terminal graph
        return p2p(10, PAPER_TERMINAL_EDGES + [(4, 5)])
    if name == "2L":
        tree = _h("R", [_h("H1", list(range(5))), _h("H2", list(range(5, 10)))])
    elif name == "3L":
        tree = _h("R", [_h("H1", [_h("H3", [0, 1, 2]), _h("H4", [3, 4])]),
                        _h("H2", [_h("H5", [5, 6, 7]), _h("H6", [8, 9])])])
    elif name == "4L":
        tree = _h("R", [_h("H1", [_h("H3", [_h("H5", [0, 1]), _h("H6", [2, 3])]),
                                  _h("H4", [_h("H7", [4, 5]), _h("H8", [6, 7])])]),
                        _h("H2", [8, 9])])
    else:
        raise ValueError(f"unknown structure {name!r}; choose from {list(STRUCTURES)}")
    return _paper(tree, [("H1", "H2")], name)


STRUCTURES = ("1P", "2L", "3L", "4L")
