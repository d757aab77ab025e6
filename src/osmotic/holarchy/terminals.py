"""Where the terminals train: in this process, or sharded over Ray actors.

Either way the terminals of a shard are one `Terminals` object (the same code); the HoAL heads
and schedule stay in the driver. Per round only flat parameters travel: every actor trains its
terminals E epochs and sends back their flat parameters, the driver runs the schedule and sends
the new parameters down. Seeds are per terminal, so `--actors` changes no number.

Where a round samples a share of the terminals (cross-device: participation < 1, in this
process), `SampledTerminals` holds no model per terminal: a terminal keeps its data and a
reference to the model it last received (most share their head's), and only the terminals
drawn for a round are loaded into a few training slots. Set-up then costs what one round's
slots cost, and memory grows with the distinct models, not with the population.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from osmotic.data.splits import Split
from osmotic.engines.inprocess import heap_kept
from osmotic.holarchy.trainer import Terminals, generator


class TerminalSettings(Protocol):
    """What `make_terminals` reads of a run's settings (a `HolonicConfig`, a `DsslConfig`)."""

    engine: str
    actors: int | None
    ray_address: str | None
    threads: int
    restart_failed: bool
    batch_size: int
    lr: float
    seed: int


def make_terminals(config: TerminalSettings, ids: Sequence[str], init: Tensor, pool: Split,
                   parts: Sequence[np.ndarray], *, model: Callable[[], nn.Module],
                   host: type[Terminals] = Terminals, ray_host: type[RayTerminals] | None = None,
                   sampled: bool = False, **trainer: Any) -> Any:
    """`host` (default `Terminals`) of architecture `model` for all of `ids` in this process, or
    `ray_host` (default `RayTerminals`) over actors. `trainer` options go to each
    `LocalTrainer` (objective, optimiser): how D-SSL reuses this with clients of its own.
    `sampled` (rounds that sample terminals, plain SGD): `SampledTerminals` in this process,
    unless the model has buffers (state besides its parameters, which only a population of
    all terminals keeps)."""
    if sampled and config.engine == "inprocess" and not any(True for _ in model().buffers()):
        return SampledTerminals(model, ids, init, pool.images, pool.labels, parts,
                                config.batch_size, config.lr, config.seed, **trainer)
    part_of = dict(zip(ids, parts, strict=True))

    def build(chunk: list[str], share: Callable[[Any], Any] = _same,
              fetch: Callable[[Any], Any] = _same) -> Callable[[], Terminals]:
        # A shard receives only its terminals' samples, re-indexed from 0.
        rows = torch.from_numpy(np.concatenate([part_of[t] for t in chunk]))
        local = list(torch.arange(len(rows)).split([len(part_of[t]) for t in chunk]))
        arrays = share((init, pool.images[rows], pool.labels[rows]))
        return lambda: host(model, chunk, *fetch(arrays), local, config.batch_size,
                            config.lr, config.seed, **trainer)

    if config.engine == "ray":
        return (ray_host or RayTerminals)(list(ids), build, actors=config.actors,
                                          address=config.ray_address, threads=config.threads,
                                          restart=config.restart_failed)
    return build(list(ids))()


def _same(x: Any) -> Any:
    """In one process, arrays are shared by reference."""
    return x


