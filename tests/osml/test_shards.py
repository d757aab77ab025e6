"""Training agents a part at a time (`shard_size`) gives an unsharded run's numbers bit for bit."""
from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from pydantic import ValidationError

from osmotic.data.timeseries import Series
from osmotic.osml.config import OsmlConfig
from osmotic.osml.trainer import train_osml


def _replicas(tiny_context: Callable, n: int) -> tuple[Series, Series]:
    """`n` draws of the tiny simple context as one population: 4·n agents, related in fours."""
    train: Series = {}
    test: Series = {}
    for seed in range(n):
        tr, te = tiny_context(seed=seed)
        train.update({f"s{seed}_{a}": v for a, v in tr.items()})
        test.update({f"s{seed}_{a}": v for a, v in te.items()})
    return train, test


@pytest.mark.parametrize("preserve", ["reconstruction", "reference"])
def test_parts_equal_one_shard(tiny_context: Callable, tiny_config: Callable[..., OsmlConfig],
                               preserve: str) -> None:
    """70 agents in parts of 32 (the last of 6): the same losses, sub-contexts and final test
    embeddings as all 70 at once, through two epochs and a clustering; `reference` draws
    noise, which the second forward of each part must reuse."""
    train, test = _replicas(tiny_context, 18)
    train, test = dict(list(train.items())[:70]), dict(list(test.items())[:70])
    runs = []
    for size in (None, 32):
        config = tiny_config(epochs=2, cluster_every=2, preserve=preserve, shard_size=size,
                             threads=1)
        runs.append(train_osml(config, train, test, progress=False))
    whole, parts = runs
    assert (whole.test_embeddings == parts.test_embeddings).all()
    assert [m["train_loss"] for m in whole.metrics] == [m["train_loss"] for m in parts.metrics]
    assert whole.summary["subcontexts"] == parts.summary["subcontexts"]
    assert whole.history == parts.history


def test_shard_size_is_checked() -> None:
    with pytest.raises(ValidationError, match="shard_size\n  Value error, a multiple of 32, got 40"):
        OsmlConfig(shard_size=40)
    with pytest.raises(ValidationError, match="greater than or equal to 32"):
        OsmlConfig(shard_size=0)


def test_population_built_in_chunks_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Agents built and stacked a few at a time get the weights they get all at once."""
    from osmotic.osml.agent import OsmoticAgent
    from osmotic.runtime import population

    ids = [f"a{i}" for i in range(5)]
    whole = population.Population(lambda: OsmoticAgent(2), ids, seed=3)
    monkeypatch.setattr(population, "BUILD_CHUNK", 2)
    chunked = population.Population(lambda: OsmoticAgent(2), ids, seed=3)
    assert whole.params.keys() == chunked.params.keys()
    assert all(torch.equal(whole.params[k], chunked.params[k]) for k in whole.params)
    assert all(p.is_leaf and p.requires_grad for p in chunked.params.values())
