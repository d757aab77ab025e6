"""DP-SGD inside terminals (`LocalTrainer(dp_sgd=...)`): per-sample clipping and noise that keep
the batched population's rules (a terminal's numbers do not depend on its companions; a resumed
run is the run)."""
from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from functools import partial
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from osmotic.data.splits import Split
from osmotic.dssl.objectives import MAE, MAR, SimSiam
from osmotic.engines.inprocess import cpu_threads
from osmotic.holarchy.terminals import make_terminals
from osmotic.holarchy.trainer import LocalTrainer, Terminals
from osmotic.models.cnn import MnistCNN
from osmotic.models.mlp import MLP
from osmotic.models.vit import TinyViT
from osmotic.runtime.objectives import CrossEntropy, Objective
from osmotic.runtime.population import Population, agent_seed
from osmotic.runtime.privacy import Mechanism

SEED, BATCH, LR = 5, 4, 0.1
SIZES = [9, 4, 6]
IDS = ["t0", "t1", "t2"]

gen = torch.Generator().manual_seed(0)
IMAGES = torch.randn(sum(SIZES), 1, 28, 28, generator=gen)
LABELS = torch.randint(0, 10, (sum(SIZES),), generator=gen)
PARTS = list(torch.arange(sum(SIZES)).split(SIZES))


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with cpu_threads(1):
        yield


def trainer(ids: list[str] = IDS, dp: Mechanism | None = None, **kw: Any) -> LocalTrainer:
    parts = [PARTS[IDS.index(a)] for a in ids]
    return LocalTrainer(Population(MnistCNN, ids, SEED), IMAGES, LABELS, parts, BATCH, LR, SEED,
                        dp_sgd=dp, **kw)


