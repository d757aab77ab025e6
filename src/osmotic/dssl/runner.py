"""One D-SSL run: data (MNIST or the user's images), partition, clients as holarchy terminals,
rounds of local self-supervised training and averaging (FL: FedAvg; DecL: neighbours on a
random regular graph) by the clients drawn for the round (`participation`, `dropout_rate`),
MAR's latent exchange, representation drift, and linear / kNN probes of the result.

Run directory (shared layout): `config.yaml`, `metrics.jsonl` (one line per round; `trained`
and `reported` counts when some clients sit rounds out), `summary.json` (the stable keys
`SUMMARY_KEYS`, and a few more: see docs/dssl.md), `partition.json`, `models/final.safetensors`
(the evaluated model(s), flat), plots under `plots/`, `tensorboard/` with `log: [tensorboard]`,
and `checkpoint.safetensors` for `osmotic resume`.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.nn.utils import vector_to_parameters

from osmotic.data import partition as partitions
from osmotic.data.datasets import load_dataset
from osmotic.data.splits import Dataset
from osmotic.data.timeseries import DataError
from osmotic.dssl import probe
from osmotic.dssl.augment import pixel_scale
from osmotic.dssl.clients import Clients, RayClients
from osmotic.dssl.config import DsslConfig
from osmotic.dssl.objectives import MAR, OBJECTIVES, VISIBLE, SimSiam, gamma_at
from osmotic.holarchy.asynchronous import BufferedRounds, ClockedRounds, asynchronous_rounds
from osmotic.holarchy.holarchy import Holarchy
from osmotic.holarchy.privacy import dp_sgd, plan_privacy
from osmotic.holarchy.schedule import Participation, SyncSchedule
from osmotic.holarchy.terminals import make_terminals
from osmotic.models import ModelError
from osmotic.models.vit import SIDE, TOKENS
from osmotic.report import RunDir
from osmotic.runtime.lifecycle import Diverged, Logger, check_finite
from osmotic.runtime.population import Population
from osmotic.runtime.session import Session, recorded_settings

SUMMARY_KEYS = ("method", "framework", "degree", "clients", "partition", "alpha", "rounds",
                "linear_probe_accuracy", "knn_accuracy", "client_linear_probe_accuracy",
                "random_init_linear_probe_accuracy", "train_seconds", "messages", "bytes",
                "seed", "engine")


MASKED_SHAPE = (1, SIDE, SIDE)
"""The images MAE and MAR mask: 16 patches of 7×7 pixels (`models.vit`)."""
BACKBONE_TAKES = {"vit": "vit takes 1×28×28 images (16 patches of 7×7)",
                  "cnn": "cnn takes one-channel images of at least 4×4"}
"""What the registered backbones take, for the line that refuses other images."""


def load_data(config: DsslConfig) -> Dataset:
    """The pool and test set a config asks for (shared by the runs of a grid): `data` and
    `test`, by default MNIST (`mnist_dir`, `holdout`), cut to `pool_size` samples if that is
    set. Inputs that are not images are refused."""
    data = load_dataset(config.data or "mnist", config.test, holdout=config.holdout,
                        seed=config.seed, mnist_dir=config.mnist_dir)
    require_images(data)
    return data if config.pool_size is None else data.pool_subset(config.pool_size, config.seed)


def require_images(data: Dataset) -> None:
    """One line naming `data` unless its inputs are images [n, C, H, W]."""
    if len(data.input_shape) != 3:
        where = data.source.split(";")[0]
        raise DataError(f"data: {where}: inputs of shape {list(data.input_shape)} per sample; "
                        "D-SSL pre-trains on images [n, C, H, W] (an npz of [n, H, W] or "
                        "[n, C, H, W] arrays, an image folder, mnist or digits)")


def objective_of(config: DsslConfig, data: Dataset | None = None, own: bool = False) -> Any:
    """The method's objective; SimSiam on images other than MNIST (`config.data`, or `own`:
    images given in memory) gets their pixel scale (`augment.pixel_scale` of the pool `data`),
    so that its augmentations see raw pixels."""
    if config.method == "mar":
        return MAR(config.mar_target)
    if config.method == "simsiam" and data is not None and (own or not config.mnist):
        return SimSiam(pixel_scale(data.train.images))
    return OBJECTIVES[config.method]()


def module_builder(config: DsslConfig, input_shape: tuple[int, ...] | None = None) -> Any:
    """Builder of the module clients train: the backbone (built for images of `input_shape`
    where its constructor takes it) wrapped with the method's heads."""
    return objective_of(config).build(config.backbone_builder(input_shape))


