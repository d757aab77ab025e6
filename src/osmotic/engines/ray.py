"""Ray for every mode: agents sharded over Ray actors, heads (the diffuser, holon heads) in the
driver.

`ActorPool` splits agents into contiguous shards, starts one actor per shard hosting whatever
object the mode builds for those agents, calls a method on every actor, and turns a dead actor
into `AgentsLost` naming its agents. Each mode (or the holarchy layer) keeps its own adapter on
top of it (`osml.engine.RayEngine`, `holarchy.terminals.RayTerminals`); this package imports no
mode.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import torch

from osmotic.engines import AgentsLost


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
    return [list(ids[a:b]) for a, b in pairwise(bounds)]


class Host:
    """What runs inside one actor: the object built for the actor's agents."""

    def __init__(self, build: Callable[[], Any], threads: int):
        torch.set_num_threads(threads or 1)  # 0 (auto): one each, as actors default to one per CPU
        self.obj = build()

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.obj, method)(*args)

    def pid(self) -> int:
        return os.getpid()


class ActorPool:
    """One actor per shard of agents, each hosting `build(shard)()`."""

    def __init__(self, ids: Sequence[str], build: Callable[[list[str]], Callable[[], Any]], *,
                 actors: int | None = None, address: str | None = None, threads: int = 1,
                 restart: bool = False):
        self.ray = start_ray(address)
        cpus = int(self.ray.cluster_resources().get("CPU", 1)) or 1
        self.chunks = split(ids, actors or cpus)
        # With `restart`, Ray recreates a dead actor (running __init__ again); calls in flight
        # still fail, so the driver rewinds every actor to the last checkpoint.
        remote = self.ray.remote(num_cpus=min(1.0, cpus / len(self.chunks)),
                                 max_restarts=-1 if restart else 0, max_task_retries=0)(Host)
        self.actors = [remote.remote(build(chunk), threads) for chunk in self.chunks]
        try:
            self.pids()  # fail now, not mid-run
        except self.ray.exceptions.RayError as e:
            self.shutdown()
            raise AgentsLost(f"Ray actors failed to start: {str(e).splitlines()[0]}") from None

    def call(self, method: str, *per_actor_args: Sequence[Any]) -> list[Any]:
        """`method` on every actor; argument k of actor i is `per_actor_args[k][i]`."""
        refs = [a.call.remote(method, *(args[i] for args in per_actor_args))
                for i, a in enumerate(self.actors)]
        try:
            return self.ray.get(refs)
        except self._lost_errors():
            lost = [a for chunk, ok in zip(self.chunks, self._alive()) if not ok for a in chunk]
            raise AgentsLost(f"a Ray actor died, losing agents {', '.join(lost) or '(unknown)'}") from None

    def broadcast(self, method: str, *args: Any) -> list[Any]:
        """`method(*args)` on every actor, the same arguments for all."""
        return self.call(method, *([arg] * len(self.actors) for arg in args))

    def scatter(self, x: np.ndarray) -> list[np.ndarray]:
        """Rows of `x` (one per agent, in shard order) cut into the actors' shares."""
        bounds = np.cumsum([0] + [len(c) for c in self.chunks])
        return [x[lo:hi] for lo, hi in pairwise(bounds)]

    def _lost_errors(self) -> tuple[type[Exception], ...]:
        ex = self.ray.exceptions
        return ex.RayActorError, ex.ActorUnavailableError

    def _alive(self, timeout: float = 5.0) -> list[bool]:
        alive = []
        for a in self.actors:
            try:
                self.ray.get(a.pid.remote(), timeout=timeout)
                alive.append(True)
            except (*self._lost_errors(), self.ray.exceptions.GetTimeoutError):
                alive.append(False)
        return alive

    def recover(self, timeout: float = 120.0) -> None:
        """Wait until every actor answers again (Ray restarts the dead ones)."""
        deadline = time.monotonic() + timeout
        while not all(self._alive(timeout=5.0)):
            if time.monotonic() > deadline:
                raise AgentsLost(f"lost Ray actors did not come back within {timeout:.0f} s")
            time.sleep(0.5)

    def pids(self) -> list[int]:
        """The actors' process ids."""
        return self.ray.get([a.pid.remote() for a in self.actors])

    def shutdown(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
