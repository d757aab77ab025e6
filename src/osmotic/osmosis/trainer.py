"""An OSM-L run: agents in shards, a diffuser, epochs of lock-step batches, honest metrics."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from osmotic.engines import AgentsLost, stop_or_rewind
from osmotic.engines.inprocess import InProcessEngine, cpu_threads
from osmotic.osmosis.config import OsmlConfig
from osmotic.osmosis.diffuser import Diffuser
from osmotic.osmosis.metrics import context_accuracy, rank_score, spread
from osmotic.osmosis.shard import OsmoticShard, objective
from osmotic.report.progress import progress
from osmotic.report.rundir import RunDir
from osmotic.runtime.checkpoint import load_checkpoint, save_checkpoint
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
                         threads=config.threads, restart=config.restart_failed)
    return build(list(train))()


def _batches(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _loose(diffuser: Diffuser, ids: list[str]) -> list[str]:
    """Agents in no sub-context, sorted by id."""
    clustered = diffuser.clustered
    return sorted(a for i, a in enumerate(ids) if i not in clustered)


def _names(groups: list[list[int]], ids: list[str]) -> list[list[str]]:
    return [sorted(ids[i] for i in g) for g in groups]


def embed_all(engine: Any, split: str, n_steps: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every step's embeddings [agents, steps, d] under the current models, and each agent's
    preservation loss averaged over the steps [agents]; no training."""
    Es, Ps = [], []
    for start, stop in _batches(n_steps, batch_size):
        E, P = engine.embed(split, start, stop)
        Es.append(E)
        Ps.append(P * (stop - start))
    return torch.cat(Es, dim=1), torch.stack(Ps).sum(0) / n_steps


def evaluate(engine: Any, diffuser: Diffuser, config: OsmlConfig, n_steps: int, ids: list[str]) -> dict[str, Any]:
    """Test metrics under the diffuser's current sub-contexts, plus the test embeddings."""
    E, P = embed_all(engine, "test", n_steps, config.batch_size)
    test_loss = objective(E, P, diffuser.contexts(E), config.alpha)
    groups = diffuser.groups or [list(range(len(ids)))]  # no sub-context: score all agents
    acc = context_accuracy(E, groups, config.beta)
    rank = rank_score(E, groups, config.rank_pairs, config.seed)
    found = groups if diffuser.groups else []
    return {
        "embeddings": E,
        "test_loss": float(test_loss.mean()),
        "context_accuracy": float(np.nanmean(acc)),
        "rank_score": float(np.nanmean(rank)),
        "subcontexts": [{"agents": names, "context_accuracy": a, "rank_score": r}
                        for names, a, r in zip(_names(found, ids), acc, rank)],
        "unclustered": _loose(diffuser, ids),
        "spread": dict(zip(ids, spread(E).tolist())),
    }


def train_osml(config: OsmlConfig, train: Series, test: Series, *, run_dir: RunDir | None = None,
               resume: bool = False, log: Any = None,
               show_progress: bool | None = None) -> OsmlResult:
    """Train OSM-L on `train`, evaluating on `test` after every epoch.

    With `run_dir`, each epoch's metrics are appended to its `metrics.jsonl` and a checkpoint
    (`checkpoint.safetensors`) is written every `checkpoint_every` epochs; `resume` continues
    from that checkpoint and ends with the numbers the uninterrupted run would have produced.
    `log(row)` also receives every epoch's row.
    """
    if config.agents is not None:
        train = {a: train[a] for a in config.agents}
        test = {a: test[a] for a in config.agents}
    with cpu_threads(config.threads):
        torch.manual_seed(config.seed)
        engine = make_engine(config, train, test)
        try:
            return _Run(config, engine, train, test, run_dir, log).train(resume, show_progress)
        finally:
            if hasattr(engine, "shutdown"):
                engine.shutdown()


