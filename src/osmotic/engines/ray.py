"""The Ray engine: agents sharded over Ray actors, the diffuser in the driver.

Each actor hosts an `InProcessEngine` over its agents, so inside an actor the agents run
batched exactly as they do in one process — the same code. Per batch only embeddings travel
(as NumPy arrays): actors send them up, the driver's diffuser sends contexts back. Seeds are
per agent, so the numbers do not depend on the number of actors.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from osmotic.engines import AgentsLost
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
                 *, actors: int | None = None, address: str | None = None, threads: int = 1,
                 restart: bool = False):
        self.ray = start_ray(address)
        cpus = int(self.ray.cluster_resources().get("CPU", 1)) or 1
        self.chunks = split(ids, actors or cpus)
        per_actor = min(1.0, cpus / len(self.chunks))
        # With `restart`, Ray recreates a dead actor (running __init__ again); calls in flight
        # still fail, so the driver rewinds every actor to the last checkpoint.
        Host = self.ray.remote(num_cpus=per_actor, max_restarts=-1 if restart else 0,
                               max_task_retries=0)(ShardHost)
        self.actors = [Host.remote(build(chunk), threads) for chunk in self.chunks]
        self.ray.get([a.pid.remote() for a in self.actors])  # fail now, not mid-run

    def _gather(self, refs: list[Any]) -> list[Any]:
        try:
            return self.ray.get(refs)
        except self._lost_errors():
            lost = [a for chunk, ok in zip(self.chunks, self._alive()) if not ok for a in chunk]
            raise AgentsLost(f"a Ray actor died, losing agents {', '.join(lost) or '(unknown)'}") from None

    def _alive(self, timeout: float = 5.0) -> list[bool]:
        alive = []
        for a in self.actors:
            try:
                self.ray.get(a.pid.remote(), timeout=timeout)
                alive.append(True)
            except (*self._lost_errors(), self.ray.exceptions.GetTimeoutError):
                alive.append(False)
        return alive

    def _lost_errors(self) -> tuple[type[Exception], ...]:
        ex = self.ray.exceptions
        return ex.RayActorError, ex.ActorUnavailableError

    def recover(self, timeout: float = 120.0) -> None:
        """Wait until every actor answers again (Ray restarts the dead ones)."""
        deadline = time.monotonic() + timeout
        while not all(self._alive(timeout=5.0)):
            if time.monotonic() > deadline:
                raise AgentsLost(f"lost Ray actors did not come back within {timeout:.0f} s")
            time.sleep(0.5)

    def pids(self) -> list[int]:
        """The actors' process ids (tests kill one to check fault handling)."""
        return self.ray.get([a.pid.remote() for a in self.actors])

    def embed(self, split: str, start: int, stop: int, train: bool = False) -> tuple[Tensor, Tensor]:
        parts = self._gather([a.embed.remote(split, start, stop, train) for a in self.actors])
        return (torch.from_numpy(np.concatenate([p[0] for p in parts])),
                torch.from_numpy(np.concatenate([p[1] for p in parts])))

    def step(self, C: Tensor) -> Tensor:
        C = C.numpy()
        bounds = np.cumsum([0] + [len(c) for c in self.chunks])
        refs = [a.step.remote(C[lo:hi]) for a, lo, hi in zip(self.actors, bounds[:-1], bounds[1:])]
        return torch.from_numpy(np.concatenate(self._gather(refs)))

    def state(self) -> dict[str, Tensor]:
        return {k: v for part in self._gather([a.call.remote("state") for a in self.actors])
                for k, v in part.items()}

    def load_state(self, state: dict[str, Tensor]) -> None:
        self._gather([a.call.remote("load_state", state) for a in self.actors])

    def shutdown(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
