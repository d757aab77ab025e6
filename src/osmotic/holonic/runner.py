"""One holonic run: data, partition, batched terminals, the HoAL schedule, metrics and files.

Run directory (shared layout): `config.yaml` (resolved settings and holarchy), `metrics.jsonl`
(one line per round), `summary.json`, `partition.json`, `traffic.json` (messages per holon),
`models/terminals.safetensors` and `models/holons.safetensors`, `plots/*.png`, and
`checkpoint.safetensors` (the state after the last checkpointed round, for `osmotic resume`).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from osmotic.data import partition as partitions
from osmotic.data.datasets import load_dataset
from osmotic.data.splits import Dataset
from osmotic.holarchy.asynchronous import (
    BufferedRounds,
    ClockedRounds,
    LayeredRounds,
    asynchronous_rounds,
)
from osmotic.holarchy.draw import draw_holarchy
from osmotic.holarchy.holarchy import Holarchy
from osmotic.holarchy.privacy import dp_sgd, plan_privacy
from osmotic.holarchy.schedule import Participation, SyncSchedule
from osmotic.holarchy.terminals import SampledTerminals, make_terminals
from osmotic.holarchy.trainer import Evaluator
from osmotic.holonic.config import HolonicConfig
from osmotic.holonic.plots import plot_curves
from osmotic.models import make_model
from osmotic.report import RunDir
from osmotic.report.rundir import write_json
from osmotic.runtime.lifecycle import Logger, check_finite
from osmotic.runtime.modelcheck import check_batched
from osmotic.runtime.population import agent_seed
from osmotic.runtime.session import Session, recorded_settings


def load_data(config: HolonicConfig) -> Dataset:
    """The pool and test set a config asks for (shared by the runs of a grid): `data` and
    `test`, by default MNIST (`mnist_dir`), cut to `pool_size` samples if that is set."""
    data = load_dataset(config.data or "mnist", config.test, holdout=config.holdout,
                        seed=config.seed, mnist_dir=config.mnist_dir)
    return data if config.pool_size is None else data.pool_subset(config.pool_size, config.seed)


def model_builder(config: HolonicConfig, data: Dataset) -> Callable[[], nn.Module]:
    """The terminals' model for `data` (input shape and classes from the data), after a
    one-time check that it classifies the data and runs batched over agents."""
    name = config.model_name(data.input_shape)
    build = partial(make_model, name, **config.model_kwargs(data.input_shape, data.classes))
    check_batched(build, data.train.images[: min(4, len(data.train))], data.classes, name)
    return build


def run(config: HolonicConfig, out: str | Path, data: Dataset | None = None,
        progress: bool | None = None, *, resume: bool = False,
        log: Logger | Sequence[Logger] | None = None, in_memory: bool = False
        ) -> dict[str, Any]:
    """Train for `config.rounds` rounds; returns the summary (also written to summary.json).

    `data` replaces the data the config names: the same data loaded once (a grid), or, with
    `in_memory`, data the config does not name (the Python API's arrays), which `osmotic
    resume` then refuses to guess.
    A checkpoint is written at round 0 and every `checkpoint_every` (default K) rounds;
    `resume` continues the run in `out` from it and ends with the uninterrupted run's numbers.
    `log(row)` receives every round's metrics row (and `config.log` adds TensorBoard).
    """
    holarchy = config.build_holarchy()
    data = data if data is not None else load_data(config)
    terminals = holarchy.terminals()
    data.require(len(terminals))
    build = model_builder(config, data)
    labels = data.train.labels.numpy()
    parts = partitions.partition(labels, len(terminals), config.distribution, config.seed,
                                 config.alpha)
    participation = Participation(holarchy, config.participation, config.dropout_rate,
                                  config.seed)
    privacy = plan_privacy(config.privacy, holarchy, participation, parts, config.rounds,
                           batch_size=config.batch_size, epochs=config.local_epochs,
                           seed=config.seed, buffered=config.aggregation == "buffered")
    session = Session.open(config, out, resume=resume, record={
        "resolved_holarchy": holarchy.to_dict(), "data_source": data.source,
        "data_in_memory": in_memory})
    if session.finished is not None:
        return session.finished.summary
    rd = session.dir
    if not resume:
        drawn = len(terminals) <= DRAWN_TERMINALS
        partitions.record(labels, parts, terminals, rd.path, rd.plots if drawn else None,
                          f"{config.distribution}: samples per class per terminal")
        if drawn:
            draw_holarchy(holarchy, rd.plots / "holarchy.png", config.name)

    schedule = SyncSchedule.starting(holarchy, build, parts, config.seed, config.budget,
                                     privacy)
    evaluator = Evaluator(build(), data.test.images, data.test.labels)

    def finish(job: HolonicJob, rows: list[dict[str, Any]]) -> HolonicJob:
        _save_models(rd, job)
        return job

    rounds = session.train(
        lambda: make_terminals(config, terminals, schedule.init, data.train, parts,
                               model=build, sampled=samples_terminals(config),
                               **dp_sgd(privacy)),
        lambda engine: make_job(config, holarchy, engine, schedule, evaluator, participation,
                                parts),
        total=config.rounds, unit="round", label=f"holonic {config.name}/{config.distribution}",
        checkpoint_every=config.checkpoint_every or config.budget, finish=finish, log=log,
        progress=progress, work=step_work(build, data.train.images[:1],
                                          participation.per_round * config.batch_size))
    write_json(rd.file("traffic.json"), schedule.traffic.per_holon())
    history = rd.read_metrics()
    row = history[-1]
    plot_curves(history, rd.plots / "curves.png", f"{config.name} / {config.distribution}")
    summary = {"structure": config.name, "distribution": config.distribution,
               "rounds": config.rounds, "mean_test_accuracy": row["mean_test_accuracy"],
               "mean_train_loss": row["mean_train_loss"],
               "root_test_accuracy": row["root_test_accuracy"],
               "messages": row["messages"], "bytes": row["bytes"],
               "rounds_to_90": rounds_to(history, 0.9),
               "train_seconds": round(rounds.train_seconds, 2),
               "eval_seconds": round(rounds.eval_seconds, 2),
               "model": config.model_name(data.input_shape),
               "input_shape": list(data.input_shape), "classes": data.classes,
               "seed": config.seed, "engine": config.engine, "run_dir": str(rd.path)}
    if config.eval_terminals is not None:
        summary["mean_test_accuracy_se"] = row["mean_test_accuracy_se"]
    if privacy is not None:
        summary["privacy"] = privacy.summary(config.rounds)
    return session.finish(summary).summary


DRAWN_TERMINALS = 100
"""Above this many terminals a run draws neither its holarchy nor its partition: nothing in
such a picture is readable, and matplotlib takes seconds per thousand terminals."""


def step_work(build: Callable[[], nn.Module], sample: Tensor, rows: int) -> int:
    """Elements of a training step's largest activation when `rows` samples go through the
    model at once (terminals per round x batch): the largest output of any of its layers on
    one `sample`, times `rows`. It decides `threads: 0` (`engines.inprocess.auto_threads`):
    a hundred small MLPs step faster on one thread than on two, and far faster on a busy
    machine."""
    sizes: list[int] = []
    module = build()
    hooks = [m.register_forward_hook(
        lambda _m, _i, out: sizes.append(out.numel()) if isinstance(out, Tensor) else None)
        for m in module.modules()]
    with torch.no_grad():
        module(sample)
    for h in hooks:
        h.remove()
    return rows * max(sizes)


def samples_terminals(config: HolonicConfig) -> bool:
    """Whether the run's terminals train as `SampledTerminals` (a model only while sampled):
    synchronous rounds that sample a share of the terminals, in this process."""
    return config.participation < 1 and config.aggregation == "sync" \
        and config.engine == "inprocess"


def resume(out: str | Path, progress: bool | None = None, force: bool = False
           ) -> dict[str, Any]:
    """Continue the run in `out` from its last checkpoint, with its own settings and data
    (`force`: even if its config.yaml was edited since)."""
    return run(recorded_settings(HolonicConfig, out, force), out, progress=progress,
               resume=True)


class HolonicJob:
    """One HoAL round at a time (a `runtime.lifecycle.Job`): terminals (in the engine), the
    schedule, the evaluator and timers."""

    def __init__(self, config: HolonicConfig, holarchy: Holarchy, engine: Any,
                 schedule: SyncSchedule, evaluator: Evaluator, participation: Participation):
        self.config, self.holarchy, self.engine = config, holarchy, engine
        self.schedule, self.evaluator, self.participation = schedule, evaluator, participation
        self.terminals = holarchy.terminals()
        root = holarchy.holons[holarchy.root]
        self.root_aggregates = root.aggregates and not root.terminal  # a lone terminal: no head
        self.train_seconds = self.eval_seconds = 0.0
        self.sampled = isinstance(engine, SampledTerminals)
        self.evaluated = evaluated_terminals(self.terminals, config.eval_terminals, config.seed)

    def state(self) -> tuple[dict[str, dict[str, Tensor]], dict[str, Any]]:
        tensors, rest = self.schedule.state()
        return ({"terminal": self.engine.state(), "schedule": tensors},
                {"schedule": rest, "train_seconds": self.train_seconds,
                 "eval_seconds": self.eval_seconds})

    def load_state(self, groups: dict[str, dict[str, Tensor]], meta: dict[str, Any]) -> None:
        self.engine.load_state(groups.get("terminal", {}))
        self.schedule.load_state(groups.get("schedule", {}), meta["schedule"])
        self.train_seconds, self.eval_seconds = meta["train_seconds"], meta["eval_seconds"]

    def status(self, row: dict[str, Any]) -> str:
        acc = row["mean_test_accuracy"]
        return "" if acc is None else f"acc {acc:.3f}"

    def step(self, round_: int, bar: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        trained, reported = self.participation.draw(round_)
        losses, models = self._round(trained, reported)
        t1 = time.perf_counter()
        self.train_seconds += t1 - t0
        row = {"round": round_, "mean_train_loss": mean_loss(losses),
               "mean_test_accuracy": None, "root_test_accuracy": None,
               "trained": len(trained), "reported": len(reported),
               **self.schedule.traffic.totals(), "train_loss": losses}
        if self.schedule.privacy is not None:
            row["epsilon"] = self.schedule.privacy.epsilon(round_)
        if round_ % self.config.eval_every == 0 or round_ == self.config.rounds:
            row.update(self.evaluate(models))
            self.eval_seconds += time.perf_counter() - t1
        return row

    def _round(self, trained: list[str], reported: list[str]
               ) -> tuple[dict[str, float], Tensor | None]:
        """Local training of the terminals drawn and the round's exchange; returns their losses
        and, unless terminals are sampled (they keep what they received), every terminal's
        model [terminals, P]."""
        if self.sampled:
            loss, flat = self.engine.train(self.config.local_epochs, trained)
            check_finite(loss.tolist(), trained, None, flat)
            self.engine.receive(self.schedule.exchange(
                dict(zip(trained, torch.from_numpy(flat), strict=True)), reported))
            return dict(zip(trained, loss.tolist(), strict=True)), None
        everyone = self.participation.everyone
        loss, flat = self.engine.train(self.config.local_epochs, None if everyone else trained)
        check_finite(loss.tolist(), self.terminals, trained, flat)
        models = self.schedule.step(torch.from_numpy(flat), None if everyone else reported,
                                    None if everyone else trained)
        self.engine.load_flat(models.numpy())
        return trained_losses(self.terminals, loss), models

    def evaluate(self, models: Tensor | None) -> dict[str, Any]:
        """Test accuracy of every terminal, or of the seeded sample `eval_terminals` with the
        standard error of its mean, and of the root's model, if it has a head. `models`: every
        terminal's [terminals, P] (None: the sampled terminals' own)."""
        ids = self.evaluated
        if models is None:
            distinct, index = self.engine.models(ids)
        else:
            position = {t: i for i, t in enumerate(self.terminals)}
            distinct, index = models, torch.tensor([position[t] for t in ids])
        if self.root_aggregates:
            distinct = torch.cat([distinct, self.schedule.models[self.holarchy.root][None]])
        acc = self.evaluator.accuracy(distinct)
        ours = acc[index]
        row = {"mean_test_accuracy": float(ours.mean()),
               "root_test_accuracy": float(acc[-1]) if self.root_aggregates else None,
               "test_accuracy": dict(zip(ids, ours.tolist(), strict=True))}
        if self.config.eval_terminals is not None:
            row["mean_test_accuracy_se"] = standard_error(ours, len(self.terminals))
        return row


def trained_losses(ids: Sequence[str], loss: np.ndarray) -> dict[str, float]:
    """Each terminal's mean loss, for those that trained (NaN: the others): a row lists only
    them, so its size follows the terminals drawn, not the population."""
    return {t: v for t, v in zip(ids, loss.tolist(), strict=True) if not math.isnan(v)}


def mean_loss(losses: dict[str, float]) -> float:
    """The row's `mean_train_loss`: the mean of the losses of the terminals that trained."""
    return float(np.mean(list(losses.values())))


def evaluated_terminals(terminals: list[str], sample: int | None, seed: int) -> list[str]:
    """The terminals a run tests: all of them, or a seeded sample of `sample` (the same every
    round, so the curve follows the same terminals), in holarchy order."""
    if sample is None:
        return terminals
    rng = np.random.default_rng(agent_seed(seed, "eval_terminals"))
    return [terminals[i] for i in sorted(rng.choice(len(terminals), sample, replace=False))]


def standard_error(values: Tensor, population: int) -> float:
    """Standard error of the mean of `values`, a simple random sample without replacement of
    a finite `population`: s / sqrt(n) times the finite-population correction
    sqrt((N - n) / (N - 1)), 0 when the sample is the population."""
    n = len(values)
    if n < 2 or n == population:
        return 0.0
    s = float(values.double().std())
    return s / math.sqrt(n) * math.sqrt((population - n) / (population - 1))


def make_job(config: HolonicConfig, holarchy: Holarchy, engine: Any, schedule: SyncSchedule,
             evaluator: Evaluator, participation: Participation, parts: Sequence[np.ndarray]
             ) -> HolonicJob:
    """The job for `config`: synchronous rounds (`HolonicJob`), the same on a simulated clock
    (`ClockedJob`, with a `clock:` block), or buffered asynchronous aggregation
    (`BufferedJob`); the drivers are `holarchy.asynchronous`'s. `parts` give the terminals'
    data sizes: the clock's work is a data size × E samples per turn."""
    sizes = {t: len(p) for t, p in zip(holarchy.terminals(), parts, strict=True)}
    rounds = asynchronous_rounds(config, holarchy, schedule, sizes, config.local_epochs,
                                 participation=config.participation, seed=config.seed)
    if rounds is None:
        return HolonicJob(config, holarchy, engine, schedule, evaluator, participation)
    kind = BufferedJob if isinstance(rounds, BufferedRounds | LayeredRounds) else ClockedJob
    return kind(config, holarchy, engine, schedule, evaluator, participation, rounds)


class ClockedJob(HolonicJob):
    """Synchronous rounds on a simulated clock (`holarchy.asynchronous.ClockedRounds`): a round
    lasts as long as its slowest trained terminal; every row gains `sim_time`, the simulated
    seconds so far."""

    def __init__(self, config: HolonicConfig, holarchy: Holarchy, engine: Any,
                 schedule: SyncSchedule, evaluator: Evaluator, participation: Participation,
                 rounds: ClockedRounds):
        super().__init__(config, holarchy, engine, schedule, evaluator, participation)
        self.rounds = rounds

    def step(self, round_: int, bar: Any) -> dict[str, Any]:
        row = super().step(round_, bar)
        return {**row, **self.rounds.advance(self.participation.draw(round_)[0])}

    def state(self) -> tuple[dict[str, dict[str, Tensor]], dict[str, Any]]:
        groups, meta = super().state()
        return groups, {**meta, **self.rounds.state()}

    def load_state(self, groups: dict[str, dict[str, Tensor]], meta: dict[str, Any]) -> None:
        super().load_state(groups, meta)
        self.rounds.load_state(meta)


class BufferedJob(HolonicJob):
    """Buffered asynchronous aggregation at the root of a one-level holarchy
    (`holarchy.asynchronous.BufferedRounds`): one unit ("round") is one aggregation of
    `buffer` updates; in a deeper holarchy (`LayeredRounds`) one event: the aggregations of
    the heads over terminals whose buffers fill first, and what follows from them up and down
    (rows gain `aggregated_heads`). Rows are a synchronous round's, `trained` and `reported` counting the
    updates aggregated, plus `staleness` (their mean), `arrived` (their terminals in the order
    the updates arrived) and, with a `clock:` block, `sim_time`; a terminal in flight holds
    (and is tested on) the model it started from. Under privacy `epsilon` is that of the
    terminal that has sent the most updates so far (`holarchy.privacy`)."""

    def __init__(self, config: HolonicConfig, holarchy: Holarchy, engine: Any,
                 schedule: SyncSchedule, evaluator: Evaluator, participation: Participation,
                 rounds: BufferedRounds | LayeredRounds):
        super().__init__(config, holarchy, engine, schedule, evaluator, participation)
        self.rounds = rounds

    def state(self) -> tuple[dict[str, dict[str, Tensor]], dict[str, Any]]:
        groups, meta = super().state()
        tensors, head = self.rounds.state()
        return {**groups, "buffered": tensors}, {**meta, "buffered": head}

    def load_state(self, groups: dict[str, dict[str, Tensor]], meta: dict[str, Any]) -> None:
        super().load_state(groups, meta)
        self.rounds.load_state(groups.get("buffered", {}), meta["buffered"])

    def step(self, round_: int, bar: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        done = self.rounds.step(self.engine, epochs=self.config.local_epochs)
        t1 = time.perf_counter()
        self.train_seconds += t1 - t0
        losses = trained_losses(self.terminals, done.loss)
        row = {"round": round_, "mean_train_loss": mean_loss(losses),
               "mean_test_accuracy": None, "root_test_accuracy": None,
               **self.schedule.traffic.totals(), "train_loss": losses, **done.row}
        if self.schedule.privacy is not None:
            row["epsilon"] = self.schedule.privacy.epsilon(round_)
        if round_ % self.config.eval_every == 0 or round_ == self.config.rounds:
            row.update(self.evaluate(done.models))
            self.eval_seconds += time.perf_counter() - t1
        return row


def rounds_to(history: list[dict[str, Any]], accuracy: float) -> int | None:
    """First (tested) round whose mean terminal test accuracy reaches `accuracy` (None: never)."""
    return next((r["round"] for r in history
                 if (r["mean_test_accuracy"] or 0.0) >= accuracy), None)


def _save_models(rd: RunDir, job: HolonicJob) -> None:
    """Final models as safetensors: terminals' parameters and buffers stacked on axis 0
    (`param.<name>`, ids in the metadata), and each non-terminal's flat parameter vector.
    Sampled terminals (`SampledTerminals`, no buffers) give the same file."""
    models = rd.path / "models"
    models.mkdir(exist_ok=True)
    terminals, schedule = job.terminals, job.schedule
    if job.sampled:
        distinct, index = job.engine.models(terminals)
        stacked = {f"param.{n}": p[index] for n, p in job.evaluator.stacked(distinct).items()}
    else:
        state = job.engine.state()
        prefix = f"{terminals[0]}/"
        names = [k[len(prefix):] for k in state
                 if k.startswith(prefix) and k.split("/")[-2] in ("param", "buffer")]
        stacked = {n.replace("/", ".", 1): torch.stack([state[f"{t}/{n}"] for t in terminals])
                   for n in names}
    save_file(stacked, models / "terminals.safetensors",
              metadata={"agent_ids": ",".join(terminals)})
    if schedule.models:
        save_file({h: m.contiguous() for h, m in schedule.models.items()},
                  models / "holons.safetensors", metadata={"layout": "Population.flat order"})

