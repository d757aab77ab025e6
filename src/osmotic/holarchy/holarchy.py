"""A holarchy: a tree of holons plus, inside each super-holon, a graph of neighbour edges.

Users write it in YAML as nested holons by id; a bare id (or a holon without members) is a
terminal, i.e. an agent with data and a model:

    holarchy:
      id: R
      members:
        - {id: H1, members: [0, 1, 2, 3, 4]}
        - {id: H2, members: [5, 6, 7, 8, 9]}
    edges: [[H1, H2], [0, 1], [5, 6]]

Optional per holon: `aggregates: false` (a non-terminal that only starts the learning, as the
root of P2P) and, on terminals, `weight:` (replaces its number of training samples in averages).

Parsing has two layers: pydantic checks the shape (unknown keys, types), then `Holarchy`
checks the rules that make a holarchy learnable, each error naming the holon or edge at fault.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from osmotic.settings import one_line, read_mapping


class HolarchyError(ValueError):
    """An invalid holarchy description (one line, naming the holon or edge)."""


# -- the YAML shape ---------------------------------------------------------------------------
class HolonSpec(BaseModel):
    """One holon as written by a user."""

    model_config = ConfigDict(extra="forbid")

    id: str
    members: list[HolonSpec | str] = Field(default_factory=list)
    aggregates: bool = True
    weight: float | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("members", mode="before")
    @classmethod
    def _ids_as_text(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [str(m) if isinstance(m, int) and not isinstance(m, bool) else m for m in v]
        return v


class HolarchySpec(BaseModel):
    """A whole holarchy file: one root holon and the neighbour edges."""

    model_config = ConfigDict(extra="forbid")

    holarchy: HolonSpec | list[HolonSpec]
    edges: list[tuple[str | int, str | int]] = Field(default_factory=list)


# -- the validated structure ------------------------------------------------------------------
@dataclass(frozen=True)
class Holon:
    id: str
    members: tuple[str, ...]
    aggregates: bool = True
    weight: float | None = None  # terminals only; None: the number of training samples

    @property
    def terminal(self) -> bool:
        return not self.members


class Holarchy:
    """A validated holarchy. Holons are visited in a fixed order (depth first, members in the
    order written), so terminal order and every schedule step are reproducible."""

    def __init__(self, holons: Iterable[Holon], root: str, edges: Iterable[tuple[str, str]]):
        self.holons: dict[str, Holon] = {h.id: h for h in holons}
        self.root = root
        self.parent: dict[str, str | None] = {root: None}
        for h in self.holons.values():
            for m in h.members:
                self.parent[m] = h.id
        self.edges = [tuple(e) for e in edges]
        self.graph = nx.Graph()  # neighbour edges only
        self.graph.add_nodes_from(self.holons)
        self.graph.add_edges_from(self.edges)
        self._validate_semantics()

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, where: str = "holarchy") -> Holarchy:
        """The holarchy `data` describes; every error is one short line starting `where`."""
        try:
            return cls._from_dict(data, where)
        except HolarchyError as e:
            raise HolarchyError(_short(str(e))) from None
        except RecursionError:
            raise HolarchyError(f"{where}: nested too deeply") from None

    @classmethod
    def _from_dict(cls, data: Any, where: str) -> Holarchy:
        looped = _alias_loop(data)
        if looped is not None:
            raise HolarchyError(f"{where}: cycle: {looped} contains itself (through a YAML "
                                "alias)")
        try:
            spec = HolarchySpec.model_validate(data)
        except ValidationError as e:
            raise HolarchyError(one_line(e, where)) from None
        roots = spec.holarchy if isinstance(spec.holarchy, list) else [spec.holarchy]
        if len(roots) != 1:
            ids = ", ".join(r.id for r in roots) or "none"
            raise HolarchyError(f"{where}: a holarchy has a single root holon; found {len(roots)}"
                                f" ({ids})")
        holons: list[Holon] = []
        _flatten(roots[0], (), set(), holons, where)
        edges = [(str(a), str(b)) for a, b in spec.edges]
        try:
            return cls(holons, roots[0].id, edges)
        except HolarchyError as e:
            raise HolarchyError(f"{where}: {e}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> Holarchy:
        """The holarchy of a YAML file; every error is one line naming the file."""
        path = Path(path)
        try:
            data = read_mapping(path, HolarchyError)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such holarchy file") from None
        except HolarchyError as e:
            raise HolarchyError(_short(str(e))) from None
        return cls.from_dict(data, str(path))

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (round-trips through `from_dict`)."""

        def spec(hid: str) -> Any:
            h = self.holons[hid]
            if h.terminal:
                return hid if h.weight is None else {"id": hid, "weight": h.weight}
            out: dict[str, Any] = {"id": hid, "members": [spec(m) for m in h.members]}
            if not h.aggregates:
                out["aggregates"] = False
            return out

        return {"holarchy": spec(self.root), "edges": [list(e) for e in self.edges]}

    # -- validation ---------------------------------------------------------------------------
    def _validate_semantics(self) -> None:
        seen: set[frozenset[str]] = set()
        for a, b in self.edges:
            for x in (a, b):
                if x not in self.holons:
                    raise HolarchyError(f"edge ({a}, {b}): unknown holon {x!r}")
            if a == b:
                raise HolarchyError(f"edge ({a}, {b}): a holon cannot be its own neighbour")
            if frozenset((a, b)) in seen:
                raise HolarchyError(f"edge ({a}, {b}) is listed twice")
            seen.add(frozenset((a, b)))
            pa, pb = self.parent[a], self.parent[b]
            if pa is None or pa != pb:
                raise HolarchyError(
                    f"edge ({a}, {b}) joins {a} (in {pa or 'no super-holon'}) and {b} (in "
                    f"{pb or 'no super-holon'}): neighbour edges must join two members of the "
                    f"same super-holon")
        for h in self.holons.values():
            if h.terminal and not h.aggregates:
                raise HolarchyError(f"holon {h.id}: `aggregates: false` needs members (a "
                                    f"terminal has no models to aggregate)")
            if h.weight is not None and not h.terminal:
                raise HolarchyError(f"holon {h.id}: `weight` is for terminals; a non-terminal "
                                    f"weighs the sum of its members")
            if h.weight is not None and not h.weight > 0:
                raise HolarchyError(f"holon {h.id}: weight must be positive, got {h.weight}")
            p = self.parent[h.id]
            if not h.aggregates and p is not None and self.holons[p].aggregates:
                raise HolarchyError(f"holon {h.id} does not aggregate, so it never reports to "
                                    f"its superior {p}, which does")
        self._check_reachable()

    def _check_reachable(self) -> None:
        """Every terminal's model must be able to reach every other terminal's: through
        aggregating heads or neighbour edges (a non-aggregating head only starts learning)."""
        g = nx.Graph(self.graph)
        for h in self.holons.values():
            if h.aggregates:
                g.add_edges_from((h.id, m) for m in h.members)
        terminals = self.terminals()
        component = nx.node_connected_component(g, terminals[0])
        for t in terminals:
            if t not in component:
                raise HolarchyError(
                    f"terminal {t} is unreachable from terminal {terminals[0]}: no aggregating "
                    f"head or neighbour edge connects them (add edges under holon "
                    f"{self.parent[t]})")

    # -- queries ------------------------------------------------------------------------------
    # A holarchy does not change once built, and the schedule walks it every round: the orders
    # are computed once (at 100,000 terminals a walk costs tens of milliseconds).
    def preorder(self) -> list[str]:
        return self._preorder

    @cached_property
    def _preorder(self) -> list[str]:
        out, stack = [], [self.root]
        while stack:
            h = stack.pop()
            out.append(h)
            stack.extend(reversed(self.holons[h].members))
        return out

    def postorder(self) -> list[str]:
        return self._postorder

    @cached_property
    def _postorder(self) -> list[str]:
        return list(reversed(list(self._reverse_postorder())))

    def _reverse_postorder(self) -> Iterator[str]:
        """Root first, members right to left: reversed, every holon comes after its members."""
        stack = [self.root]
        while stack:
            h = stack.pop()
            yield h
            stack.extend(self.holons[h].members)

    def terminals(self) -> list[str]:
        return list(self._terminals)

    @cached_property
    def _terminals(self) -> list[str]:
        return [h for h in self.preorder() if self.holons[h].terminal]

    def nonterminals(self) -> list[str]:
        """Non-terminal holons, every holon after all of its members (bottom-up order)."""
        return list(self._nonterminals)

    @cached_property
    def _nonterminals(self) -> list[str]:
        return [h for h in self.postorder() if not self.holons[h].terminal]

    @cached_property
    def _rank(self) -> dict[str, int]:
        """Position of every holon in holarchy order (a holarchy does not change once built;
        the schedule asks for neighbours of every holon every round)."""
        return {h: i for i, h in enumerate(self.preorder())}

    def neighbours(self, hid: str) -> list[str]:
        """Neighbours of `hid` in holarchy order (so averages sum in a fixed order)."""
        return sorted(self.graph.neighbors(hid), key=self._rank.__getitem__)

    def depth(self, hid: str) -> int:
        d = 0
        while (p := self.parent[hid]) is not None:
            hid, d = p, d + 1
        return d

    def weights(self, samples: dict[str, int]) -> dict[str, float]:
        """Paper Eq. 10: a terminal weighs its samples (or its `weight`), a non-terminal the sum
        of its members."""
        w: dict[str, float] = {}
        for hid in self.postorder():
            h = self.holons[hid]
            w[hid] = (float(h.weight if h.weight is not None else samples[hid]) if h.terminal
                      else sum(w[m] for m in h.members))
        return w

    def __repr__(self) -> str:
        return (f"Holarchy(root={self.root!r}, {len(self.terminals())} terminals, "
                f"{len(self.holons) - len(self.terminals())} non-terminals, "
                f"{len(self.edges)} edges)")