def check_backbone(config: DsslConfig, images: Tensor) -> None:
    """Refuse, in one line naming the backbone and the shape, images that the method or the
    backbone cannot take: MAE and MAR mask 7×7 patches of 1×28×28 images; the backbone must
    build, have `feature_dim`, map a batch of `images` to [batch, feature_dim] and run batched
    over clients (vmap). The global random state is left as it was."""
    shape = tuple(images.shape[1:])
    name = config.backbone
    if config.method in ("mae", "mar") and shape != MASKED_SHAPE:
        raise ModelError(f"backbone {name}: method {config.method} masks 7×7 patches of 1×28×28 "
                         f"images; the data's images are {'×'.join(map(str, shape))} (use "
                         "method simsiam, e.g. with backbone cnn)")
    hint = f"; {BACKBONE_TAKES[name]}" if name in BACKBONE_TAKES else ""
    if hint and shape[0] > 1:
        hint += " (an image folder: grayscale: true)"
    build = config.backbone_builder(shape)
    with torch.random.fork_rng(devices=[]):
        try:
            module = build()
        except Exception as e:  # noqa: BLE001 - the user's constructor
            raise ModelError(f"backbone {name}: cannot be built for images of shape {shape} "
                             f"({_first_line(e)})") from None
        dim = getattr(module, "feature_dim", None)
        if not isinstance(dim, int):
            raise ModelError(f"backbone {name}: no integer attribute feature_dim (the width of "
                             "its features)")
        try:
            with torch.no_grad():
                out = module(images)
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"backbone {name}: cannot take images of shape {shape} "
                             f"({_first_line(e)}){hint}") from None
        if not isinstance(out, Tensor) or tuple(out.shape) != (len(images), dim):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ModelError(f"backbone {name}: returns {got} for {len(images)} images of shape "
                             f"{shape}; expected [{len(images)}, feature_dim = {dim}]")
        try:
            Population(build, ["check-a", "check-b"], seed=0)(
                images.expand(2, *images.shape)).sum().backward()
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"backbone {name}: cannot run batched over clients "
                             f"(torch.func.vmap): {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def holarchy_of(config: DsslConfig) -> Holarchy:
    """FL: `fedavg` over the clients; DecL: a seeded random regular graph
    (`DsslConfig.build_holarchy`)."""
    return config.build_holarchy()


def clock_work(config: DsslConfig, clients: Sequence[str], parts: Sequence[np.ndarray]
               ) -> tuple[dict[str, int], int]:
    """A client's local work per round for the simulated clock, as (samples per epoch, epochs):
    local_steps × batch_size samples (the same for every client), or its data size (`parts`,
    in the order of `clients`) × local_epochs."""
    if config.local_steps is not None:
        return dict.fromkeys(clients, config.local_steps * config.batch_size), 1
    return {t: len(p) for t, p in zip(clients, parts, strict=True)}, config.local_epochs or 1


class Prober:
    """Linear probe and kNN of a backbone's frozen features: pool → test."""

    def __init__(self, module: nn.Module, data: Dataset, seed: int):
        self.module, self.data, self.seed = module, data, seed

    def load(self, flat: Tensor) -> nn.Module:
        vector_to_parameters(flat, self.module.parameters())
        return self.module.backbone

    def features(self, flat: Tensor, images: Tensor) -> np.ndarray:
        """Frozen features; a model whose parameters are finite but overflow on the way (a
        run that diverged in its last round) is `Diverged`, not a probe's NaN error."""
        x = probe.features(self.load(flat), images)
        if not np.isfinite(x).all():
            raise Diverged("non-finite features of the trained model", [])
        return x

    def __call__(self, flat: Tensor, knn: bool = True) -> dict[str, float]:
        d = self.data
        tr, te = self.features(flat, d.train.images), self.features(flat, d.test.images)
        yl, yt = d.train.labels.numpy(), d.test.labels.numpy()
        out = {"linear": probe.linear_probe(tr, yl, te, yt, self.seed)}
        if knn:
            out["knn"] = probe.knn_accuracy(tr, yl, te, yt)
        return out


