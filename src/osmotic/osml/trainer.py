"""An OSM-L run: agents in shards, a diffuser, epochs of lock-step batches, honest metrics.

Privacy (`OsmlConfig.privacy`). What an agent sends the diffuser, its embeddings of training
windows, is clipped to L2 norm `clip` per embedding vector (one agent, one window) and gets
Gaussian noise of standard deviation `noise_multiplier` × clip at the agent, before it leaves
(`sent`): the training batches' embeddings and those of every clustering alike. The agent's
own, un-noised embeddings still drive its alignment loss inside it; only what the diffuser
receives is privatised. The noise is drawn per agent from a generator seeded from the run's
seed, the epoch, the purpose (training or clustering), the batch's first window and the
agent's id, never from a running stream: the engine, the number of actors and an interruption
do not change it. Evaluation on the test split measures the simulation and is no release: it
is not noised.

Accounting: the protected unit is one time step of one agent's series (its value replaced
by another). Replacement, not addition or removal, because a series has a fixed length: a
neighbouring series differs in one step's value, every window keeps its place. A step lies in
`window` (w) windows, so it changes w embeddings of each pass over the windows; each is
clipped to norm `clip`, so under replacement it moves by at most 2 × clip (from one point of
the ball to another): each release is a Gaussian mechanism of sensitivity 2 × clip, that is
of noise multiplier `noise_multiplier` / 2 in units of its sensitivity. A pass over the
training windows releases every window once: once per epoch for training, once more in an
epoch that clusters. The budget is planned as `Release(sample_rate=1, steps=w,
sensitivity=2)` per pass and ε after epoch e is Opacus' figure for `passes(e)` passes (e plus
the number of clusterings up to e); `target_epsilon` is spent over the whole run's passes.
The encoder is taken as given at each release: it is trained on the agent's own series, so
through its weights a later embedding of any window depends a little on every step; that
route is not counted (counting it would put every training window, not w, in each pass).

Simulated time (`OsmlConfig.clock`, `aggregation`, `buffer`; docs/osml.md, "Asynchronous
agents"). The clock's unit of work is one batch of `batch_size` windows of one agent: agent a
takes duration_a = batch_size / speed_a + delay_a simulated seconds per batch (a shorter last
batch counts as a whole one). Every epoch starts for all agents at the same simulated time.
`sync`: the diffuser waits for every agent at every batch, so an epoch lasts batches ×
max_a duration_a. `buffered` with `buffer` B: agents do not wait for the diffuser's answer;
agent a's embedding of the epoch's k-th batch (k = 1, 2, ...) arrives k × duration_a after the
epoch's start, and the diffuser answers batch k at T_k, the B-th earliest of these arrivals
(ties arrive together: all of them count as arrived). An agent whose embedding arrives after
T_k is late for batch k: the answer at T_k used, in its place, the latest embedding of those
steps the diffuser holds (the agent's from the previous epoch; in the first epoch, before any
clustering, none: the one context all agents share is then the strategy's aggregate of the
arrived agents' embeddings alone). Every agent, late or not, aligns its batch to its row of
that answer: one that arrived by T_k receives it at T_k, a late one holds it by the time its
embedding arrives (the latest context of those steps it has received). The epoch
ends, on the clock, with the answer to its last batch (T_K): nobody waits for a late agent's
remaining batches, which the simulation still computes (their embeddings serve the next
epoch). Clustering passes and test evaluation are not on the clock. The computation stays
lock-step (every agent embeds and aligns every batch, in order); only which embeddings make
the contexts changes, so the engine (in process or Ray) changes the numbers no more than in a
synchronous run (Ray's batching of agents moves the last bits).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from osmotic.engines.inprocess import trim_heap
from osmotic.osml.config import OsmlConfig, check_async
from osmotic.osml.diffuser import Diffuser
from osmotic.osml.engine import InProcessEngine
from osmotic.osml.metrics import context_accuracy, rank_score, spread
from osmotic.osml.shard import OsmoticShard, objective
from osmotic.osml.sites import SiteDiffusers, check_sites, diffusers, uncounted
from osmotic.runtime.clock import ClockSettings, SimClock
from osmotic.runtime.lifecycle import Logger, check_finite
from osmotic.runtime.population import agent_seed
from osmotic.runtime.privacy import Budget, Mechanism, Release, warn_delta
from osmotic.runtime.session import Session
from osmotic.runtime.strategies import make_strategy

Series = dict[str, np.ndarray]
Sender = Callable[[torch.Tensor, int], torch.Tensor]
"""What a batch of embeddings [agents, windows, d] from a given window becomes on its way to
the diffuser."""


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
        from osmotic.osml.engine import RayEngine

        return RayEngine(list(train), build, actors=config.actors, address=config.ray_address,
                         threads=config.threads, restart=config.restart_failed)
    return build(list(train))()


def _batches(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _loose(diffuser: Diffuser | SiteDiffusers, ids: list[str]) -> list[str]:
    """Agents in no sub-context, sorted by id."""
    clustered = diffuser.clustered
    return sorted(a for i, a in enumerate(ids) if i not in clustered)


def _names(groups: list[list[int]], ids: list[str]) -> list[list[str]]:
    return [sorted(ids[i] for i in g) for g in groups]


def passes(epoch: int, cluster_every: int) -> int:
    """Passes over the training windows that released embeddings by the end of `epoch`: one
    per epoch, one more per clustering (epochs that are multiples of `cluster_every`)."""
    return epoch + epoch // cluster_every


def privacy_budget(config: OsmlConfig) -> Budget | None:
    """The run's privacy plan (None without a privacy block): `window` releases of
    sensitivity 2 × clip per pass, a `target_epsilon` spread over all the run's passes."""
    if config.privacy is None:
        return None
    return Budget.plan(config.privacy, Release(sample_rate=1.0, steps=config.window,
                                               sensitivity=2.0),
                       passes(config.epochs, config.cluster_every))