def _flatten(spec: HolonSpec | str, path: tuple[str, ...], seen: set[str], out: list[Holon],
             where: str) -> None:
    """Depth-first walk of the nested spec, catching cycles and repeated ids as it goes."""
    node = HolonSpec(id=spec) if isinstance(spec, str) else spec
    if not node.members and "members" in node.model_fields_set:  # else a terminal, by intent
        raise HolarchyError(f"{where}: holon {node.id}: `members: []` lists no member; list "
                            "them, or drop `members:` to make it a terminal")
    if node.id in path:
        raise HolarchyError(f"{where}: cycle: holon {node.id} contains itself "
                            f"({' > '.join((*path, node.id))})")
    if node.id in seen:
        raise HolarchyError(f"{where}: holon id {node.id} is used twice (ids must be unique)")
    seen.add(node.id)
    out.append(Holon(node.id, tuple(m if isinstance(m, str) else m.id for m in node.members),
                     node.aggregates, node.weight))
    for m in node.members:
        _flatten(m, (*path, node.id), seen, out, where)


def _alias_loop(data: Any) -> str | None:
    """The holon (or list) that contains itself through a YAML alias (`&a ... *a`), which
    pydantic would report with the whole looped structure; None when there is none. Shared,
    finished parts are walked once."""
    done: set[int] = set()

    def walk(node: Any, open_: tuple[int, ...]) -> str | None:
        if not isinstance(node, dict | list) or id(node) in done:
            return None
        if id(node) in open_:
            return f"holon {node.get('id')}" if isinstance(node, dict) else "a members list"
        for child in node.values() if isinstance(node, dict) else node:
            found = walk(child, (*open_, id(node)))
            if found is not None:
                return found
        done.add(id(node))
        return None

    return walk(data, ())


def _short(message: str, limit: int = 280) -> str:
    """An error at most `limit` characters long, so that the command line's `osmotic: error: `
    line stays within 300 (a quoted holarchy can be long)."""
    return message if len(message) <= limit else message[:limit - 3] + "..."