def union(latents: Tensor) -> Tensor:
    """A head's MAR reference set from its members' latents [members, m, d]: all of them,
    [members · m, d]. Not a strategy of runtime/strategies.py: those combine the members'
    arrays row by row, and row k of one client's latents is not the same image as row k of
    another's."""
    return latents.reshape(-1, latents.shape[-1])


class DsslJob:
    """One round per unit: local training, drift, averaging, MAR exchange (a lifecycle `Job`).

    With partial participation (`participation` < 1 or `dropout_rate` > 0; draws as holonic's,
    `holarchy.schedule.Participation`) only the clients drawn for the round train, and only
    those of them that do not drop out report; the schedule averages what was reported (FL:
    the server sends the new global model to every client). Drift is measured among the
    clients that trained (the only local models that moved). MAR's latents are sent by the
    clients that reported: they alone are in contact this round, and a client that dropped
    out sends nothing. FL: the server pools them and sends the set to every client, as it does
    the model (a round nobody reported leaves the sets as they were); DecL: each client pools
    those of itself and its neighbours that reported, and one to which none came keeps its
    set (`MAR`: NaN rows are latents that did not come).

    Asynchronous rounds (`rounds`, `holarchy.asynchronous`, the drivers holonic uses): with a
    `clock:` block a round lasts as long as its slowest trained client and rows gain
    `sim_time`; with `aggregation: buffered` (FL) one unit is one aggregation of the server's
    buffer, rows gain `staleness` and `arrived`, `trained` and `reported` count the updates
    aggregated (when some clients sit an aggregation out), and drift is measured among the
    clients whose flight ended (aggregated or dropped out), as a synchronous round measures it
    among those that trained.
    """

    def __init__(self, config: DsslConfig, holarchy: Holarchy, engine: Any,
                 schedule: SyncSchedule, prober: Prober, drift_images: Tensor,
                 participation: Participation | None = None,
                 rounds: ClockedRounds | BufferedRounds | None = None):
        self.config, self.h, self.engine, self.schedule = config, holarchy, engine, schedule
        self.prober, self.drift_images = prober, drift_images
        self.participation = participation or Participation(holarchy)
        self.rounds = rounds
        self.terminals = holarchy.terminals()
        self.latent_messages = self.latent_bytes = 0
        self.train_seconds = 0.0
        self.models: Tensor | None = None
        self.exchange = config.method == "mar" and config.mar_target == "reference"
        self.counts = config.partial or (isinstance(rounds, BufferedRounds)
                                         and rounds.head.buffer < len(self.terminals))

    def work(self) -> dict[str, int | None]:
        return {"epochs": self.config.local_epochs, "steps": self.config.local_steps}

    def step(self, unit: int, bar: Any) -> dict[str, Any]:
        c = self.config
        t0 = time.perf_counter()
        gamma = gamma_at(unit, c.rounds, c.mar_gamma_max, c.mar_gamma_min,
                         c.mar_gamma_schedule) if c.method == "mar" else None
        if gamma is not None:
            self.engine.set_gamma(gamma)
        if isinstance(self.rounds, BufferedRounds):
            done = self.rounds.step(self.engine, **self.work())
            loss, local, models = done.loss, done.trained, done.models
            ended = set(done.aggregated) | set(done.dropped)  # trained, as a synchronous round's
            trained = [t for t in self.terminals if t in ended]
            fields = done.row if self.counts else \
                {k: v for k, v in done.row.items() if k not in ("trained", "reported")}
            everyone = len(trained) == len(self.terminals)
        else:
            loss, local, models, trained, fields = self.synchronous(unit)
            everyone = self.participation.everyone
        self.train_seconds += time.perf_counter() - t0
        self.models = models
        index = {t: i for i, t in enumerate(self.terminals)}
        moved = local if everyone else local[[index[t] for t in trained]]
        row = {"round": unit,
               "mean_train_loss": float(loss.mean() if everyone else np.nanmean(loss)),
               "gamma": gamma, "drift": self.drift(moved, trained), **self.traffic(),
               "train_loss": dict(zip(self.terminals, loss.tolist(), strict=True)), **fields}
        if self.schedule.privacy is not None:
            row["epsilon"] = self.schedule.privacy.epsilon(unit)
        if c.probe_every and unit % c.probe_every == 0 and unit < c.rounds:
            row["linear_probe_accuracy"] = self.prober(self.consensus(), knn=False)["linear"]
        return row

    def synchronous(self, unit: int) -> tuple[np.ndarray, Tensor, Tensor, list[str],
                                              dict[str, Any]]:
        """One synchronous round: (losses, local models, averaged models, the clients that
        trained, the row's `trained`/`reported` counts and `sim_time` where they apply)."""
        trained, reported = self.participation.draw(unit)
        everyone = self.participation.everyone
        loss, flat = self.engine.train(**self.work(), active=None if everyone else trained)
        check_finite(loss.tolist(), self.terminals, trained, flat)
        local = torch.from_numpy(flat)
        models = self.schedule.step(local, None if everyone else reported,
                                    None if everyone else trained)
        self.engine.load_flat(models.numpy())
        if self.exchange:
            self.mar_exchange(unit, None if everyone else reported)
        fields: dict[str, Any] = {"trained": len(trained), "reported": len(reported)} \
            if self.counts else {}
        if isinstance(self.rounds, ClockedRounds):
            fields.update(self.rounds.advance(trained))
        return loss, local, models, trained, fields

    def drift(self, local: Tensor, ids: Sequence[str]) -> float:
        """1 − mean pairwise linear CKA of the clients' local models (before averaging; those
        that trained this round, `ids`) on a fixed batch: how far their representations moved
        apart this round (0 with one). Clients whose features are not finite have diverged."""
        if len(local) == 1:
            return 0.0
        feats = [probe.features(self.prober.load(m), self.drift_images) for m in local]
        bad = [t for t, f in zip(ids, feats, strict=True) if not np.isfinite(f).all()]
        if bad:
            raise Diverged(f"non-finite features for {', '.join(bad[:5])}"
                           + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""), bad)
        return 1.0 - probe.mean_pairwise_cka(feats)

    def mar_exchange(self, unit: int, reported: Sequence[str] | None = None) -> None:
        """Every client that reported (`reported`; None: all) sends m pooled latents (the
        round's shared mask pattern); FL: the server pools them for every client; DecL: each
        client pools its own and its neighbours' (NaN rows for those that did not report)."""
        c = self.config
        g = torch.Generator().manual_seed(c.seed * 7919 + unit)
        keep = torch.randperm(TOKENS, generator=g)[:VISIBLE].numpy()
        lat = torch.from_numpy(self.engine.latents(keep, c.mar_latents, unit))
        n, m, d = lat.shape
        size = m * d * lat.element_size()
        index = {t: i for i, t in enumerate(self.terminals)}
        present = set(range(n)) if reported is None else {index[t] for t in reported}
        if c.framework == "fl":
            if not present:
                return  # nothing reached the server: every client keeps its set
            sent = lat if reported is None else lat[sorted(present)]
            ref = union(sent).expand(n, -1, -1)
            self.latent_messages += len(present) + n  # up to the server, a set back down
            self.latent_bytes += len(present) * size + n * ref[0].numel() * lat.element_size()
        else:
            groups = [sorted([i] + [index[j] for j in self.h.neighbours(t)])
                      for i, t in enumerate(self.terminals)]  # clients in order, as FL's
            if reported is not None:
                lat = lat.clone()
                lat[sorted(set(range(n)) - present)] = float("nan")
            ref = torch.stack([union(lat[grp]) for grp in groups])
            sent = sum(sum(1 for j in grp if j != i and j in present)
                       for i, grp in enumerate(groups))
            self.latent_messages += sent
            self.latent_bytes += sent * size
        self.engine.set_reference(ref.contiguous().numpy())

    def traffic(self) -> dict[str, int]:
        t = self.schedule.traffic.totals()
        return {"messages": sum(t["messages"].values()) + self.latent_messages,
                "bytes": sum(t["bytes"].values()) + self.latent_bytes}

    def consensus(self) -> Tensor:
        """FL: the global model; DecL: the plain average of all clients' models."""
        assert self.models is not None
        if self.config.framework == "fl":
            return self.schedule.models[self.h.root]
        return self.models.mean(0)

    def status(self, row: dict[str, Any]) -> str:
        return f"loss {row['mean_train_loss']:.3f} drift {row['drift']:.3f}"

    def state(self) -> tuple[dict[str, dict[str, Tensor]], dict[str, Any]]:
        tensors, rest = self.schedule.state()
        groups = {"clients": self.engine.state(), "schedule": tensors}
        if self.models is not None:
            groups["models"] = {"terminals": self.models}
        meta = {"schedule": rest, "latent_messages": self.latent_messages,
                "latent_bytes": self.latent_bytes, "train_seconds": self.train_seconds}
        if isinstance(self.rounds, ClockedRounds):
            meta.update(self.rounds.state())
        elif isinstance(self.rounds, BufferedRounds):
            groups["buffered"], meta["buffered"] = self.rounds.state()
        return groups, meta

    def load_state(self, groups: dict[str, dict[str, Tensor]], meta: dict[str, Any]) -> None:
        self.engine.load_state(groups.get("clients", {}))
        self.schedule.load_state(groups.get("schedule", {}), meta["schedule"])
        self.models = groups.get("models", {}).get("terminals")
        self.latent_messages, self.latent_bytes = meta["latent_messages"], meta["latent_bytes"]
        self.train_seconds = meta["train_seconds"]
        if isinstance(self.rounds, ClockedRounds):
            self.rounds.load_state(meta)
        elif isinstance(self.rounds, BufferedRounds):
            self.rounds.load_state(groups.get("buffered", {}), meta["buffered"])


