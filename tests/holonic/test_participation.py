"""Partial participation and drop-outs: a FedAvg holarchy with participation q (and drop-out
rate p) equals plain FedAvg with client sampling, written here without the package's batching,
padding or schedule code (the pattern of test_exactness.py).

The comparison computes in float64: in float32, batching a terminal with different partners
than in the plain loop changes rounding at 1e-8, and one near-tie in a max-pool or ReLU can
amplify that to 1e-4 within a round; in float64 the two agree to 1e-15."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from osmotic.holarchy.builders import fedavg, hierarchical
from osmotic.holarchy.holarchy import Holarchy
from osmotic.holarchy.schedule import Participation, SyncSchedule
from osmotic.holarchy.trainer import LocalTrainer
from osmotic.holonic.config import HolonicConfig
from osmotic.holonic.runner import run
from osmotic.models.cnn import MnistCNN
from osmotic.runtime.population import Population, agent_seed
from tests.holonic import test_exactness as exactness
from tests.holonic.test_exactness import (
    BATCH,
    EPOCHS,
    IDS,
    IMAGES,
    LABELS,
    LR,
    PARTS,
    SEED,
    SIZES,
    K,
    average,
    clients,
    flat,
)

ROUNDS = 4


@pytest.fixture
def float64(monkeypatch: pytest.MonkeyPatch) -> Iterator[Tensor]:
    """Default dtype float64, and the exactness module's images in it (its clients read them);
    yields the images."""
    images = IMAGES.double()
    monkeypatch.setattr(exactness, "IMAGES", images)
    torch.set_default_dtype(torch.float64)
    try:
        yield images
    finally:
        torch.set_default_dtype(torch.float32)


def holonic(h: Holarchy, q: float, p: float, images: Tensor) -> Tensor:
    """The package: batched terminals, `Participation` and the HoAL schedule."""
    init = Population(MnistCNN, [h.root], SEED).flat()[0]
    pop = Population(MnistCNN, h.terminals(), SEED)
    pop.load_flat(init.expand(len(pop), -1))
    trainer = LocalTrainer(pop, images, LABELS, PARTS, BATCH, LR, SEED)
    schedule = SyncSchedule(h, h.weights(dict(zip(IDS, SIZES, strict=True))), K, init)
    draw = Participation(h, q, p, SEED)
    for r in range(1, ROUNDS + 1):
        trained, reported = draw.draw(r)
        with trainer.only({h.terminals().index(t) for t in trained}):
            trainer.train(EPOCHS)
        pop.load_flat(schedule.step(pop.flat(), reported))
    return pop.flat()


def plain_sampled_fedavg(q: float, p: float) -> Tensor:
    """FedAvg with client sampling: each round the server draws max(1, round(q·n)) clients,
    sends them the global model, they train, each fails to report with probability p, and the
    server averages the reports it got (weighted by data size); nobody reported: no change."""
    cs = clients()
    glob = cs[0].get()
    k = max(1, int(q * len(cs) + 0.5))
    for r in range(1, ROUNDS + 1):
        pick = np.random.default_rng(agent_seed(SEED, "R", f"participation:{r}")).choice(
            len(cs), k, replace=False)
        got = []
        for i in sorted(pick):
            cs[i].set(glob)
            cs[i].train()
            lost = np.random.default_rng(agent_seed(SEED, str(i), f"dropout:{r}")).random() < p
            if not lost:
                got.append(i)
        if got:
            glob = average([cs[i].get() for i in got], [SIZES[i] for i in got])
        for c in cs:
            c.set(glob)
    return flat(cs)


@pytest.mark.parametrize(("q", "p"), [(0.5, 0.0), (0.25, 0.0), (0.75, 0.4)])
def test_fedavg_with_participation_is_plain_client_sampling(q: float, p: float,
                                                           float64: Tensor) -> None:
    torch.testing.assert_close(holonic(fedavg(len(IDS)), q, p, float64),
                               plain_sampled_fedavg(q, p), atol=1e-12, rtol=0)


def test_full_participation_changes_nothing() -> None:
    h = hierarchical([[0, 1], [2, 3]])
    draw = Participation(h, 1.0, 0.0, SEED)
    assert draw.everyone and draw.draw(3) == (IDS, IDS)


def test_draws_are_per_super_holon_and_seeded() -> None:
    h = hierarchical([list(range(10)), list(range(10, 14))])
    draw = Participation(h, 0.3, 0.0, seed=1)
    trained, reported = draw.draw(5)
    assert trained == reported
    assert sum(int(t) < 10 for t in trained) == 3 and sum(int(t) >= 10 for t in trained) == 1
    assert draw.draw(5) == Participation(h, 0.3, 0.0, seed=1).draw(5)  # same seed, same draw
    assert {tuple(draw.draw(r)[0]) for r in range(1, 20)}.__len__() > 5  # rounds differ


def test_dropout_rate_is_respected() -> None:
    h = fedavg(50)
    draw = Participation(h, 1.0, 0.3, seed=0)
    lost = [len(t) - len(r) for t, r in (draw.draw(i) for i in range(1, 41))]
    assert abs(np.mean(lost) / 50 - 0.3) < 0.03  # 2,000 draws at p = 0.3


def test_a_head_that_hears_from_nobody_keeps_its_model() -> None:
    h = hierarchical([[0, 1], [2, 3]])
    init = torch.zeros(3)
    schedule = SyncSchedule(h, h.weights(dict.fromkeys(IDS, 1)), 1, init)
    models = torch.arange(12, dtype=torch.float32).view(4, 3)
    out = schedule.step(models, reported=["0"])
    # E0 averages only terminal 0 (1 is absent); E1 heard nobody; the cloud waits for E1.
    torch.testing.assert_close(schedule.models["E0"], models[0])
    torch.testing.assert_close(schedule.models["E1"], init)
    torch.testing.assert_close(out[1], models[0])  # E0 sends its model to both members
    torch.testing.assert_close(out[2:], models[2:])  # E1's members keep their own models


def test_run_with_participation_and_dropouts(tmp_path: Path) -> None:
    ten = {"holarchy": {"id": "R", "members": [str(i) for i in range(10)]}}
    config = HolonicConfig(holarchy=ten, data="digits", rounds=3, local_epochs=1,
                           participation=0.3, dropout_rate=0.5, seed=2)
    run(config, tmp_path / "r", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text()
            .splitlines()]
    assert [r["trained"] for r in rows] == [3, 3, 3]
    assert all(r["reported"] <= 3 for r in rows) and sum(r["reported"] for r in rows) < 9
    losses = rows[0]["train_loss"]
    assert sum(v is not None for v in losses.values()) == 3  # only the drawn terminals trained