def test_without_clipping_or_noise_a_step_is_the_plain_step() -> None:
    """Full batches of real rows: Σ per-sample gradients / batch size is the mean's gradient.
    (AdamW divides by √v, which blows a near-zero gradient's rounding up to a visible step.)"""
    for optimizer, atol in (("sgd", 1e-6), ("adamw", 1e-4)):
        plain = trainer(optimizer=optimizer)
        private = trainer(dp=Mechanism(1e12, 0.0), optimizer=optimizer)
        loss, private_loss = plain.train(steps=3), private.train(steps=3)
        torch.testing.assert_close(private_loss, loss, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(private.pop.flat(), plain.pop.flat(), atol=atol, rtol=1e-5)
        assert not torch.equal(plain.pop.flat(), Population(MnistCNN, IDS, SEED).flat())


def test_an_epoch_is_textbook_dp_sgd() -> None:
    """Against a plain module trained sample by sample: each sample's whole gradient clipped,
    the batch's summed, noise added, divided by the batch size even for the last, partial
    batch (9 samples: batches of 4, 4 and 1)."""
    clip, sigma, aid = 0.5, 0.7, IDS[0]
    t = trainer([aid], dp=Mechanism(clip, sigma))
    t.train(epochs=1)

    model = MnistCNN()
    vector_to_parameters(Population(MnistCNN, [aid], SEED).flat()[0], model.parameters())
    shuffle, dropout, dp = (torch.Generator().manual_seed(agent_seed(SEED, aid, s))
                            for s in ("shuffle", "noise", "dp-sgd"))
    order = PARTS[0][torch.randperm(SIZES[0], generator=shuffle)]
    for start in range(0, SIZES[0], BATCH):
        rows = order[start : start + BATCH]
        noise = torch.rand(BATCH, MnistCNN.NOISE_WIDTH, generator=dropout)[: len(rows)]
        total = torch.zeros_like(parameters_to_vector(model.parameters()))
        for i, r in enumerate(rows):
            loss = F.cross_entropy(model(IMAGES[r : r + 1], noise[i : i + 1]), LABELS[r : r + 1])
            g = torch.cat([x.flatten() for x in torch.autograd.grad(loss, model.parameters())])
            total += g * min(1.0, clip / g.norm().item())
        total += torch.randn(total.shape, generator=dp) * sigma * clip
        with torch.no_grad():
            vector_to_parameters(parameters_to_vector(model.parameters()) - LR * total / BATCH,
                                 model.parameters())
    torch.testing.assert_close(t.pop.flat()[0], parameters_to_vector(model.parameters()),
                               atol=1e-6, rtol=1e-5)


def test_a_model_without_batched_forward_takes_the_vmap_path() -> None:
    build = partial(MLP, (1, 28, 28), 10, hidden=(8,))

    def make(dp: Mechanism | None) -> LocalTrainer:
        return LocalTrainer(Population(build, IDS, SEED), IMAGES, LABELS, PARTS, BATCH, LR, SEED,
                            dp_sgd=dp)

    plain, private = make(None), make(Mechanism(1e12, 0.0))
    plain.train(steps=2)
    private.train(steps=2)
    torch.testing.assert_close(private.pop.flat(), plain.pop.flat(), atol=1e-6, rtol=1e-5)


def test_each_sample_is_clipped() -> None:
    """With a tiny clip each step moves a terminal by at most lr × clip (the sum of at most
    `batch` clipped gradients, over the batch size), partial batches included."""
    clip = 1e-3
    t = trainer(dp=Mechanism(clip, 0.0))
    for _ in range(4):
        before = t.pop.flat()
        t.train(steps=1)
        moved = (t.pop.flat() - before).norm(dim=1)
        assert bool((moved <= LR * clip * (1 + 1e-4)).all()), moved
        assert bool((moved > 0).all())
    before = t.pop.flat()
    t.train(epochs=1)  # 3, 1 and 2 steps, the last ones partial
    steps = torch.tensor([math.ceil(n / BATCH) for n in SIZES], dtype=before.dtype)
    assert bool(((t.pop.flat() - before).norm(dim=1) <= steps * LR * clip * (1 + 1e-4)).all())


def test_noise_has_the_mechanism_scale() -> None:
    """Clip 0-ish and noise 1: a step is lr × N(0, clip²) / batch per parameter."""
    clip = 1.0
    t = trainer(dp=Mechanism(clip, 1.0))
    t.pop.load_flat(torch.zeros_like(t.pop.flat()))  # ReLU nets at 0: gradients only on biases
    before = t.pop.flat()
    t.train(steps=1)
    std = ((t.pop.flat() - before) / LR * BATCH).std().item()
    assert 0.9 < std < 1.1


def test_a_terminal_trains_the_same_alone_as_batched() -> None:
    dp = Mechanism(0.5, 1.0)
    together = trainer(dp=dp)
    together.train(epochs=2)
    for i, aid in enumerate(IDS):
        alone = trainer([aid], dp=dp)
        alone.train(epochs=2)
        torch.testing.assert_close(together.pop.flat()[i], alone.pop.flat()[0], atol=1e-6,
                                   rtol=0)


def test_state_round_trip_resumes_identically() -> None:
    dp = Mechanism(0.5, 1.0)
    run = trainer(dp=dp)
    run.train(epochs=1)
    state = copy.deepcopy(run.state())
    assert {f"{a}/rng/dp-sgd" for a in IDS} <= state.keys()
    run.train(epochs=1)
    resumed = trainer(dp=dp)
    resumed.load_state(state)
    resumed.train(epochs=1)
    assert torch.equal(resumed.pop.flat(), run.pop.flat())
    assert not any(k.endswith("/rng/dp-sgd") for k in trainer().state())  # none without DP-SGD


@pytest.mark.parametrize("objective", [SimSiam(), MAR()])
def test_batch_statistics_objectives_are_refused(objective: Objective) -> None:
    with pytest.raises(ValueError, match="privacy.level record: DP-SGD needs a per-sample loss; "
                                         f"{type(objective).__name__}"):
        trainer(dp=Mechanism(1.0, 1.0), objective=objective)


def test_an_undeclared_objective_is_refused_and_a_declared_one_accepted() -> None:
    class Mine(CrossEntropy):
        name = "mine"

    with pytest.raises(ValueError, match="DP-SGD needs a per-sample loss; objective 'mine'"):
        trainer(dp=Mechanism(1.0, 1.0), objective=Mine())
    Mine.per_sample = True  # type: ignore[attr-defined]
    trainer(dp=Mechanism(1.0, 1.0), objective=Mine()).train(steps=1)


def test_mae_trains_under_dp_sgd() -> None:
    """A self-supervised objective with per-sample losses (and a tuple-valued forward)."""
    build = MAE().build(partial(TinyViT, width=16, depth=1, heads=2, mlp=16))

    def make(dp: Mechanism | None) -> LocalTrainer:
        return LocalTrainer(Population(build, IDS[:2], SEED), IMAGES, LABELS, PARTS[:2], BATCH,
                            LR, SEED, objective=MAE(), dp_sgd=dp)

    plain, private = make(None), make(Mechanism(1e12, 0.0))
    plain.train(steps=1)
    private.train(steps=1)
    torch.testing.assert_close(private.pop.flat(), plain.pop.flat(), atol=1e-6, rtol=1e-5)


def _config(engine: str) -> SimpleNamespace:
    return SimpleNamespace(engine=engine, actors=1, ray_address=None, threads=1,
                           restart_failed=False, batch_size=BATCH, lr=LR, seed=SEED)


class _InlineRay:
    """Stands in for RayTerminals: builds the one shard the way an actor would."""

    def __init__(self, ids: list[str], build: Any, **pool: Any):
        self.host = build(ids)()


@pytest.mark.parametrize("engine", ["inprocess", "ray"])
def test_make_terminals_passes_dp_sgd_to_the_trainer(engine: str) -> None:
    dp = Mechanism(0.5, 1.0)
    init = Population(MnistCNN, ["R"], SEED).flat()[0]
    made = make_terminals(_config(engine), IDS, init, Split(IMAGES, LABELS),
                          [p.numpy() for p in PARTS], model=MnistCNN, ray_host=_InlineRay,
                          dp_sgd=dp)
    host: Terminals = made if engine == "inprocess" else made.host
    assert host.trainer.dp_sgd is dp
    _, flat = host.train(1)
    assert np.isfinite(flat).all()


def test_noise_is_drawn_per_terminal_from_its_own_stream() -> None:
    """Two terminals with the same data and weights move differently: their own noise."""
    dp = Mechanism(1.0, 1.0)
    t = LocalTrainer(Population(MnistCNN, ["x", "y"], SEED), IMAGES, LABELS,
                     [PARTS[0], PARTS[0]], BATCH, LR, SEED, dp_sgd=dp)
    t.pop.load_flat(t.pop.flat()[:1].expand(2, -1))
    t.shufflers[1].set_state(t.shufflers[0].get_state())
    t.pop.generators[1].set_state(t.pop.generators[0].get_state())
    t.train(steps=1)
    flat: Tensor = t.pop.flat()
    assert not torch.equal(flat[0], flat[1])
