"""The same seed gives the same numbers; another seed gives others."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from osmotic.osml.config import OsmlConfig
from osmotic.osml.trainer import train_osml


def _numbers(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in ("train_seconds", "train_cpu_seconds")}


def test_same_seed_same_summary_other_seed_other_numbers(
        tiny_context: Callable, tiny_config: Callable[..., OsmlConfig]) -> None:
    train, test = tiny_context()
    configs = [tiny_config(agents=["0", "1", "M0"], seed=s) for s in (0, 0, 1)]
    runs = [train_osml(c, train, test, progress=False) for c in configs]
    assert _numbers(runs[0].summary) == _numbers(runs[1].summary)
    assert (runs[0].test_embeddings == runs[1].test_embeddings).all()
    assert runs[0].history == runs[1].history
    assert runs[0].summary["spread"] != runs[2].summary["spread"]
    assert runs[0].summary["context_loss"] != runs[2].summary["context_loss"]


def test_times_add_up(tiny_context: Callable, tiny_config: Callable[..., OsmlConfig]) -> None:
    """Training seconds (wall and CPU) grow every epoch; the clustering's share is part of its
    epoch's training seconds, and zero in an epoch without a clustering."""
    train, test = tiny_context()
    config = tiny_config(agents=["0", "1"], epochs=2, cluster_every=2)
    run = train_osml(config, train, test, progress=False)
    first, second = run.metrics
    assert 0 < first["train_seconds"] < second["train_seconds"] == run.summary["train_seconds"]
    assert 0 < run.summary["train_cpu_seconds"]
    assert first["cluster_seconds"] == 0
    assert 0 < second["cluster_seconds"] < second["train_seconds"] - first["train_seconds"]
