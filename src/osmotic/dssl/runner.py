"""One D-SSL run: partition, clients as holarchy terminals, rounds of local self-supervised
training and averaging (FL: FedAvg; DecL: neighbours on a random regular graph), MAR's latent
exchange, representation drift, and linear / kNN probes of the result.

Run directory (shared layout): `config.yaml`, `metrics.jsonl` (one line per round),
`summary.json` (the stable keys `SUMMARY_KEYS`, and a few more: see the README),
`partition.json`, `models/final.safetensors` (the evaluated model(s), flat), plots under
`plots/`, and `checkpoint.safetensors` for `osmotic resume`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.nn.utils import vector_to_parameters

from osmotic.data import partition as partitions
from osmotic.data.mnist import load_mnist
from osmotic.data.splits import Dataset
from osmotic.dssl import probe
from osmotic.dssl.clients import Clients, RayClients
from osmotic.dssl.config import DsslConfig
from osmotic.dssl.objectives import MAR, OBJECTIVES, VISIBLE, gamma_at
from osmotic.engines.inprocess import cpu_threads
from osmotic.holarchy.builders import fedavg, regular
from osmotic.holarchy.holarchy import Holarchy
from osmotic.holarchy.schedule import SyncSchedule
from osmotic.holarchy.terminals import make_terminals
from osmotic.models import BACKBONES
from osmotic.models.vit import TOKENS
from osmotic.report import RunDir
from osmotic.runtime.lifecycle import Lifecycle, resumable

SUMMARY_KEYS = ("method", "framework", "degree", "clients", "partition", "alpha", "rounds",
                "linear_probe_accuracy", "knn_accuracy", "client_linear_probe_accuracy",
                "random_init_linear_probe_accuracy", "train_seconds", "messages", "bytes",
                "seed", "engine")


def load_data(config: DsslConfig) -> Dataset:
    """The MNIST pool and test set a config asks for (shared by the runs of a grid)."""
    data = load_mnist(config.mnist_dir, config.holdout, config.seed)
    return data if config.pool_size is None else data.pool_subset(config.pool_size, config.seed)


def objective_of(config: DsslConfig) -> Any:
    return MAR(config.mar_target) if config.method == "mar" else OBJECTIVES[config.method]()


def module_builder(config: DsslConfig) -> Any:
    """Builder of the module clients train: the backbone wrapped with the method's heads."""
    return objective_of(config).build(BACKBONES[config.backbone])


def holarchy_of(config: DsslConfig) -> Holarchy:
    if config.framework == "fl":
        return fedavg(config.clients)
    return regular(config.clients, config.degree, config.seed)


class Prober:
    """Linear probe and kNN of a backbone's frozen features: pool → test."""

    def __init__(self, module: nn.Module, data: Dataset, seed: int):
        self.module, self.data, self.seed = module, data, seed

    def load(self, flat: Tensor) -> nn.Module:
        vector_to_parameters(flat, self.module.parameters())
        return self.module.backbone

    def features(self, flat: Tensor, images: Tensor) -> np.ndarray:
        return probe.features(self.load(flat), images)

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
    """One round per unit: local training, drift, averaging, MAR exchange (a lifecycle `Job`)."""

    def __init__(self, config: DsslConfig, holarchy: Holarchy, engine: Any,
                 schedule: SyncSchedule, prober: Prober, drift_images: Tensor):
        self.config, self.h, self.engine, self.schedule = config, holarchy, engine, schedule
        self.prober, self.drift_images = prober, drift_images
        self.terminals = holarchy.terminals()
        self.latent_messages = self.latent_bytes = 0
        self.train_seconds = 0.0
        self.models: Tensor | None = None
        self.exchange = config.method == "mar" and config.mar_target == "reference"

    def work(self) -> dict[str, int | None]:
        return {"epochs": self.config.local_epochs, "steps": self.config.local_steps}

    def step(self, unit: int, bar: Any) -> dict[str, Any]:
        c = self.config
        t0 = time.perf_counter()
        gamma = gamma_at(unit, c.rounds, c.mar_gamma_max, c.mar_gamma_min,
                         c.mar_gamma_schedule) if c.method == "mar" else None
        if gamma is not None:
            self.engine.set_gamma(gamma)
        loss, flat = self.engine.train(**self.work())
        local = torch.from_numpy(flat)
        models = self.schedule.step(local)
        self.engine.load_flat(models.numpy())
        if self.exchange:
            self.mar_exchange(unit)
        self.train_seconds += time.perf_counter() - t0
        self.models = models
        row = {"round": unit, "mean_train_loss": float(loss.mean()), "gamma": gamma,
               "drift": self.drift(local), **self.traffic(),
               "train_loss": dict(zip(self.terminals, loss.tolist(), strict=True))}
        if c.probe_every and unit % c.probe_every == 0 and unit < c.rounds:
            row["linear_probe_accuracy"] = self.prober(self.consensus(), knn=False)["linear"]
        return row

    def drift(self, local: Tensor) -> float:
        """1 − mean pairwise linear CKA of the clients' local models (before averaging) on a
        fixed batch: how far their representations moved apart this round."""
        if len(local) == 1:
            return 0.0
        feats = [self.prober.features(m, self.drift_images) for m in local]
        return 1.0 - probe.mean_pairwise_cka(feats)

    def mar_exchange(self, unit: int) -> None:
        """Every client sends m pooled latents (the round's shared mask pattern); FL: the
        server pools all of them; DecL: each client pools its own and its neighbours'."""
        c = self.config
        g = torch.Generator().manual_seed(c.seed * 7919 + unit)
        keep = torch.randperm(TOKENS, generator=g)[:VISIBLE].numpy()
        lat = torch.from_numpy(self.engine.latents(keep, c.mar_latents, unit))
        n, m, d = lat.shape
        size = m * d * lat.element_size()
        index = {t: i for i, t in enumerate(self.terminals)}
        if c.framework == "fl":
            ref = union(lat).expand(n, -1, -1)
            self.latent_messages += 2 * n  # up to the server, a reference set back down
            self.latent_bytes += n * size + n * ref[0].numel() * lat.element_size()
        else:
            groups = [sorted([i] + [index[j] for j in self.h.neighbours(t)])
                      for i, t in enumerate(self.terminals)]  # clients in order, as FL's
            ref = torch.stack([union(lat[grp]) for grp in groups])
            sent = sum(len(grp) - 1 for grp in groups)
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
        return groups, {"schedule": rest, "latent_messages": self.latent_messages,
                        "latent_bytes": self.latent_bytes, "train_seconds": self.train_seconds}

    def load_state(self, groups: dict[str, dict[str, Tensor]], meta: dict[str, Any]) -> None:
        self.engine.load_state(groups.get("clients", {}))
        self.schedule.load_state(groups.get("schedule", {}), meta["schedule"])
        self.models = groups.get("models", {}).get("terminals")
        self.latent_messages, self.latent_bytes = meta["latent_messages"], meta["latent_bytes"]
        self.train_seconds = meta["train_seconds"]


