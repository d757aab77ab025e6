"""FedAvg, hierarchical FL and P2P as holarchies equal plain implementations of each (issue §2).

The plain versions below train one `nn.Module` per client, one after another, with the same
seeds (initial weights, batch order, dropout noise) but none of the package's batching,
padding or schedule code. Unequal data sizes exercise the padding of the batched trainer.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parameters_to_vector

from osmotic.holarchy.builders import fedavg, hierarchical, p2p
from osmotic.holarchy.holarchy import Holarchy
from osmotic.holarchy.schedule import SyncSchedule
from osmotic.holarchy.trainer import LocalTrainer
from osmotic.models.cnn import MnistCNN
from osmotic.runtime.population import Population, agent_seed

SEED, ROUNDS, EPOCHS, BATCH, LR, K = 3, 3, 2, 8, 0.05, 2
SIZES = [20, 13, 7, 25]

gen = torch.Generator().manual_seed(0)
IMAGES = torch.randn(sum(SIZES), 1, 28, 28, generator=gen)
LABELS = torch.randint(0, 10, (sum(SIZES),), generator=gen)
PARTS = list(torch.arange(sum(SIZES)).split(SIZES))
IDS = [str(i) for i in range(len(SIZES))]


def holonic(h: Holarchy) -> Tensor:
    """The package: batched terminals + the HoAL schedule; final terminal params [T, P]."""
    init = Population(MnistCNN, [h.root], SEED).flat()[0]
    pop = Population(MnistCNN, h.terminals(), SEED)
    pop.load_flat(init.expand(len(pop), -1))
    trainer = LocalTrainer(pop, IMAGES, LABELS, PARTS, BATCH, LR, SEED)
    schedule = SyncSchedule(h, h.weights(dict(zip(IDS, SIZES, strict=True))), K, init)
    for _ in range(ROUNDS):
        trainer.train(EPOCHS)
        pop.load_flat(schedule.step(pop.flat()))
    return pop.flat()


class Client:
    """A plain client: its own module, optimizer and generators."""

    def __init__(self, cid: str, model: nn.Module):
        self.id, self.model, self.data = cid, copy.deepcopy(model), PARTS[int(cid)]
        self.shuffle = torch.Generator().manual_seed(agent_seed(SEED, cid, "shuffle"))
        self.noise = torch.Generator().manual_seed(agent_seed(SEED, cid, "noise"))

    def train(self) -> None:
        opt = torch.optim.SGD(self.model.parameters(), lr=LR)
        for _ in range(EPOCHS):
            order = self.data[torch.randperm(len(self.data), generator=self.shuffle)]
            for s in range(0, len(order), BATCH):
                b = order[s : s + BATCH]
                noise = torch.rand(BATCH, MnistCNN.NOISE_WIDTH, generator=self.noise)[: len(b)]
                loss = F.cross_entropy(self.model(IMAGES[b], noise), LABELS[b])
                opt.zero_grad()
                loss.backward()
                opt.step()

    def get(self) -> dict[str, Tensor]:
        return {k: v.clone() for k, v in self.model.state_dict().items()}

    def set(self, state: dict[str, Tensor]) -> None:
        self.model.load_state_dict(state)


def average(states: list[dict[str, Tensor]], weights: list[float]) -> dict[str, Tensor]:
    total = sum(weights)
    return {k: sum(w / total * s[k] for s, w in zip(states, weights, strict=True))
            for k in states[0]}


def clients() -> list[Client]:
    torch.manual_seed(agent_seed(SEED, "R"))
    model = MnistCNN()
    return [Client(c, model) for c in IDS]


def flat(cs: list[Client]) -> Tensor:
    return torch.stack([parameters_to_vector(c.model.parameters()) for c in cs]).detach()


def test_fedavg_is_plain_fedavg() -> None:
    cs = clients()
    for _ in range(ROUNDS):
        for c in cs:
            c.train()
        new = average([c.get() for c in cs], SIZES)
        for c in cs:
            c.set(new)
    torch.testing.assert_close(holonic(fedavg(len(IDS))), flat(cs), atol=1e-5, rtol=0)


def test_hierarchical_is_client_edge_cloud() -> None:
    groups = [[0, 1], [2, 3]]
    cs = clients()
    for r in range(1, ROUNDS + 1):
        for c in cs:
            c.train()
        edges = []
        for g in groups:
            edge = average([cs[i].get() for i in g], [SIZES[i] for i in g])
            edges.append(edge)
            for i in g:
                cs[i].set(edge)
        if r % K == 0:  # the cloud every K rounds
            cloud = average(edges, [sum(SIZES[i] for i in g) for g in groups])
            for c in cs:
                c.set(cloud)
    torch.testing.assert_close(holonic(hierarchical(groups)), flat(cs), atol=1e-5, rtol=0)


def test_p2p_is_neighbour_averaging() -> None:
    graph = [(0, 1), (1, 2), (1, 3)]
    nbrs = {i: [j for a, b in graph for i2, j in ((a, b), (b, a)) if i2 == i] for i in range(4)}
    cs = clients()
    for _ in range(ROUNDS):
        for c in cs:
            c.train()
        states = [c.get() for c in cs]
        for i, c in enumerate(cs):
            mine = [i, *sorted(nbrs[i])]
            c.set(average([states[j] for j in mine], [SIZES[j] for j in mine]))
    torch.testing.assert_close(holonic(p2p(len(IDS), graph)), flat(cs), atol=1e-5, rtol=0)
