"""A population: agents of one architecture, parameters stacked along a leading agent axis.

Every agent keeps its own weights; stacking them only lets one vectorised computation evaluate
all of them at once: the module's own `batched_forward(params, buffers, *args)` when it has one
(written with `models.batched` layers over the agent axis), else `torch.func.vmap` over
`functional_call` (`models.batched.batched_call`). The first is the fast path: vmap
re-dispatches every small operation per call, which for small per-agent models costs more than
the arithmetic. Nothing here mixes agents: gradients of the summed per-agent losses are exactly
the per-agent gradients, and an element-wise optimizer (Adam, SGD) over the stacked tensors is
exactly per-agent optimisation.

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
from torch.func import stack_module_state

from osmotic.models.batched import batched_call


def agent_seed(seed: int, agent_id: str, stream: str = "init") -> int:
    """A stable 63-bit seed for one agent and purpose (Python's `hash` is salted per process)."""
    return (seed * 1_000_003 + zlib.crc32(f"{stream}:{agent_id}".encode())) % (2**63 - 1)


BUILD_CHUNK = 1024
"""Agents whose modules exist at once while a population is built."""


def _joined(parts: list[Tensor]) -> Tensor:
    """The parts' stacks along the agent axis (the one part itself: no copy)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


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
        stacks: list[tuple[dict[str, Tensor], dict[str, Tensor]]] = []
        # Each build is seeded without touching the caller's generator. The CPU generator alone:
        # `torch.manual_seed` also queues a seed for every lazy accelerator module, formatting a
        # stack trace for each (0.7 s of set-up at 1,024 agents), and fork_rng(devices=[])
        # would not restore those. Modules are built and stacked `BUILD_CHUNK` at a time: with
        # every agent's module alive beside the stack, building 65,536 OSM-L agents peaked at
        # 3.7 GB over its data (1.8 GB this way), memory the heap then kept for good.
        with torch.random.fork_rng(devices=[]):
            for start in range(0, len(self.agent_ids), BUILD_CHUNK):
                modules = []
                for aid in self.agent_ids[start : start + BUILD_CHUNK]:
                    torch.default_generator.manual_seed(agent_seed(seed, aid))
                    modules.append(build())
                if not stacks:  # the template only lends its code to functional_call
                    self.template = copy.deepcopy(modules[0]).to("meta")
                params, buffers = stack_module_state(modules)
                stacks.append(({k: v.detach() for k, v in params.items()}, buffers))
        self.params: dict[str, Tensor] = {
            k: _joined([p[k] for p, _ in stacks]).requires_grad_(True) for k in stacks[0][0]}
        self.buffers: dict[str, Tensor] = {k: _joined([b[k] for _, b in stacks])
                                           for k in stacks[0][1]}
        self.generators = [
            torch.Generator().manual_seed(agent_seed(seed, aid, "noise")) for aid in self.agent_ids
        ]

    def __len__(self) -> int:
        return len(self.agent_ids)

    def __call__(self, *args: Tensor, agents: Tensor | None = None,
                 params: dict[str, Tensor] | None = None) -> object:
        """Run the model's forward for every agent, or for the agents at positions `agents`
        only; each arg has a leading axis over those agents. A subset's parameters are gathered
        from the stack (gradients flow back into it, zero for the others), so agents with
        nothing to do in a step cost nothing. The template's `batched_forward` (see the module
        docstring) must return what the vmapped forward would: tests compare the two. `params`
        (stacked like `self.params`) runs other weights through the same code: a reference
        model each agent keeps, say."""
        params, buffers = self.params if params is None else params, self.buffers
        if agents is not None and not self.everyone(agents):
            params = {k: v[agents] for k, v in params.items()}
            buffers = {k: v[agents] for k, v in buffers.items()}
        return batched_call(self.template, params, buffers, *args)

    def everyone(self, agents: Tensor) -> bool:
        """Whether positions `agents` are all agents in order: then a call runs on the stack
        itself (the same numbers, without copying every parameter)."""
        return len(agents) == len(self) and bool((agents == torch.arange(len(self))).all())

    def part(self, agents: slice, *args: Tensor) -> tuple[object, dict[str, Tensor]]:
        """The forward of the agents at positions `agents` (a slice; args for them only), with
        their parameters as fresh autograd leaves (views of the stack), returned beside the
        output: a backward fills each leaf's `.grad`, of the part's size. Gathering from the
        stack (`agents=` in a call) would give every part a zero gradient the size of the whole
        stack instead."""
        leaves = {k: v.detach()[agents].requires_grad_(True) for k, v in self.params.items()}
        buffers = {k: v[agents] for k, v in self.buffers.items()}
        return batched_call(self.template, leaves, buffers, *args), leaves

    def randn(self, *shape: int, stream: str | None = None) -> Tensor:
        """Standard-normal noise of `shape` for every agent, from each agent's own generator;
        with `stream`, from fresh generators seeded by (seed, agent, stream) instead, so side
        computations (evaluation, say) leave the training noise untouched."""
        gens = self.generators if stream is None else [
            torch.Generator().manual_seed(agent_seed(self.seed, a, stream)) for a in self.agent_ids]
        return torch.stack([torch.randn(*shape, generator=g) for g in gens])

    def rand(self, *shape: int, agents: Sequence[int] | None = None) -> Tensor:
        """Uniform [0, 1) noise of `shape` for every agent (dropout masks, say), or for the
        agents at positions `agents` only (the others' generators do not advance)."""
        gens = self.generators if agents is None else [self.generators[i] for i in agents]
        return torch.stack([torch.rand(*shape, generator=g) for g in gens])

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

    def agent_state(self) -> dict[str, Tensor]:
        """Parameters, buffers and noise-generator state keyed `<agent>/<kind>/<name>`, so a
        checkpoint can be loaded into any grouping of the same agents (any number of actors)."""
        out = {f"{a}/rng/noise": g.get_state() for a, g in zip(self.agent_ids, self.generators)}
        for kind, tensors in (("param", self.params), ("buffer", self.buffers)):
            for name, v in tensors.items():
                out.update({f"{a}/{kind}/{name}": v.detach()[i].clone()
                            for i, a in enumerate(self.agent_ids)})
        return out

    def load_agent_state(self, state: dict[str, Tensor]) -> None:
        """Inverse of `agent_state` for this population's agents (`state` may hold more)."""
        with torch.no_grad():
            for kind, tensors in (("param", self.params), ("buffer", self.buffers)):
                for name, v in tensors.items():
                    v.copy_(torch.stack([state[f"{a}/{kind}/{name}"] for a in self.agent_ids]))
        for a, g in zip(self.agent_ids, self.generators):
            g.set_state(state[f"{a}/rng/noise"])