def run(config: DsslConfig, out: str | Path, data: Dataset | None = None,
        progress: bool | None = None, *, resume: bool = False,
        log: Logger | Sequence[Logger] | None = None, in_memory: bool = False
        ) -> dict[str, Any]:
    """Pre-train for `config.rounds` rounds and probe; returns the summary (summary.json).

    `data` replaces the data the config names: the same data loaded once (a grid), or, with
    `in_memory`, images the config does not name (the Python API's arrays), which `osmotic
    resume` then refuses to guess. `log(row)` receives every round's metrics row (and
    `config.log` adds TensorBoard)."""
    data = data if data is not None else load_data(config)
    own = in_memory or not config.mnist
    require_images(data)
    data.require(config.clients, "clients")
    shape = data.input_shape
    check_backbone(config, data.train.images[: min(2, len(data.train))])
    holarchy = holarchy_of(config)
    terminals = holarchy.terminals()
    parts = partitions.partition(data.train.labels.numpy(), config.clients, config.partition,
                                 config.seed, config.alpha)
    participation = Participation(holarchy, config.participation, config.dropout_rate,
                                  config.seed)
    privacy = plan_privacy(config.privacy, holarchy, participation, parts, config.rounds,
                           batch_size=config.batch_size, epochs=config.local_epochs,
                           steps=config.local_steps, seed=config.seed,
                           buffered=config.aggregation == "buffered")
    session = Session.open(config, out, resume=resume, record={
        "data_source": data.source, "data_in_memory": in_memory,
        "graph": [list(e) for e in holarchy.edges]})
    if session.finished is not None:
        return session.finished.summary
    rd = session.dir
    if not resume:
        partitions.record(data.train.labels.numpy(), parts, terminals, rd.path, rd.plots,
                          f"{config.partition}: samples per class per client")
    build = module_builder(config, shape)
    schedule = SyncSchedule.starting(holarchy, build, parts, config.seed, budget=1,
                                     privacy=privacy)
    init = schedule.init
    prober = Prober(build(), data, config.seed)
    pick = np.random.default_rng(config.seed).choice(len(data.train), config.drift_batch,
                                                     replace=len(data.train) < config.drift_batch)
    sample = data.train.images[torch.from_numpy(pick)]

    def finish(job: DsslJob, rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list]:
        return _evaluate(config, job, prober, init, rd), rows

    summary, history = session.train(
        lambda: make_terminals(config, terminals, init, data.train, parts, model=build,
                               host=Clients, ray_host=RayClients,
                               objective=objective_of(config, data),
                               optimizer=config.optimizer,
                               optimizer_params=_optimizer_params(config),
                               keep_optimizer_state=config.keep_optimizer_state,
                               **dp_sgd(privacy)),
        lambda engine: DsslJob(config, holarchy, engine, schedule, prober, sample,
                               participation, asynchronous_rounds(
                                   config, holarchy, schedule,
                                   *clock_work(config, terminals, parts),
                                   participation=config.participation, seed=config.seed)),
        total=config.rounds, unit="round", label=f"dssl {config.name}",
        checkpoint_every=config.checkpoint_every or 5, finish=finish, log=log,
        progress=progress)
    summary["final_drift"] = history[-1]["drift"]
    if own:
        summary.update(input_shape=list(shape), classes=data.classes)
    if config.partial:
        summary.update(participation=config.participation, dropout_rate=config.dropout_rate)
    if privacy is not None:
        summary["privacy"] = privacy.summary(config.rounds)
    summary["run_dir"] = str(rd.path)
    from osmotic.dssl.plots import plot_run

    plot_run(history, rd.plots / "curves.png", config.name)
    return session.finish(summary).summary


