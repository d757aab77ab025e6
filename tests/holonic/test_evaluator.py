"""The Evaluator scores distinct models together and gives each model's own accuracy."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import vector_to_parameters

from osmotic.holarchy.trainer import Evaluator
from osmotic.models.cnn import MnistCNN
from osmotic.runtime.population import Population

g = torch.Generator().manual_seed(0)
IMAGES = torch.randn(50, 1, 28, 28, generator=g)
LABELS = torch.randint(0, 10, (50,), generator=g)


def _one_by_one(build, flat: torch.Tensor) -> torch.Tensor:
    model = build().eval()
    out = []
    for row in flat:
        vector_to_parameters(row, model.parameters())
        with torch.no_grad():
            out.append(float((model(IMAGES).argmax(-1) == LABELS).double().mean()))
    return torch.tensor(out, dtype=torch.float64)


def test_batched_evaluation_equals_each_model_alone() -> None:
    flat = Population(MnistCNN, ["a", "b", "c"], seed=0).flat()
    flat = flat[[0, 1, 0, 2, 1]]  # repeated rows are evaluated once, reported for each
    acc = Evaluator(MnistCNN(), IMAGES, LABELS, chunk=8).accuracy(flat)  # chunks of 2 images
    torch.testing.assert_close(acc, _one_by_one(MnistCNN, flat), atol=0, rtol=0)


def test_models_without_a_batched_forward_run_one_after_another() -> None:
    def build() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    flat = Population(build, ["a", "b"], seed=0).flat()
    acc = Evaluator(build(), IMAGES, LABELS, chunk=20).accuracy(flat)
    torch.testing.assert_close(acc, _one_by_one(build, flat), atol=0, rtol=0)
