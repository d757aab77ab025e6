"""D-SSL clients: holonic terminals with a self-supervised objective, plus MAR's latent exchange.

In-process one `Clients` hosts every client; on Ray each actor hosts one for its shard
(`RayClients`). Between rounds only flat parameters and, for MAR, pooled latents travel, as
NumPy arrays; images never leave the process that holds them.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from osmotic.dssl.objectives import MAR
from osmotic.holarchy.terminals import RayTerminals
from osmotic.holarchy.trainer import Terminals
from osmotic.runtime.population import agent_seed


class Clients(Terminals):
    """Terminals whose objective may be MAR: γ per round, latents out, reference sets in."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.objective = self.trainer.objective
        self._anchor()

    def _anchor(self) -> None:
        if isinstance(self.objective, MAR) and self.objective.target == "model":
            self.objective.set_anchor(self.pop.params)  # the model just received

    def load_flat(self, flat: np.ndarray) -> None:
        super().load_flat(flat)
        self._anchor()

    def set_gamma(self, gamma: float) -> None:
        if isinstance(self.objective, MAR):
            self.objective.gamma = gamma

    def latents(self, keep: np.ndarray, m: int, round_: int) -> np.ndarray:
        """[clients, m, d]: pooled latents of m of each client's own images (drawn from a
        generator seeded by (seed, client, round)), all seen through the patches `keep`."""
        trainer = self.trainer
        picks = []
        for aid, part in zip(self.pop.agent_ids, trainer.parts, strict=True):
            g = torch.Generator().manual_seed(agent_seed(self.pop.seed, aid, f"latents{round_}"))
            picks.append(part[torch.randint(len(part), (m,), generator=g)])
        x = trainer.images[torch.stack(picks)]
        return MAR.latents(self.pop, x, torch.from_numpy(keep)).numpy()

    def set_reference(self, reference: np.ndarray) -> None:
        if isinstance(self.objective, MAR):
            self.objective.set_reference(torch.from_numpy(reference))


class RayClients(RayTerminals):
    """`Clients` over Ray actors, with the same interface."""

    def set_gamma(self, gamma: float) -> None:
        self.pool.broadcast("set_gamma", gamma)

    def latents(self, keep: np.ndarray, m: int, round_: int) -> np.ndarray:
        return np.concatenate(self.pool.broadcast("latents", keep, m, round_))

    def set_reference(self, reference: np.ndarray) -> None:
        self.pool.call("set_reference", self.pool.scatter(reference))
