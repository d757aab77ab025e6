"""The paper's CNN: size, dropout as an input, batching over a population."""
from __future__ import annotations

import pytest
import torch

from osmotic.models import make_model
from osmotic.models.cnn import MnistCNN
from osmotic.runtime.population import Population


def test_parameter_count_is_the_papers() -> None:
    assert sum(p.numel() for p in make_model("cnn").parameters()) == 21_840


def test_dropout_comes_from_noise() -> None:
    m, x = MnistCNN(), torch.randn(4, 1, 28, 28)
    assert torch.equal(m(x), m(x))  # no noise: deterministic (evaluation)
    u = torch.rand(4, MnistCNN.NOISE_WIDTH)
    assert torch.equal(m(x, u), m(x, u)) and not torch.equal(m(x, u), m(x))
    drop_all = torch.zeros(4, MnistCNN.NOISE_WIDTH)  # every unit dropped: only fc2's bias left
    torch.testing.assert_close(m(x, drop_all), m.fc2.bias.expand(4, 10))


def test_population_matches_single_models() -> None:
    pop = Population(MnistCNN, ["a", "b"], seed=0)
    x = torch.randn(2, 3, 1, 28, 28)
    u = torch.rand(2, 3, MnistCNN.NOISE_WIDTH)
    out = pop(x, u)
    for i in range(2):
        single = MnistCNN()
        torch.nn.utils.vector_to_parameters(pop.flat()[i], single.parameters())
        torch.testing.assert_close(out[i], single(x[i], u[i]), atol=1e-5, rtol=0)


def test_invalid_dropout() -> None:
    with pytest.raises(ValueError, match="dropout must be in"):
        MnistCNN(dropout=1.0)


def test_batched_forward_equals_each_model_alone_with_gradients() -> None:
    """The grouped channels-last path a Population takes: outputs and gradients per agent."""
    pop = Population(MnistCNN, ["a", "b", "c"], seed=0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 1, 28, 28, generator=g)
    u = torch.rand(3, 4, MnistCNN.NOISE_WIDTH, generator=g)
    y = torch.randint(0, 10, (3, 4), generator=g)
    out = pop(x, u)
    torch.nn.functional.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="sum").backward()
    for i in range(3):
        single = MnistCNN()
        torch.nn.utils.vector_to_parameters(pop.flat()[i], single.parameters())
        alone = single(x[i], u[i])
        torch.nn.functional.cross_entropy(alone, y[i], reduction="sum").backward()
        torch.testing.assert_close(out[i], alone, atol=1e-5, rtol=0)
        for name, p in single.named_parameters():
            torch.testing.assert_close(pop.params[name].grad[i], p.grad, atol=1e-5, rtol=1e-5)


def test_batched_forward_shares_unbatched_images() -> None:
    """Evaluation: one image batch [B, 1, 28, 28] for all agents, no dropout."""
    pop = Population(MnistCNN, ["a", "b"], seed=0)
    x = torch.randn(5, 1, 28, 28)
    torch.testing.assert_close(pop(x), pop(x.expand(2, *x.shape)), atol=0, rtol=0)