def run(config: DsslConfig, out: str | Path, data: Dataset | None = None,
        show_progress: bool | None = None, *, resume: bool = False) -> dict[str, Any]:
    """Pre-train for `config.rounds` rounds and probe; returns the summary (summary.json)."""
    data = data if data is not None else load_data(config)
    holarchy = holarchy_of(config)
    terminals = holarchy.terminals()
    parts = partitions.partition(data.train.labels.numpy(), config.clients, config.partition,
                                 config.seed, config.alpha)
    rd = RunDir(out, fresh=not resume)
    if not resume:
        rd.write_config({"mode": "dssl", **config.model_dump(), "data": data.source,
                         "graph": [list(e) for e in holarchy.edges]})
        partitions.record(data.train.labels.numpy(), parts, terminals, rd.path, rd.plots,
                          f"{config.partition}: samples per class per client")
    build = module_builder(config)
    schedule = SyncSchedule.starting(holarchy, build, parts, config.seed, budget=1)
    init = schedule.init
    prober = Prober(build(), data, config.seed)
    pick = np.random.default_rng(config.seed).choice(len(data.train), config.drift_batch,
                                                     replace=len(data.train) < config.drift_batch)
    with cpu_threads(config.threads):
        engine = make_terminals(config, terminals, init, data.train, parts, model=build,
                                host=Clients, ray_host=RayClients,
                                objective=objective_of(config), optimizer=config.optimizer,
                                optimizer_params=_optimizer_params(config),
                                keep_optimizer_state=config.keep_optimizer_state)
        try:
            job = DsslJob(config, holarchy, engine, schedule, prober,
                          data.train.images[torch.from_numpy(pick)])
            life = Lifecycle(job, total=config.rounds, unit="round", run_dir=rd,
                             checkpoint_every=config.checkpoint_every,
                             restart_failed=config.restart_failed,
                             label=f"dssl {config.name}")
            history = life.run(resume, show_progress)
        finally:
            engine.shutdown()
        summary = _evaluate(config, job, prober, init, rd)
    summary["final_drift"] = history[-1]["drift"]
    summary["run_dir"] = str(rd.path)
    rd.write_summary(summary)
    from osmotic.dssl.plots import plot_run

    plot_run(history, rd.plots / "curves.png", config.name)
    return summary


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
            "degree": config.degree if config.framework == "decl" else config.clients - 1,
            "clients": config.clients, "partition": config.partition,
            "alpha": config.alpha if config.partition == "dirichlet" else None,
            "rounds": config.rounds, "linear_probe_accuracy": final["linear"],
            "knn_accuracy": final["knn"], "client_linear_probe_accuracy": client_acc,
            "random_init_linear_probe_accuracy": random_init["linear"],
            "random_init_knn_accuracy": random_init["knn"],
            "train_seconds": round(job.train_seconds, 2), "messages": t["messages"],
            "bytes": t["bytes"], "seed": config.seed, "engine": config.engine,
            "local_steps": config.local_steps, "local_epochs": config.local_epochs}


def resume(out: str | Path, show_progress: bool | None = None) -> dict[str, Any]:
    """Continue the run in `out` from its last checkpoint, with its own settings and data."""
    rd = resumable(out)
    return run(DsslConfig.from_run(rd), rd, show_progress=show_progress, resume=True)