class RayTerminals:
    """Terminals over Ray actors, with the interface of `Terminals`.

    Ray keeps an actor's constructor arguments only while they are referenced, but a restarted
    actor runs its constructor again (ray-project/ray#53727); so each shard's samples and the
    initial weights go to the object store under references held here, for the whole run.
    """

    def __init__(self, ids: Sequence[str], build: Callable[..., Callable[[], Terminals]], *,
                 address: str | None = None, **pool: Any):
        from osmotic.engines.ray import ActorPool, start_ray

        ray = start_ray(address)
        self.shared: list[Any] = []

        def share(x: Any) -> Any:
            self.shared.append(ray.put(x))
            return self.shared[-1]

        self.pool = ActorPool(ids, lambda chunk: build(chunk, share, ray.get), address=address,
                              **pool)

    def train(self, epochs: int | None = None, active: Collection[str] | None = None,
              steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        parts = self.pool.broadcast("train", epochs, None if active is None else set(active),
                                    steps)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def load_flat(self, flat: np.ndarray) -> None:
        self.pool.call("load_flat", self.pool.scatter(flat))

    def state(self) -> dict[str, Tensor]:
        return {k: v for part in self.pool.broadcast("state") for k, v in part.items()}

    def load_state(self, state: dict[str, Tensor]) -> None:
        self.pool.broadcast("load_state", state)

    def recover(self) -> None:
        self.pool.recover()

    def shutdown(self) -> None:
        self.pool.shutdown()


class SampledTerminals:
    """In-process terminals of which each round trains a sample (cross-device learning).

    A terminal holds its samples (`parts`, rows of the shared pool), its generators once it
    has trained, and the model it last received or trained (`held`; absent: `init`). Heads send
    one tensor to all their members, so `held` refers to a handful of distinct tensors whatever
    the population. A round loads the models of the terminals it trains into slots (a
    `Terminals` of as many agents, built once and re-served each round) and trains them batched
    with their own generators, so every number equals a population of all terminals
    (`Terminals` with `active`). Plain SGD only: its only state is a step count, so a slot
    carries nothing from one terminal to the next.
    """

    def __init__(self, build: Callable[[], nn.Module], ids: Sequence[str], init: Tensor,
                 images: Tensor, labels: Tensor, parts: Sequence[np.ndarray], batch_size: int,
                 lr: float, seed: int, **trainer: Any):
        if trainer.get("optimizer", "sgd") != "sgd":
            raise ValueError("sampled terminals train with plain SGD (a stateful optimiser's "
                             "state lives in a population of all terminals)")
        self.build, self.ids, self.init = build, list(ids), init
        self.images, self.labels, self.parts = images, labels, dict(zip(ids, parts, strict=True))
        self.options, self.seed, self.trainer = (batch_size, lr, seed), seed, trainer
        self.streams = ("noise", "shuffle") + (("dp-sgd",) if trainer.get("dp_sgd") else ())
        self.held: dict[str, Tensor] = {}
        self.generators: dict[str, dict[str, torch.Generator]] = {}
        self.slots: Terminals | None = None

    def train(self, epochs: int | None = None, active: Sequence[str] | None = None,
              steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Local epochs (or steps) of the terminals `active` (default: all), in holarchy order;
        their mean losses [A] and flat parameters [A, P], in that order."""
        ids = self.ids if active is None else list(active)
        for t in ids:  # a terminal's generators are made the first time it trains
            if t not in self.generators:
                self.generators[t] = self._fresh(t)
        gens = [self.generators[t] for t in ids]
        parts = [self.parts[t] for t in ids]
        if self.slots is None or len(self.slots.pop) != len(ids):
            self.slots = Terminals(self.build, ids, self.init, self.images, self.labels,
                                   parts, *self.options, **self.trainer)
        trainer = self.slots.trainer
        trainer.serve(ids, parts, gens)
        trainer.opt.reset()
        self.slots.pop.load_flat(torch.stack([self.held.get(t, self.init) for t in ids]))
        with heap_kept():
            loss = trainer.train(epochs, steps)
        return loss.numpy(), self.slots.pop.flat().numpy()

    def _fresh(self, terminal: str) -> dict[str, torch.Generator]:
        return {s: generator(self.seed, terminal, s) for s in self.streams}

    def receive(self, models: dict[str, Tensor]) -> None:
        """The models terminals hold after a round's exchange (the others keep theirs). A
        model that is a view (a row of a round's trained models, kept by a terminal that did
        not report) is copied once, so it does not keep its whole round alive."""
        copies: dict[int, Tensor] = {}
        for t, model in models.items():
            if model._base is not None:
                if id(model) not in copies:
                    copies[id(model)] = model.clone()
                model = copies[id(model)]
            self.held[t] = model

    def models(self, ids: Sequence[str]) -> tuple[Tensor, Tensor]:
        """The distinct models the terminals `ids` hold [U, P] and, per terminal, which [len]."""
        distinct: dict[int, int] = {}
        rows: list[Tensor] = []
        index = []
        for t in ids:
            model = self.held.get(t, self.init)
            if id(model) not in distinct:
                distinct[id(model)] = len(rows)
                rows.append(model)
            index.append(distinct[id(model)])
        return torch.stack(rows), torch.tensor(index)

    def state(self) -> dict[str, Tensor]:
        """For checkpoints: which model each terminal holds (`model_of`, -1: the initial one),
        the distinct models (`models` [U, P]), and the generators of the terminals that have
        trained (`trained`, their positions; `rng/<stream>`, their states stacked). A few
        tensors, however many terminals: a checkpoint of one tensor per terminal took longer
        than the rounds between checkpoints. Only `model_of` exists before any terminal has
        trained (a fresh run, against which a checkpoint's shapes are checked), so the sizes
        of the others may differ."""
        position = {t: i for i, t in enumerate(self.ids)}
        held = [t for t in self.ids if t in self.held]
        model_of = torch.full((len(self.ids),), -1, dtype=torch.long)
        out = {"model_of": model_of}
        if held:
            out["models"], index = self.models(held)
            model_of[[position[t] for t in held]] = index
        if self.generators:
            trained = list(self.generators)
            out["trained"] = torch.tensor([position[t] for t in trained])
            out.update({f"rng/{s}": torch.stack([self.generators[t][s].get_state()
                                                 for t in trained]) for s in self.streams})
        return out

    def load_state(self, state: dict[str, Tensor]) -> None:
        """Inverse of `state`."""
        rows = list(state["models"].unbind()) if "models" in state else []  # one view each
        self.held = {t: rows[k] for t, k in zip(self.ids, state["model_of"].tolist(),
                                                 strict=True) if k >= 0}
        self.generators = {}
        for row, i in enumerate(state.get("trained", torch.empty(0, dtype=torch.long)).tolist()):
            t = self.ids[i]
            self.generators[t] = self._fresh(t)
            for s, g in self.generators[t].items():
                g.set_state(state[f"rng/{s}"][row].clone())  # a view crashes set_state

    def recover(self) -> None:
        """Nothing runs elsewhere, so nothing can be lost."""

    def shutdown(self) -> None:
        """Nothing to stop."""