def _optimizer_params(config: DsslConfig) -> dict[str, float]:
    return {"weight_decay": config.weight_decay} if config.optimizer == "adamw" else {}


def _evaluate(config: DsslConfig, job: DsslJob, prober: Prober, init: Tensor,
              rd: RunDir) -> dict[str, Any]:
    """Probes of the final model(s) and of the random initialisation."""
    consensus = job.consensus()
    final = prober(consensus)
    random_init = prober(init)
    client_acc = None
    if config.framework == "decl":
        rng = np.random.default_rng(config.seed)
        sample = np.sort(rng.choice(config.clients, min(config.client_probes, config.clients),
                                    replace=False))
        client_acc = float(np.mean([prober(job.models[i], knn=False)["linear"]
                                    for i in sample]))
    models = rd.path / "models"
    models.mkdir(exist_ok=True)
    save_file({"consensus": consensus.contiguous(), "clients": job.models.contiguous()},
              models / "final.safetensors", metadata={"layout": "Population.flat order",
                                                      "clients": ",".join(job.terminals)})
    t = job.traffic()
    return {"method": config.method, "framework": config.framework,
            "degree": config.degree if config.framework == "decl" else None,  # FL: no graph
            "clients": config.clients, "partition": config.partition,
            "alpha": config.alpha if config.partition == "dirichlet" else None,
            "rounds": config.rounds, "linear_probe_accuracy": final["linear"],
            "knn_accuracy": final["knn"], "client_linear_probe_accuracy": client_acc,
            "random_init_linear_probe_accuracy": random_init["linear"],
            "random_init_knn_accuracy": random_init["knn"],
            "train_seconds": round(job.train_seconds, 2), "messages": t["messages"],
            "bytes": t["bytes"], "seed": config.seed, "engine": config.engine,
            "local_steps": config.local_steps, "local_epochs": config.local_epochs}


def resume(out: str | Path, progress: bool | None = None, force: bool = False
           ) -> dict[str, Any]:
    """Continue the run in `out` from its last checkpoint, with its own settings and data
    (`force`: even if its config.yaml was edited since)."""
    return run(recorded_settings(DsslConfig, out, force), out, progress=progress,
               resume=True)