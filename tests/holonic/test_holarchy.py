"""Holarchy YAML: one test per validation rule, the builders, weights and drawing."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from osmotic.holarchy.builders import PAPER_TERMINAL_EDGES, fedavg, hierarchical, p2p, structure
from osmotic.holarchy.draw import draw_holarchy
from osmotic.holarchy.holarchy import Holarchy, HolarchyError

TWO_GROUPS = """
holarchy:
  id: R
  members:
    - {id: A, members: [0, 1]}
    - {id: B, members: [2, 3]}
edges: [[A, B], [0, 1]]
"""


def load(text: str, tmp_path: Path) -> Holarchy:
    f = tmp_path / "h.yaml"
    f.write_bytes(text.encode("utf-8", "surrogateescape"))  # "\udcff": the byte 0xff
    return Holarchy.from_yaml(f)


def test_valid_file(tmp_path: Path) -> None:
    h = load(TWO_GROUPS, tmp_path)
    assert h.terminals() == ["0", "1", "2", "3"]
    assert h.nonterminals() == ["A", "B", "R"]
    assert h.neighbours("A") == ["B"]
    assert Holarchy.from_dict(h.to_dict()).to_dict() == h.to_dict()


RULES = {
    "shape: unknown key": ("holarchy: {id: R, memberz: [0]}", "memberz"),
    "shape: not a holarchy": ("edges: []", "holarchy: Field required"),
    "single root": ("holarchy: [{id: R, members: [0]}, {id: S, members: [1]}]", "single root"),
    "unique ids": ("holarchy: {id: R, members: [{id: A, members: [0]}, {id: B, members: [0]}]}",
                   "holon id 0 is used twice"),
    "no cycles": ("holarchy: {id: R, members: [{id: A, members: [R]}]}",
                  "cycle: holon R contains itself (R > A > R)"),
    "edge: known ids": (TWO_GROUPS.replace("[0, 1]]", "[0, 9]]"), "edge (0, 9): unknown holon '9'"),
    "edge: no self loop": (TWO_GROUPS.replace("[0, 1]]", "[1, 1]]"), "own neighbour"),
    "edge: listed once": (TWO_GROUPS.replace("[0, 1]]", "[0, 1], [1, 0]]"), "listed twice"),
    "edge: inside a super-holon": (TWO_GROUPS.replace("[0, 1]]", "[1, 2]]"),
                                   "edge (1, 2) joins 1 (in A) and 2 (in B)"),
    "edge: not the root": (TWO_GROUPS.replace("[0, 1]]", "[R, A]]"), "R (in no super-holon)"),
    "weights positive": ("holarchy: {id: R, members: [{id: 0, weight: -2}, 1]}",
                         "holon 0: weight must be positive"),
    "weights on terminals": ("holarchy: {id: R, members: [{id: A, weight: 2, members: [0]}]}",
                             "holon A: `weight` is for terminals"),
    "non-aggregating needs members": ("holarchy: {id: R, members: [{id: 0, aggregates: false}]}",
                                      "holon 0: `aggregates: false` needs members"),
    "non-aggregating under aggregating": (
        ("holarchy: {id: R, members: [{id: A, aggregates: false, members: [0, 1]}, 2]}\n"
         "edges: [[0, 1]]"), "holon A does not aggregate"),
    "every terminal reachable": (("holarchy: {id: R, aggregates: false, members: [0, 1, 2]}\n"
                                  "edges: [[0, 1]]"), "terminal 2 is unreachable"),
    "valid YAML": ("holarchy: {id: R, members: [0", "not valid YAML"),
    "no empty members": ("holarchy: {id: R, members: []}",
                         "holon R: `members: []` lists no member; list them, or drop"),
    "no empty members below": ("holarchy: {id: R, members: [0, {id: A, members: []}]}",
                               "holon A: `members: []`"),
    "no cycles through an alias": ("holarchy: &r {id: R, members: [0, *r]}",
                                   "cycle: holon R contains itself (through a YAML alias)"),
    "readable": ("\udcff", "cannot read (not UTF-8 text)"),
}


@pytest.mark.parametrize("rule", RULES)
def test_rule(rule: str, tmp_path: Path) -> None:
    text, message = RULES[rule]
    with pytest.raises(HolarchyError) as e:
        load(text, tmp_path)
    assert message in str(e.value)
    assert str(tmp_path / "h.yaml") in str(e.value)  # errors name the file
    assert "\n" not in str(e.value) and len(str(e.value)) <= 300


def test_a_missing_or_unreadable_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'none.yaml'}: no such holarchy "
                       "file"):
        Holarchy.from_yaml(tmp_path / "none.yaml")
    with pytest.raises(HolarchyError, match=f"{tmp_path}: cannot read"):
        Holarchy.from_yaml(tmp_path)  # a folder


def test_a_long_shape_error_is_cut_to_one_short_line(tmp_path: Path) -> None:
    with pytest.raises(HolarchyError) as e:  # the edge quoted whole: 200 ids
        load(f"holarchy: {{id: R, members: [0, 1]}}\nedges: [{list(range(200))}]", tmp_path)
    assert len(str(e.value)) <= 300 and str(tmp_path / "h.yaml") in str(e.value)


def test_builders() -> None:
    assert fedavg(3).holons["R"].members == ("0", "1", "2") and not fedavg(3).edges
    h = hierarchical([[0, 1], [2]])
    assert h.holons["E1"].members == ("2",) and h.parent["2"] == "E1"
    assert not p2p(2, [(0, 1)]).holons["R"].aggregates
    with pytest.raises(HolarchyError, match="unreachable"):
        p2p(3, [(0, 1)])
    with pytest.raises(ValueError, match="at least one terminal"):
        fedavg(0)


@pytest.mark.parametrize("name,depth", [("1P", 1), ("2L", 2), ("3L", 3), ("4L", 4)])
def test_paper_structures(name: str, depth: int) -> None:
    h = structure(name)
    assert h.terminals() == [str(i) for i in range(10)]
    assert max(h.depth(t) for t in h.terminals()) == depth
    terminal_edges = {tuple(sorted(e)) for e in h.edges if e[0].isdigit()}
    assert terminal_edges <= {tuple(sorted(map(str, e))) for e in PAPER_TERMINAL_EDGES + [(4, 5)]}
    if name != "1P":
        assert ("H1", "H2") in h.edges


def test_weights_are_data_sizes() -> None:
    """Paper Eq. 10: terminals weigh their samples, heads the sum of their members."""
    h = structure("3L")
    w = h.weights({str(i): i + 1 for i in range(10)})
    assert w["H3"] == 1 + 2 + 3 and w["H1"] == 15 and w["R"] == 55


def test_draw(tmp_path: Path) -> None:
    draw_holarchy(structure("4L"), tmp_path / "4L.png")
    assert (tmp_path / "4L.png").read_bytes()[:4] == b"\x89PNG"


def test_yaml_round_trip(tmp_path: Path) -> None:
    f = tmp_path / "3L.yaml"
    f.write_text(yaml.safe_dump(structure("3L").to_dict()))
    assert Holarchy.from_yaml(f).to_dict() == structure("3L").to_dict()
