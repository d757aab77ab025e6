"""An OSM-L run: agents in shards, a diffuser, epochs of lock-step batches, honest metrics."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from osmotic.engines.inprocess import InProcessEngine, cpu_threads
from osmotic.osmosis.config import OsmlConfig
from osmotic.osmosis.diffuser import Diffuser
from osmotic.osmosis.metrics import context_accuracy, rank_score, spread
from osmotic.osmosis.shard import OsmoticShard, objective
from osmotic.report.progress import progress
from osmotic.runtime.strategies import make_strategy

Series = dict[str, np.ndarray]


@dataclass
class OsmlResult:
    """What a run produced; `summary` is what `summary.json` holds."""

    agent_ids: list[str]
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    test_embeddings: np.ndarray  # [agents, steps, d]
    history: list[dict[str, Any]] = field(default_factory=list)


def make_shards(config: OsmlConfig, train: Series, test: Series) -> list[OsmoticShard]:
    """One shard per feature count: agents of one architecture are batched together."""
    by_k: dict[int, list[str]] = {}
    for a, s in train.items():
        by_k.setdefault(s.shape[1], []).append(a)
    return [OsmoticShard(ids, [train[a] for a in ids], [test[a] for a in ids], config)
            for ids in by_k.values()]


def make_engine(config: OsmlConfig, train: Series, test: Series) -> Any:
    """The engine that hosts the agents: in this process, or sharded over Ray actors."""
    def build(chunk: list[str]) -> Any:
        part_train = {a: train[a] for a in chunk}
        part_test = {a: test[a] for a in chunk}
        return lambda: InProcessEngine(make_shards(config, part_train, part_test), chunk)

    if config.engine == "ray":
        from osmotic.engines.ray import RayEngine

        return RayEngine(list(train), build, actors=config.actors, address=config.ray_address,
                         threads=config.threads)
    return build(list(train))()


def _batches(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _names(groups: list[list[int]], ids: list[str]) -> list[list[str]]:
    return [sorted(ids[i] for i in g) for g in groups]


def evaluate(engine: Any, diffuser: Diffuser, config: OsmlConfig, n_steps: int, ids: list[str]) -> dict[str, Any]:
    """Test metrics under the diffuser's current sub-contexts, plus the test embeddings."""
    Es, losses = [], []
    for start, stop in _batches(n_steps, config.batch_size):
        E, P = engine.embed("test", start, stop)
        losses.append(objective(E, P, diffuser.contexts(E), config.alpha) * (stop - start))
        Es.append(E)
    E = torch.cat(Es, dim=1)
    groups = diffuser.groups or [list(range(len(ids)))]  # no sub-context: score all agents
    acc = context_accuracy(E, groups, config.beta)
    rank = rank_score(E, groups)
    found = groups if diffuser.groups else []
    return {
        "embeddings": E,
        "test_loss": float(torch.stack(losses).sum(0).mean() / n_steps),
        "context_accuracy": float(np.nanmean(acc)),
        "rank_score": float(np.nanmean(rank)),
        "subcontexts": [{"agents": names, "context_accuracy": a, "rank_score": r}
                        for names, a, r in zip(_names(found, ids), acc, rank)],
        "unclustered": sorted(ids[i] for i in range(len(ids)) if i not in diffuser.clustered),
        "spread": dict(zip(ids, spread(E).tolist())),
    }


def train_osml(config: OsmlConfig, train: Series, test: Series, *,
               log: Any = None, show_progress: bool | None = None) -> OsmlResult:
    """Train OSM-L on `train`, evaluate on `test` every epoch; `log(row)` receives each epoch."""
    with cpu_threads(config.threads):
        return _train(config, train, test, log, show_progress)


def _train(config: OsmlConfig, train: Series, test: Series, log: Any,
           show_progress: bool | None) -> OsmlResult:
    if config.agents is not None:
        train = {a: train[a] for a in config.agents}
        test = {a: test[a] for a in config.agents}
    ids = list(train)
    torch.manual_seed(config.seed)
    engine = make_engine(config, train, test)
    try:
        return _loop(config, engine, train, test, log, show_progress)
    finally:
        if hasattr(engine, "shutdown"):
            engine.shutdown()


def _loop(config: OsmlConfig, engine: Any, train: Series, test: Series, log: Any,
          show_progress: bool | None) -> OsmlResult:
    ids = list(train)
    diffuser = Diffuser(len(ids), make_strategy(config.strategy, **config.strategy_params),
                        unclustered=config.unclustered, threshold=config.threshold,
                        beta=config.beta, samples=config.cluster_samples,
                        min_rank=config.min_rank, seed=config.seed)
    n_train = next(iter(train.values())).shape[0] - config.window + 1
    n_test = next(iter(test.values())).shape[0] - config.window + 1
    batches = _batches(n_train, config.batch_size)
    metrics: list[dict[str, Any]] = []
    train_seconds = 0.0
    with progress(show_progress) as bar:
        ep_task = bar.add_task("epochs", total=config.epochs, info="")
        b_task = bar.add_task("batches", total=len(batches), info="")
        for epoch in range(1, config.epochs + 1):
            bar.update(b_task, completed=0)
            t0 = time.perf_counter()
            epoch_loss = torch.zeros(len(ids))
            for start, stop in batches:
                E, _ = engine.embed("train", start, stop, train=True)
                diffuser.observe(range(start, stop), E)
                epoch_loss += engine.step(diffuser.contexts(E)) * (stop - start)
                bar.advance(b_task)
            if epoch % config.cluster_every == 0:
                diffuser.cluster(epoch)
            train_seconds += time.perf_counter() - t0
            ev = evaluate(engine, diffuser, config, n_test, ids)
            row = {
                "epoch": epoch,
                "train_loss": float(epoch_loss.mean() / n_train),
                "test_loss": ev["test_loss"],
                "context_accuracy": ev["context_accuracy"],
                "rank_score": ev["rank_score"],
                "subcontexts": ev["subcontexts"],
                "unclustered": ev["unclustered"],
                "train_seconds": train_seconds,
            }
            metrics.append(row)
            if log is not None:
                log(row)
            bar.update(ep_task, advance=1, info=f"acc {row['context_accuracy']:.3f} "
                                                 f"rank {row['rank_score']:.3f}")
    history = [{"epoch": c.epoch, "groups": _names(c.groups, ids),
                "scores": c.scores.round(6).tolist(), "ranks": c.ranks.round(6).tolist()}
               for c in diffuser.history]
    summary = {
        "subcontexts": ev["subcontexts"],
        "unclustered": ev["unclustered"],
        "context_accuracy": ev["context_accuracy"],
        "rank_score": ev["rank_score"],
        "spread": ev["spread"],
        "context_loss": {"train": metrics[-1]["train_loss"], "test": ev["test_loss"]},
        "epochs": config.epochs,
        "train_seconds": train_seconds,
        "seed": config.seed,
        "engine": config.engine,
        "agents": ids,
    }
    return OsmlResult(ids, summary, metrics, ev["embeddings"].numpy(), history)

