"""Hierarchical diffusers: one level is flat OSM-L; two levels find sub-contexts across sites."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from osmotic.cli import main
from osmotic.data.scenarios import replicate_scenario
from osmotic.osml.config import OsmlConfig
from osmotic.osml.diffuser import Diffuser
from osmotic.osml.sites import SiteDiffusers
from osmotic.osml.trainer import train_osml
from osmotic.runtime.strategies import make_strategy
from tests.osml.compare import numbers
from tests.test_inputs import Capsys, error_line


def _holarchy(sites: dict[str, list[str]]) -> dict[str, Any]:
    return {"holarchy": {"id": "R", "members": [{"id": s, "members": m} for s, m in sites.items()]}}


def test_one_level_is_flat_osml_bit_for_bit(tiny_context: Callable,
                                            tiny_config: Callable[..., OsmlConfig]) -> None:
    train, test = tiny_context()
    ids = ["0", "1", "M0"]
    flat = train_osml(tiny_config(agents=ids), train, test, progress=False)
    one = train_osml(tiny_config(agents=ids, sites={"holarchy": {"id": "R", "members": ids[::-1]}}),
                     train, test, progress=False)
    assert numbers(one.summary, drop=("bytes",)) == numbers(flat.summary)
    assert numbers(one.metrics, drop=("bytes",)) == numbers(flat.metrics)
    assert (one.test_embeddings == flat.test_embeddings).all() and one.history == flat.history
    # every agent's embeddings of every training step, up once per epoch and per clustering
    steps = next(iter(train.values())).shape[0] - tiny_config().window + 1
    per_pass = 4 * len(ids) * steps * tiny_config().dim
    root = one.summary["bytes"]["root"]
    assert root["up"] == {"batch": 2 * per_pass, "clustering": 2 * per_pass}
    assert one.summary["bytes"]["sites"]["up"]["batch"] == 0


def test_two_levels_find_flat_sub_contexts_across_sites() -> None:
    """Two replicas of a scenario over two sites, one group of each replica split across them:
    the root merges its parts, and the sub-contexts are flat OSM-L's (here: the truth), with
    fewer bytes into the root than the flat diffuser receives."""
    train, test, truth = replicate_scenario([3, 2], 0, 2, replicas=2, seed=0)
    site = {a: truth["replica"][a] for a in train}
    for g in truth["groups"][::2]:
        site[g[0]] = 1 - site[g[0]]
    spanning = [g for g in truth["groups"] if len({site[a] for a in g}) > 1]
    assert len(spanning) == 2
    sites = _holarchy({f"S{s}": [a for a in train if site[a] == s] for s in (0, 1)})
    config = OsmlConfig(epochs=6, hidden=8)
    runs = [train_osml(config.with_overrides(sites=h), train, test, progress=False)
            for h in (None, sites)]
    found = [sorted(sorted(g["agents"]) for g in r.summary["subcontexts"]) for r in runs]
    assert found[0] == found[1] == sorted(map(sorted, truth["groups"]))
    # a flat diffuser receives every agent's embeddings of every step, every epoch and at
    # every clustering (three here)
    steps = len(next(iter(train.values()))) - config.window + 1
    flat_in = 4 * len(train) * steps * config.dim * (6 + 3)
    assert sum(runs[1].summary["bytes"]["root"]["up"].values()) < flat_in / 2


def test_merged_context_is_the_mean_of_all_its_members() -> None:
    """Before the first clustering every agent aligns to the mean of all agents, whichever
    site it is at: the root combines the sites' parts by size."""
    sites = SiteDiffusers([[0, 3], [1, 2, 4]], lambda n: Diffuser(n, make_strategy("mean")), 5,
                          steps=10)
    E = torch.randn(5, 3, 2)
    assert torch.allclose(sites.contexts(E), E.mean(0, keepdim=True).expand_as(E))
    assert sites.groups == [[0, 1, 2, 3, 4]]
    b = sites.traffic.summary()["root"]["up"]["batch"]
    assert b == 4 * 2 * (3 * 2 + 1)  # two parts: a context of 3 steps × 2 numbers and a size


@pytest.mark.parametrize(("sites", "message"), [
    ({"S0": ["0", "1"], "S1": []}, "holon S1: `members: []` lists no member"),
    ({"S0": ["0", "1", "nobody"]}, "sites: 1 unknown agent(s) (nobody)"),
    ({"S0": ["0"]}, "sites: 2 agent(s) in no site (1, M0)"),
])
def test_bad_sites_are_one_line(sites: dict[str, list[str]], message: str, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch, capsys: Capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(
        {"mode": "osml", "data": {"generated": "simple", "seed": 0}, "epochs": 1,
         "agents": ["0", "1", "M0"], "sites": _holarchy(sites)}))
    assert message in error_line(main(["run", "run.yaml", "--out", "r"]), capsys)