class _Run:
    """The state of one training run: engine, diffuser, metrics so far."""

    def __init__(self, config: OsmlConfig, engine: Any, train: Series, test: Series,
                 run_dir: RunDir | None, log: Any):
        self.config, self.engine, self.run_dir, self.log = config, engine, run_dir, log
        self.ids = list(train)
        self.diffuser = Diffuser(len(self.ids), make_strategy(config.strategy, **config.strategy_params),
                                 unclustered=config.unclustered, threshold=config.threshold,
                                 beta=config.beta, samples=config.cluster_samples,
                                 min_rank=config.min_rank, seed=config.seed)
        self.n_train = next(iter(train.values())).shape[0] - config.window + 1
        self.n_test = next(iter(test.values())).shape[0] - config.window + 1
        self.batches = _batches(self.n_train, config.batch_size)
        self.metrics: list[dict[str, Any]] = []
        self.train_seconds = self.train_cpu_seconds = 0.0
        self.epoch = 0
        self.last_eval: dict[str, Any] | None = None

    @property
    def checkpoint(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir.file("checkpoint.safetensors")

    def save(self) -> None:
        tensors, rest = self.diffuser.state()
        save_checkpoint(self.checkpoint, {"agent": self.engine.state(), "diffuser": tensors},
                        {"epoch": self.epoch, "metrics": self.metrics, "diffuser": rest,
                         "train_seconds": self.train_seconds,
                         "train_cpu_seconds": self.train_cpu_seconds})

    def restore(self) -> None:
        groups, meta = load_checkpoint(self.checkpoint)
        self.engine.load_state(groups.get("agent", {}))
        self.diffuser.load_state(groups.get("diffuser", {}), meta["diffuser"])
        self.epoch, self.metrics = meta["epoch"], meta["metrics"]
        self.train_seconds, self.train_cpu_seconds = meta["train_seconds"], meta["train_cpu_seconds"]
        self.run_dir.rewrite_metrics(self.metrics)

    def train(self, resume: bool, show_progress: bool | None) -> OsmlResult:
        if resume:
            self.restore()
        elif self.checkpoint is not None:
            self.run_dir.rewrite_metrics([])
            self.save()  # epoch 0: a lost actor in the first epoch can restart from here
        with progress(show_progress) as bar:
            ep_task = bar.add_task("epochs", total=self.config.epochs, completed=self.epoch, info="")
            b_task = bar.add_task("batches", total=len(self.batches), info="")
            while self.epoch < self.config.epochs:
                try:
                    row = self.one_epoch(bar, b_task)
                except AgentsLost as lost:
                    self.recover(lost)
                    bar.update(ep_task, completed=self.epoch)
                    continue
                if row["context_accuracy"] is not None:
                    bar.update(ep_task, info=f"acc {row['context_accuracy']:.3f} "
                                             f"rank {row['rank_score']:.3f}")
                bar.update(ep_task, completed=self.epoch)
        if self.last_eval is None:  # resumed a finished run: nothing trained here
            self.last_eval = evaluate(self.engine, self.diffuser, self.config, self.n_test, self.ids)
        return self.result(self.last_eval)

    def one_epoch(self, bar: Any, b_task: Any) -> dict[str, Any]:
        bar.update(b_task, completed=0)
        t0, c0 = time.perf_counter(), time.process_time()
        loss = torch.zeros(len(self.ids))
        for start, stop in self.batches:
            E, _ = self.engine.embed("train", start, stop, train=True)
            loss += self.engine.step(self.diffuser.contexts(E)) * (stop - start)
            bar.advance(b_task)
        self.epoch += 1
        if self.epoch % self.config.cluster_every == 0:
            E, _ = embed_all(self.engine, "train", self.n_train, self.config.batch_size)
            self.diffuser.cluster(self.epoch, E)
        self.train_seconds += time.perf_counter() - t0
        self.train_cpu_seconds += time.process_time() - c0
        row = {"epoch": self.epoch, "train_loss": float(loss.mean() / self.n_train),
               "test_loss": None, "context_accuracy": None, "rank_score": None,
               "subcontexts": [{"agents": names, "context_accuracy": None, "rank_score": None}
                               for names in _names(self.diffuser.groups, self.ids)],
               "unclustered": _loose(self.diffuser, self.ids),
               "train_seconds": self.train_seconds}
        if self.epoch % self.config.eval_every == 0 or self.epoch == self.config.epochs:
            ev = self.last_eval = evaluate(self.engine, self.diffuser, self.config, self.n_test,
                                           self.ids)
            row.update({k: ev[k] for k in ("test_loss", "context_accuracy", "rank_score",
                                           "subcontexts", "unclustered")})
        self.metrics.append(row)
        if self.run_dir is not None:
            self.run_dir.log_metrics(row)
            if self.epoch % self.config.checkpoint_every == 0 or self.epoch == self.config.epochs:
                self.save()
        if self.log is not None:
            self.log(row)
        return row

    def recover(self, lost: AgentsLost) -> None:
        stop_or_rewind(lost, restart=self.config.restart_failed, checkpoint=self.checkpoint,
                       unit="epoch", engine=self.engine, restore=self.restore)

    def result(self, ev: dict[str, Any]) -> OsmlResult:
        ids = self.ids
        history = [{"epoch": c.epoch, "groups": _names(c.groups, ids),
                    "scores": np.round(c.scores, 6).tolist(), "ranks": np.round(c.ranks, 6).tolist()}
                   for c in self.diffuser.history]
        summary = {
            "subcontexts": ev["subcontexts"],
            "unclustered": ev["unclustered"],
            "context_accuracy": ev["context_accuracy"],
            "rank_score": ev["rank_score"],
            "spread": ev["spread"],
            "context_loss": {"train": self.metrics[-1]["train_loss"], "test": ev["test_loss"]},
            "epochs": self.config.epochs,
            "train_seconds": self.train_seconds,
            "train_cpu_seconds": self.train_cpu_seconds,
            "seed": self.config.seed,
            "engine": self.config.engine,
            "agents": ids,
        }
        return OsmlResult(ids, summary, self.metrics, ev["embeddings"].numpy(), history)

