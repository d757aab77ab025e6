"""Where the terminals train: in this process, or sharded over Ray actors.

Either way the terminals of a shard are one `Terminals` object (the same code); the HoAL heads
and schedule stay in the driver. Per round only flat parameters travel: every actor trains its
terminals E epochs and sends back their flat parameters, the driver runs the schedule and sends
the new parameters down. Seeds are per terminal, so `--actors` changes no number.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from osmotic.data.splits import Split
from osmotic.holarchy.trainer import Terminals


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
                   **trainer: Any) -> Any:
    """`host` (default `Terminals`) of architecture `model` for all of `ids` in this process, or
    `ray_host` (default `RayTerminals`) over actors. `trainer` options go to each
    `LocalTrainer` (objective, optimiser): how D-SSL reuses this with clients of its own."""
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
