"""A population evaluates stacked agents as if each ran alone, whatever its companions."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from osmotic.runtime.population import Population, agent_seed

IDS = ["a", "b", "M1"]


def _build() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def _inputs(n: int) -> torch.Tensor:
    return torch.randn(n, 6, 3, generator=torch.Generator().manual_seed(7))


def _grads(pop: Population, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    loss = (pop(x) ** 2).mean((1, 2))  # [agents]
    loss.sum().backward()
    return loss.detach(), {k: v.grad for k, v in pop.params.items()}


def test_initial_weights_do_not_depend_on_the_other_agents() -> None:
    together = Population(_build, IDS, seed=3)
    for i, aid in enumerate(IDS):
        alone = Population(_build, [aid], seed=3)
        for k, v in together.params.items():
            assert torch.equal(v[i], alone.params[k][0])
    assert not torch.equal(together.params["0.weight"][0], together.params["0.weight"][1])


def test_seeds_are_stable_and_distinct() -> None:
    assert agent_seed(0, "a") == agent_seed(0, "a")
    assert len({agent_seed(0, "a"), agent_seed(1, "a"), agent_seed(0, "b"),
                agent_seed(0, "a", "noise")}) == 4


def test_batched_losses_and_gradients_equal_each_agent_alone() -> None:
    x = _inputs(len(IDS))
    loss, grads = _grads(Population(_build, IDS, seed=0), x)
    for i, aid in enumerate(IDS):
        own_loss, own_grads = _grads(Population(_build, [aid], seed=0), x[i : i + 1])
        assert torch.allclose(loss[i], own_loss[0], atol=1e-6)
        for k, g in grads.items():
            assert torch.allclose(g[i], own_grads[k][0], atol=1e-6)


def test_batched_forward_equals_the_plain_module() -> None:
    pop = Population(_build, IDS, seed=0)
    x = _inputs(len(IDS))
    for i, aid in enumerate(IDS):
        torch.manual_seed(agent_seed(0, aid))
        assert torch.allclose(pop(x)[i], _build()(x[i]), atol=1e-6)


def test_building_leaves_the_global_generator_alone() -> None:
    before = torch.random.get_rng_state()
    Population(_build, IDS, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_noise_streams_are_per_agent() -> None:
    together = Population(_build, IDS, seed=0).randn(4, 2)
    alone = Population(_build, ["b"], seed=0).randn(4, 2)
    assert torch.equal(together[1], alone[0])


def test_flat_round_trip() -> None:
    pop = Population(_build, IDS, seed=0)
    flat = pop.flat()
    assert flat.shape == (3, pop.num_parameters())
    pop.load_flat(torch.zeros_like(flat))
    assert pop.flat().abs().sum() == 0
    pop.load_flat(flat)
    assert torch.equal(pop.flat(), flat)


def test_bad_agent_lists() -> None:
    with pytest.raises(ValueError, match="at least one agent"):
        Population(_build, [], seed=0)
    with pytest.raises(ValueError, match="duplicate"):
        Population(_build, ["a", "a"], seed=0)