def sent(mechanism: Mechanism, E: torch.Tensor, ids: Sequence[str], seed: int, epoch: int,
         purpose: str, start: int) -> torch.Tensor:
    """What agents `ids` send the diffuser for embeddings E [agents, windows, d] of the
    windows from `start`: each vector clipped to norm `clip`, plus the agent's own Gaussian
    noise, drawn from a generator seeded by (`seed`, agent, `purpose`, `epoch`, `start`)."""
    n, b, d = E.shape
    out = mechanism.clipped(E.detach().reshape(n * b, d)).reshape(n, b, d)
    if mechanism.std == 0:
        return out
    noise = []
    stream = f"privacy:{purpose}:{epoch}:{start}"
    for a in ids:
        g = torch.Generator().manual_seed(agent_seed(seed, a, stream))
        noise.append(mechanism.noise((b, d), g, out.dtype))
    return out + torch.stack(noise)


def batch_durations(config: OsmlConfig, ids: Sequence[str]) -> list[float]:
    """Each agent's simulated seconds for one batch: batch_size / speed + delay (speeds and
    delays from the `clock:` block; without one, speed 1 and no delay)."""
    clock = SimClock(config.clock or ClockSettings(), dict.fromkeys(ids, config.batch_size), 1,
                     config.seed)
    return [clock.duration(a) for a in ids]


def answered(durations: Sequence[float], batch: int, buffer: int) -> tuple[float, list[int]]:
    """When the diffuser answers an epoch's `batch`-th batch (1-based; seconds from the
    epoch's start) and which agents are late for it: agent a's embedding arrives at batch ×
    duration_a, the answer comes with the `buffer`-th arrival, and those arriving after it are
    late (ties arrive together)."""
    arrival = [batch * d for d in durations]
    at = sorted(arrival)[buffer - 1]
    return at, [i for i, t in enumerate(arrival) if t > at]


