"""The Ray engine: agents sharded over Ray actors, the diffuser in the driver.

Each actor hosts an `InProcessEngine` over its agents, so inside an actor the agents run
batched exactly as they do in one process — the same code. Per batch only embeddings travel
(as NumPy arrays): actors send them up, the driver's diffuser sends contexts back. Seeds are
per agent, so the numbers do not depend on the number of actors.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from osmotic.engines.inprocess import InProcessEngine


def import_ray() -> Any:
    """Ray, or one clear error saying how to get it."""
    try:
        import ray
    except ImportError:
        raise ValueError("engine 'ray' needs Ray: pip install 'osmotic[ray]'") from None
    return ray


def start_ray(address: str | None = None) -> Any:
    """Join the cluster at `address` ('auto' or HOST:PORT), or start a local instance sized to
    this machine; a running instance in this process is reused."""
    ray = import_ray()
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    return ray


def split(ids: Sequence[str], parts: int) -> list[list[str]]:
    """Contiguous, nearly equal chunks of `ids` (as many as `parts`, at most one per agent)."""
    parts = max(1, min(parts, len(ids)))
    bounds = np.linspace(0, len(ids), parts + 1).round().astype(int)
    return [list(ids[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


class ShardHost:
    """What runs inside one actor: an in-process engine over the actor's agents."""

    def __init__(self, build: Callable[[], InProcessEngine], threads: int):
        torch.set_num_threads(threads)
        self.engine = build()

    def embed(self, split: str, start: int, stop: int, train: bool) -> tuple[np.ndarray, np.ndarray]:
        E, P = self.engine.embed(split, start, stop, train)
        return E.numpy(), P.numpy()

    def step(self, C: np.ndarray) -> np.ndarray:
        return self.engine.step(torch.from_numpy(C)).numpy()

    def call(self, method: str, *args: Any) -> Any:
        """Any other engine method (state for checkpoints, say)."""
        return getattr(self.engine, method)(*args)

    def pid(self) -> int:
        return os.getpid()


class RayEngine:
    """Runs an engine's agents over `actors` Ray actors; same interface as InProcessEngine."""

    name = "ray"

    def __init__(self, ids: Sequence[str], build: Callable[[list[str]], Callable[[], InProcessEngine]],
                 *, actors: int | None = None, address: str | None = None, threads: int = 1):
        self.ray = start_ray(address)
        cpus = int(self.ray.available_resources().get("CPU", 1)) or 1
        self.chunks = split(ids, actors or cpus)
        per_actor = min(1.0, cpus / len(self.chunks))
        Host = self.ray.remote(num_cpus=per_actor)(ShardHost)
        self.actors = [Host.remote(build(chunk), threads) for chunk in self.chunks]
        self.ray.get([a.pid.remote() for a in self.actors])  # fail now, not mid-run

    def _gather(self, refs: list[Any]) -> list[Any]:
        return self.ray.get(refs)

    def embed(self, split: str, start: int, stop: int, train: bool = False) -> tuple[Tensor, Tensor]:
        parts = self._gather([a.embed.remote(split, start, stop, train) for a in self.actors])
        return (torch.from_numpy(np.concatenate([p[0] for p in parts])),
                torch.from_numpy(np.concatenate([p[1] for p in parts])))

    def step(self, C: Tensor) -> Tensor:
        C = C.numpy()
        bounds = np.cumsum([0] + [len(c) for c in self.chunks])
        refs = [a.step.remote(C[lo:hi]) for a, lo, hi in zip(self.actors, bounds[:-1], bounds[1:])]
        return torch.from_numpy(np.concatenate(self._gather(refs)))

    def shutdown(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
