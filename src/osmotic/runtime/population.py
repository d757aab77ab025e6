"""A population: agents of one architecture, parameters stacked along a leading agent axis.

Every agent keeps its own weights; stacking them only lets one vectorised computation
(`torch.func.vmap` over `functional_call`) evaluate all of them at once. Nothing here mixes
agents: gradients of the summed per-agent losses are exactly the per-agent gradients, and an
element-wise optimizer (Adam, SGD) over the stacked tensors is exactly per-agent optimisation.

Randomness is per agent, never per batch of agents: initial weights and any noise an agent
draws come from a generator seeded by (run seed, agent id), so the numbers an agent sees do not
depend on which other agents share its population, process or machine.
"""
from __future__ import annotations

import copy
import zlib
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap


def agent_seed(seed: int, agent_id: str, stream: str = "init") -> int:
    """A stable 63-bit seed for one agent and purpose (Python's `hash` is salted per process)."""
    return (seed * 1_000_003 + zlib.crc32(f"{stream}:{agent_id}".encode())) % (2**63 - 1)


class Population:
    """Agents `agent_ids` sharing the architecture built by `build`, evaluated batched.

    `build` must return a fresh `nn.Module`; it is called once per agent under that agent's
    seed, so agent `a` starts from the same weights whatever population it is placed in.
    """

    def __init__(self, build: Callable[[], nn.Module], agent_ids: Sequence[str], seed: int):
        if not agent_ids:
            raise ValueError("a population needs at least one agent")
        if len(set(agent_ids)) != len(agent_ids):
            raise ValueError(f"duplicate agent ids in population: {list(agent_ids)}")
        self.agent_ids = list(agent_ids)
        self.seed = seed
        modules = []
        for aid in self.agent_ids:
            torch.manual_seed(agent_seed(seed, aid))
            modules.append(build())
        # The template only lends its code to functional_call; its own tensors are never used.
        self.template = copy.deepcopy(modules[0]).to("meta")
        params, buffers = stack_module_state(modules)
        self.params: dict[str, Tensor] = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        self.buffers: dict[str, Tensor] = buffers
        self.generators = [
            torch.Generator().manual_seed(agent_seed(seed, aid, "noise")) for aid in self.agent_ids
        ]

    def __len__(self) -> int:
        return len(self.agent_ids)

    def __call__(self, *args: Tensor, method: str = "forward", randomness: str = "error") -> object:
        """Run `template.<method>` for every agent; each positional arg has a leading agent axis."""

        def one(p: dict[str, Tensor], b: dict[str, Tensor], *a: Tensor) -> object:
            if method == "forward":
                return functional_call(self.template, (p, b), a)
            bound = _Bound(self.template, method)
            return functional_call(bound, ({f"m.{k}": v for k, v in p.items()},
                                           {f"m.{k}": v for k, v in b.items()}), a)

        return vmap(one, randomness=randomness)(self.params, self.buffers, *args)

    def randn(self, *shape: int) -> Tensor:
        """Standard-normal noise of `shape` for every agent, from each agent's own generator."""
        return torch.stack([torch.randn(*shape, generator=g) for g in self.generators])

    def rand(self, *shape: int) -> Tensor:
        """Uniform [0, 1) noise of `shape` for every agent (dropout masks, say)."""
        return torch.stack([torch.rand(*shape, generator=g) for g in self.generators])

    def num_parameters(self) -> int:
        """Trainable parameters of one agent."""
        return sum(v[0].numel() for v in self.params.values())

    # -- state exchange (heads average parameters; checkpoints save them) --------------------
    def flat(self) -> Tensor:
        """All parameters as one [agents, P] matrix (a copy, detached)."""
        return torch.cat([v.detach().reshape(len(self), -1) for v in self.params.values()], dim=1)

    def load_flat(self, flat: Tensor) -> None:
        """Overwrite every agent's parameters from an [agents, P] matrix, in place."""
        offset = 0
        with torch.no_grad():
            for v in self.params.values():
                n = v[0].numel()
                v.copy_(flat[:, offset : offset + n].reshape(v.shape))
                offset += n

    def state(self, ids: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Parameters and buffers, stacked, optionally for a subset of agents (for saving)."""
        idx = None if ids is None else torch.tensor([self.agent_ids.index(a) for a in ids])
        out = {**{f"param.{k}": v.detach() for k, v in self.params.items()},
               **{f"buffer.{k}": v for k, v in self.buffers.items()}}
        return {k: (v if idx is None else v[idx]).clone() for k, v in out.items()}

    def load_state(self, state: dict[str, Tensor]) -> None:
        with torch.no_grad():
            for k, v in self.params.items():
                v.copy_(state[f"param.{k}"])
            for k, v in self.buffers.items():
                v.copy_(state[f"buffer.{k}"])

    def generator_states(self) -> list[Tensor]:
        return [g.get_state() for g in self.generators]

    def set_generator_states(self, states: Sequence[Tensor]) -> None:
        for g, s in zip(self.generators, states, strict=True):
            g.set_state(s)


class _Bound(nn.Module):
    """Exposes one method of a module as `forward`, so functional_call can reach it."""

    def __init__(self, module: nn.Module, method: str):
        super().__init__()
        self.m = module
        self.method = method

    def forward(self, *args: Tensor) -> object:
        return getattr(self.m, self.method)(*args)