def embed_all(engine: Any, split: str, n_steps: int, batch_size: int,
              send: Sender | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every step's embeddings [agents, steps, d] under the current models, and each agent's
    preservation loss averaged over the steps [agents]; no training. Each batch is written
    into its place (a list of batches and their concatenation held the embeddings twice).
    `send(e, start)`: what becomes of each batch's embeddings on the way (privacy)."""
    E: torch.Tensor | None = None
    Ps = []
    for start, stop in _batches(n_steps, batch_size):
        e, P = engine.embed(split, start, stop)
        if send is not None:
            e = send(e, start)
        if E is None:
            E = e.new_empty(e.shape[0], n_steps, e.shape[2])
        E[:, start:stop] = e
        Ps.append(P * (stop - start))
    assert E is not None, "embed_all needs at least one step"
    return E, torch.stack(Ps).sum(0) / n_steps


def evaluate(engine: Any, diffuser: Diffuser | SiteDiffusers, config: OsmlConfig, n_steps: int, ids: list[str]) -> dict[str, Any]:
    """Test metrics under the diffuser's current sub-contexts, plus the test embeddings.

    A measurement of the simulation, not something agents send: the test embeddings are
    neither clipped nor noised, whatever `config.privacy` says."""
    E, P = embed_all(engine, "test", n_steps, config.batch_size)
    with uncounted(diffuser):
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


def train_osml(config: OsmlConfig, train: Series, test: Series, *,
               session: Session | None = None, log: Logger | Sequence[Logger] | None = None,
               progress: bool | None = None) -> OsmlResult:
    """Train OSM-L on `train`, evaluating on `test` after every epoch.

    In a `session` with a run directory, each epoch's metrics are appended to its
    `metrics.jsonl` and a checkpoint is written every `checkpoint_every` epochs (default 1); a
    resumed session continues from that checkpoint and ends with the numbers the uninterrupted
    run would have produced. Without one nothing is written. `log(row)` (one callable or
    several) also receives every epoch's row.
    """
    if config.agents is not None:
        train = {a: train[a] for a in config.agents}
        test = {a: test[a] for a in config.agents}
    check_async(config, list(train))
    if config.sites is not None:  # before the run folder is claimed: one line, nothing written
        check_sites(config, list(train))
    return (session or Session(config)).train(
        lambda: make_engine(config, train, test),
        lambda engine: OsmlJob(config, engine, train, test), total=config.epochs,
        unit="epoch", label="epochs", checkpoint_every=config.checkpoint_every or 1,
        finish=lambda job, rows: job.result(rows), log=log, progress=progress,
        work=len(train) * config.batch_size * 3 * config.hidden)


class OsmlJob:
    """One OSM-L epoch at a time (a `runtime.lifecycle.Job`): engine, diffuser, timers."""

    def __init__(self, config: OsmlConfig, engine: Any, train: Series, test: Series):
        self.config, self.engine = config, engine
        self.ids = list(train)
        self.diffuser = diffusers(config, self.ids, lambda n: Diffuser(
            n, make_strategy(config.strategy, **config.strategy_params),
            unclustered=config.unclustered, threshold=config.threshold, beta=config.beta,
            samples=config.cluster_samples, min_rank=config.min_rank,
            stay_rank=config.stay_rank, join_score=config.join_score, seed=config.seed,
            candidates_above=config.candidates_above, neighbours=config.neighbours,
            null_alpha=config.null_alpha, null_above=config.null_above,
            null_samples=config.null_samples))
        self.n_train = next(iter(train.values())).shape[0] - config.window + 1
        self.n_test = next(iter(test.values())).shape[0] - config.window + 1
        self.batches = _batches(self.n_train, config.batch_size)
        self.train_seconds = self.train_cpu_seconds = 0.0
        self.last_eval: dict[str, Any] | None = None
        self._batch_task: Any = None
        self.budget = privacy_budget(config)
        if self.budget is not None and self.budget.noise_multiplier > 0:
            warn_delta(self.budget.settings.delta, self.n_train + config.window - 1,
                       "time steps")
        # Simulated time (module docstring): per-agent batch durations, the simulated seconds
        # so far, and under `buffered` the latest embeddings the diffuser holds of every
        # training step [agents, steps, d] (None until an epoch has sent them all).
        self.timed, self.buffered = config.clock is not None, config.aggregation == "buffered"
        self.durations: list[float] = []
        if self.timed or self.buffered:  # checked against the agents by `train_osml`
            self.durations = batch_durations(config, self.ids)
        self.buffer = config.buffer or len(self.ids)
        self.sim_time = 0.0
        self.held: torch.Tensor | None = None

    def _sender(self, epoch: int, purpose: str) -> Sender | None:
        """What the agents' embeddings go through on their way to the diffuser (None: nothing)."""
        if self.budget is None or self.budget.settings.identity:
            return None
        mechanism, seed = self.budget.mechanism, self.config.seed
        return lambda E, start: sent(mechanism, E, self.ids, seed, epoch, purpose, start)

    def state(self) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
        tensors, rest = self.diffuser.state()
        groups = {"agent": self.engine.state(), "diffuser": tensors}
        meta = {"diffuser": rest, "train_seconds": self.train_seconds,
                "train_cpu_seconds": self.train_cpu_seconds}
        if self.timed or self.buffered:
            meta["sim_time"] = self.sim_time
        if self.held is not None:
            groups["async"] = {"held": self.held.clone()}
        return groups, meta

    def load_state(self, groups: dict[str, dict[str, torch.Tensor]], meta: dict[str, Any]) -> None:
        self.engine.load_state(groups.get("agent", {}))
        self.diffuser.load_state(groups.get("diffuser", {}), meta["diffuser"])
        self.train_seconds, self.train_cpu_seconds = meta["train_seconds"], meta["train_cpu_seconds"]
        self.sim_time = float(meta.get("sim_time", 0.0))
        held = groups.get("async", {}).get("held")
        self.held = None if held is None else held.clone()

    def status(self, row: dict[str, Any]) -> str:
        if row["context_accuracy"] is None:
            return ""
        eps = f" ε {row['epsilon']:.3g}" if row.get("epsilon") is not None else ""
        return f"acc {row['context_accuracy']:.3f} rank {row['rank_score']:.3f}{eps}"

    def step(self, epoch: int, bar: Any) -> dict[str, Any]:
        if self._batch_task is None:
            self._batch_task = bar.add_task("batches", total=len(self.batches), info="")
        bar.update(self._batch_task, completed=0)
        t0, c0 = time.perf_counter(), time.process_time()
        loss = torch.zeros(len(self.ids))
        send = self._sender(epoch, "train")
        late = 0  # late agent-batches (buffered)
        previous = self.held is not None  # the diffuser holds an earlier epoch's embeddings
        if self.buffered and not previous:
            self.held = torch.zeros(len(self.ids), self.n_train, self.config.dim)
        for k, (start, stop) in enumerate(self.batches, 1):
            E, _ = self.engine.embed("train", start, stop, train=True)
            received = E if send is None else send(E, start)
            if self.buffered:
                C, n_late = self._buffered_contexts(k, start, stop, received, previous)
                late += n_late
            else:
                C = self.diffuser.contexts(received)
            loss += self.engine.step(C) * (stop - start)
            bar.advance(self._batch_task)
        check_finite(loss.tolist(), self.ids)
        if self.timed or self.buffered:
            self.sim_time += answered(self.durations, len(self.batches),
                                      self.buffer if self.buffered else len(self.ids))[0]
        trim_heap()  # evaluation and clustering: not on top of what training keeps
        cluster_seconds = 0.0  # of the training seconds: embedding the windows and grouping
        if epoch % self.config.cluster_every == 0:
            k0 = time.perf_counter()
            E, _ = embed_all(self.engine, "train", self.n_train, self.config.batch_size,
                             self._sender(epoch, "cluster"))
            self.diffuser.cluster(epoch, E)
            cluster_seconds = time.perf_counter() - k0
        self.train_seconds += time.perf_counter() - t0
        self.train_cpu_seconds += time.process_time() - c0
        row = {"epoch": epoch, "train_loss": float(loss.mean() / self.n_train),
               "test_loss": None, "context_accuracy": None, "rank_score": None,
               "subcontexts": [{"agents": names, "context_accuracy": None, "rank_score": None}
                               for names in _names(self.diffuser.groups, self.ids)],
               "unclustered": _loose(self.diffuser, self.ids),
               "train_seconds": self.train_seconds, "cluster_seconds": cluster_seconds}
        if self.budget is not None:
            row["epsilon"] = self.budget.epsilon(passes(epoch, self.config.cluster_every))
        if self.timed:
            row["sim_time"] = self.sim_time
        if self.buffered:
            row["late_share"] = late / (len(self.ids) * len(self.batches))
        if isinstance(self.diffuser, SiteDiffusers):
            row["bytes"] = self.diffuser.traffic.summary()
        if epoch % self.config.eval_every == 0 or epoch == self.config.epochs:
            ev = self.last_eval = evaluate(self.engine, self.diffuser, self.config, self.n_test,
                                           self.ids)
            row.update({k: ev[k] for k in ("test_loss", "context_accuracy", "rank_score",
                                           "subcontexts", "unclustered")})
        return row

    def _buffered_contexts(self, k: int, start: int, stop: int, received: torch.Tensor,
                           previous: bool) -> tuple[torch.Tensor, int]:
        """The diffuser's answer to the epoch's k-th batch (steps [start, stop)) under buffered
        aggregation, and how many agents are late for it (module docstring): the late agents'
        embeddings replaced by the latest the diffuser holds of those steps (`previous`: it
        holds an earlier epoch's), or else left out. What every agent sent is then held."""
        assert self.held is not None, "allocated at the epoch's start"
        _, late = answered(self.durations, k, self.buffer)
        if not late:
            C = self.diffuser.contexts(received)
        elif previous:
            used = received.clone()
            used[late] = self.held[late, start:stop]
            C = self.diffuser.contexts(used)
        else:
            C = self._arrived_only(received, late)
        self.held[:, start:stop] = received.detach()
        return C, len(late)

    def _arrived_only(self, received: torch.Tensor, late: list[int]) -> torch.Tensor:
        """The first epoch's answer without the late agents' embeddings: before the first
        clustering all agents share one context, here the strategy's aggregate of the arrived
        agents' embeddings."""
        if self.diffuser.history or self.diffuser.trial \
                or self.diffuser.groups != [list(range(len(self.ids)))]:
            raise RuntimeError("buffered OSM-L holds no earlier embeddings after a clustering")
        gone = set(late)
        arrived = [i for i in range(len(self.ids)) if i not in gone]
        C = torch.empty_like(received)
        C[:] = self.diffuser.strategy.aggregate(received.detach()[arrived])
        return C

    def result(self, metrics: list[dict[str, Any]]) -> OsmlResult:
        ev = self.last_eval
        if ev is None:  # resumed a finished run: nothing trained here
            ev = evaluate(self.engine, self.diffuser, self.config, self.n_test, self.ids)
        ids = self.ids
        history = [c.as_record(ids) for c in self.diffuser.history]
        summary = {
            "subcontexts": ev["subcontexts"],
            "unclustered": ev["unclustered"],
            "context_accuracy": ev["context_accuracy"],
            "rank_score": ev["rank_score"],
            "spread": ev["spread"],
            "context_loss": {"train": metrics[-1]["train_loss"], "test": ev["test_loss"]},
            "epochs": self.config.epochs,
            "train_seconds": self.train_seconds,
            "train_cpu_seconds": self.train_cpu_seconds,
            "seed": self.config.seed,
            "engine": self.config.engine,
            "agents": ids,
        }
        if self.timed:
            summary["sim_time"] = self.sim_time
        if self.buffered:
            shares = [r["late_share"] for r in metrics if "late_share" in r]
            summary["late_share"] = float(np.mean(shares)) if shares else None
        if isinstance(self.diffuser, SiteDiffusers):
            summary["bytes"] = self.diffuser.traffic.summary()
        if self.budget is not None:
            n = passes(self.config.epochs, self.config.cluster_every)
            summary["privacy"] = {**self.budget.summary(n), "passes": n, "unit": "time step"}
        return OsmlResult(ids, summary, metrics, ev["embeddings"].numpy(), history)
