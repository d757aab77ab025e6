"""One holonic run: data, partition, batched terminals, the HoAL schedule, metrics and files.

Run directory (shared layout): `config.yaml` (resolved settings and holarchy), `metrics.jsonl`
(one line per round), `summary.json`, `partition.json`, `traffic.json` (messages per holon),
`models/terminals.safetensors` and `models/holons.safetensors`, `plots/*.png`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from osmotic.data import partition as partitions
from osmotic.data.mnist import MnistData, Split, load_mnist, stratified_holdout
from osmotic.holonic.config import HolonicConfig
from osmotic.holonic.plots import draw_holarchy, plot_curves
from osmotic.holonic.schedule import SyncSchedule
from osmotic.holonic.trainer import Evaluator, LocalTrainer
from osmotic.models import make_model
from osmotic.report import RunDir, progress
from osmotic.report.rundir import write_json
from osmotic.runtime.population import Population


def load_data(config: HolonicConfig) -> MnistData:
    """The pool and test set a config asks for (shared by the runs of a grid)."""
    data = load_mnist(config.mnist_dir, config.holdout, config.seed)
    if config.pool_size is not None and config.pool_size < len(data.train):
        _, keep = stratified_holdout(data.train.labels.numpy(), config.pool_size, config.seed)
        data = MnistData(Split(data.train.images[keep], data.train.labels[keep]), data.test,
                         f"{data.source}; pool subset of {config.pool_size}")
    return data


def run(config: HolonicConfig, out: str | Path, data: MnistData | None = None,
        show_progress: bool | None = None) -> dict[str, Any]:
    """Train for `config.rounds` rounds; returns the summary (also written to summary.json)."""
    holarchy = config.build_holarchy()
    data = data if data is not None else load_data(config)
    terminals = holarchy.terminals()
    labels = data.train.labels.numpy()
    parts = partitions.partition(labels, len(terminals), config.distribution, config.seed,
                                 config.alpha)
    rd = RunDir(out)
    rd.write_config({**config.model_dump(), "resolved_holarchy": holarchy.to_dict(),
                     "data": data.source})
    rows = partitions.summary(labels, parts, terminals)
    write_json(rd.file("partition.json"), rows)
    partitions.plot_summary(rows, rd.plots / "partition.png",
                            f"{config.distribution}: samples per class per terminal")
    draw_holarchy(holarchy, rd.plots / "holarchy.png", config.name)

    def build() -> torch.nn.Module:
        return make_model(config.model, **config.model_params)

    # Every terminal starts from the same weights: those the root's seed draws.
    init = Population(build, [holarchy.root], config.seed).flat()[0]
    pop = Population(build, terminals, config.seed)
    pop.load_flat(init.expand(len(terminals), -1))
    trainer = LocalTrainer(pop, data.train.images, data.train.labels,
                           [torch.from_numpy(p) for p in parts], config.batch_size, config.lr,
                           config.seed)
    weights = holarchy.weights({t: len(p) for t, p in zip(terminals, parts, strict=True)})
    schedule = SyncSchedule(holarchy, weights, config.budget, init)
    evaluator = Evaluator(build(), data.test.images, data.test.labels)
    root = holarchy.holons[holarchy.root]
    root_aggregates = root.aggregates and not root.terminal  # a lone terminal has no head

    rd.reset_metrics()
    train_seconds = eval_seconds = 0.0
    with progress(show_progress) as bar:
        task = bar.add_task(f"holonic {config.name}/{config.distribution}", total=config.rounds,
                            info="")
        for r in range(1, config.rounds + 1):
            t0 = time.perf_counter()
            loss = trainer.train(config.local_epochs)
            pop.load_flat(schedule.step(pop.flat()))
            t1 = time.perf_counter()
            train_seconds += t1 - t0
            row = {"round": r, "mean_train_loss": float(loss.mean()),
                   "mean_test_accuracy": None, "root_test_accuracy": None,
                   **schedule.traffic.totals(),
                   "train_loss": dict(zip(terminals, loss.tolist(), strict=True))}
            if r % config.eval_every == 0 or r == config.rounds:
                models = pop.flat()
                if root_aggregates:
                    models = torch.cat([models, schedule.models[holarchy.root][None]])
                acc = evaluator.accuracy(models)
                row["mean_test_accuracy"] = float(acc[: len(terminals)].mean())
                row["root_test_accuracy"] = float(acc[-1]) if root_aggregates else None
                row["test_accuracy"] = dict(zip(terminals, acc[: len(terminals)].tolist(),
                                                strict=True))
                eval_seconds += time.perf_counter() - t1
            rd.log_metrics(row)
            acc_text = "" if row["mean_test_accuracy"] is None else \
                f"acc {row['mean_test_accuracy']:.3f}"
            bar.update(task, advance=1, info=acc_text)

    _save_models(rd, pop, schedule)
    write_json(rd.file("traffic.json"), schedule.traffic.per_holon())
    history = rd.read_metrics()
    plot_curves(history, rd.plots / "curves.png", f"{config.name} / {config.distribution}")
    summary = {"structure": config.name, "distribution": config.distribution,
               "rounds": config.rounds, "mean_test_accuracy": row["mean_test_accuracy"],
               "mean_train_loss": row["mean_train_loss"],
               "root_test_accuracy": row["root_test_accuracy"],
               "messages": row["messages"], "bytes": row["bytes"],
               "rounds_to_90": rounds_to(history, 0.9),
               "train_seconds": round(train_seconds, 2), "eval_seconds": round(eval_seconds, 2),
               "seed": config.seed, "engine": config.engine, "run_dir": str(rd.path)}
    rd.write_summary(summary)
    return summary


def rounds_to(history: list[dict[str, Any]], accuracy: float) -> int | None:
    """First (tested) round whose mean terminal test accuracy reaches `accuracy` (None: never)."""
    return next((r["round"] for r in history
                 if (r["mean_test_accuracy"] or 0.0) >= accuracy), None)


def _save_models(rd: RunDir, pop: Population, schedule: SyncSchedule) -> None:
    """Final models as safetensors: terminals stacked on axis 0 (ids in the metadata), and each
    non-terminal's flat parameter vector."""
    models = rd.path / "models"
    models.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in pop.state().items()},
              models / "terminals.safetensors", metadata={"agent_ids": ",".join(pop.agent_ids)})
    if schedule.models:
        save_file({h: m.contiguous() for h, m in schedule.models.items()},
                  models / "holons.safetensors", metadata={"layout": "Population.flat order"})
