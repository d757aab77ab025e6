"""Differential privacy on the embeddings OSM-L agents send: a block that does nothing changes
nothing, what the diffuser receives is clipped and noised, ε is Opacus' own figure, and what
cannot be meant in OSM-L is refused in one line."""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from osmotic.cli import EXIT, main
from osmotic.osml import trainer
from osmotic.osml.config import OsmlConfig
from osmotic.osml.diffuser import Diffuser
from osmotic.osml.trainer import passes, sent, train_osml
from osmotic.report.rundir import RunDir
from osmotic.runtime.privacy import Mechanism
from osmotic.settings import InputError
from tests.osml.compare import numbers
from tests.osml.test_resume import interrupted_then_resumed

AGENTS = ["0", "1", "M0"]
NOISY = {"clip": 1.0, "noise_multiplier": 2.0}
"""Clip well inside the sphere of radius √5 the embeddings live on: every vector is clipped."""


def _numbers(x: Any) -> Any:
    """`x` without timings and the privacy entries (the only things a privacy block adds)."""
    return numbers(x, ("privacy", "epsilon"))


@pytest.mark.parametrize("privacy", [{"clip": math.inf, "noise_multiplier": 0},
                                     {"clip": None}])
def test_a_block_that_does_nothing_changes_nothing(privacy: dict[str, Any],
                                                   tiny_context: Callable,
                                                   tiny_config: Callable[..., OsmlConfig]) -> None:
    train, test = tiny_context()
    plain = train_osml(tiny_config(agents=AGENTS), train, test, progress=False)
    private = train_osml(tiny_config(agents=AGENTS, privacy=privacy), train, test,
                         progress=False)
    assert _numbers(private.summary) == _numbers(plain.summary)
    assert _numbers(private.metrics) == _numbers(plain.metrics)
    assert private.history == plain.history
    assert (private.test_embeddings == plain.test_embeddings).all()
    assert [r["epsilon"] for r in private.metrics] == [None, None]  # no noise, no guarantee
    assert private.summary["privacy"]["epsilon"] is None


def test_sent_clips_each_vector_and_adds_each_agents_own_noise() -> None:
    E = torch.randn(3, 7, 5) * 3
    E[0, 0] = torch.tensor([0.1, 0, 0, 0, 0])  # short: left as it is
    clipped = sent(Mechanism(1.0, 0.0), E, ["a", "b", "c"], 0, 1, "train", 0)
    assert (clipped.norm(dim=-1) <= 1.0 + 1e-6).all()
    assert torch.equal(clipped[0, 0], E[0, 0])
    assert torch.allclose(clipped[1:].norm(dim=-1), torch.ones(2, 7))
    noisy = sent(Mechanism(1.0, 0.5), E, ["a", "b", "c"], 0, 1, "train", 0)
    assert not torch.equal(noisy, clipped)
    assert 0.3 < float((noisy - clipped).std()) < 0.7
    # stateless: the same key gives the same noise; an agent's noise is its own
    assert torch.equal(noisy, sent(Mechanism(1.0, 0.5), E, ["a", "b", "c"], 0, 1, "train", 0))
    assert torch.equal(noisy[1:], sent(Mechanism(1.0, 0.5), E[1:], ["b", "c"], 0, 1, "train",
                                       0))
    for key in ((1, 1, "train", 0), (0, 2, "train", 0), (0, 1, "cluster", 0),
                (0, 1, "train", 20)):
        assert not torch.equal(noisy, sent(Mechanism(1.0, 0.5), E, ["a", "b", "c"], *key))


def test_the_diffuser_receives_only_clipped_noised_embeddings(
        monkeypatch: pytest.MonkeyPatch, tiny_context: Callable,
        tiny_config: Callable[..., OsmlConfig]) -> None:
    """Every embedding the diffuser gets while training and clustering went through `sent`:
    the agents' own embeddings there, clipped (norm <= clip) before the noise, and what
    reached the diffuser differs from them."""
    released: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    received: list[torch.Tensor] = []
    clustered: list[torch.Tensor] = []

    def spy_sent(mechanism: Mechanism, E: torch.Tensor, ids: Any, seed: int, epoch: int,
                 purpose: str, start: int) -> torch.Tensor:
        out = sent(mechanism, E, ids, seed, epoch, purpose, start)
        released.append((purpose, E.detach().clone(), out))
        before_noise = Mechanism(mechanism.clip, 0.0).clipped(E.detach().flatten(0, 1))
        assert (before_noise.norm(dim=-1) <= mechanism.clip * (1 + 1e-6)).all()
        return out

    contexts, cluster = Diffuser.contexts, Diffuser.cluster
    monkeypatch.setattr(trainer, "sent", spy_sent)
    monkeypatch.setattr(Diffuser, "contexts",
                        lambda self, E: received.append(E) or contexts(self, E))
    monkeypatch.setattr(Diffuser, "cluster",
                        lambda self, epoch, E: clustered.append(E) or cluster(self, epoch, E))
    train, test = tiny_context()
    config = tiny_config(agents=AGENTS, privacy=NOISY)
    train_osml(config, train, test, progress=False)

    batches = len(trainer._batches(120 - config.window + 1, config.batch_size))
    on_train = [out for purpose, _, out in released if purpose == "train"]
    assert len(on_train) == config.epochs * batches
    # each training batch's contexts are computed from exactly what was sent
    assert all(any(r is out for r in received) for out in on_train)
    for _, E, out in released:
        assert not torch.allclose(out, E, atol=0.1)
    # each clustering saw the sent embeddings of all windows, not the agents' own
    assert len(clustered) == config.epochs  # cluster_every 1
    for epoch, E in enumerate(clustered):
        parts = [out for purpose, _, out in released if purpose == "cluster"][
            epoch * batches:(epoch + 1) * batches]
        assert torch.equal(E, torch.cat(parts, dim=1))


def _opacus_epsilon(sigma: float, steps: int, delta: float) -> float:
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(sigma / 2, 1.0, steps)]
    return acc.get_epsilon(delta)


def test_epsilon_is_opacus_own_figure(tiny_context: Callable,
                                      tiny_config: Callable[..., OsmlConfig]) -> None:
    train, test = tiny_context()
    config = tiny_config(agents=AGENTS, epochs=3, cluster_every=2, privacy=NOISY)
    run = train_osml(config, train, test, progress=False)
    assert [passes(e, 2) for e in (1, 2, 3)] == [1, 3, 4]  # a clustering in epoch 2
    for row in run.metrics:
        steps = config.window * passes(row["epoch"], 2)
        assert row["epsilon"] == pytest.approx(_opacus_epsilon(2.0, steps, 1e-5), rel=1e-12)
    privacy = run.summary["privacy"]
    assert privacy["epsilon"] == run.metrics[-1]["epsilon"]
    assert privacy["passes"] == 4 and privacy["releases_per_round"] == config.window
    assert privacy["where"] == "local" and privacy["noise_multiplier"] == 2.0


def test_target_epsilon_is_not_exceeded(tiny_context: Callable,
                                        tiny_config: Callable[..., OsmlConfig]) -> None:
    train, test = tiny_context()
    config = tiny_config(agents=AGENTS, epochs=3,
                         privacy={"clip": 1.0, "target_epsilon": 4.0})
    run = train_osml(config, train, test, progress=False)
    eps = [row["epsilon"] for row in run.metrics]
    assert eps == sorted(eps) and 3.6 < eps[-1] <= 4.0
    sigma = run.summary["privacy"]["noise_multiplier"]
    assert eps[-1] == pytest.approx(_opacus_epsilon(sigma, config.window * 6, 1e-5))


def test_resumed_run_draws_the_same_noise(tiny_context: Callable,
                                          tiny_config: Callable[..., OsmlConfig],
                                          tmp_path: Path) -> None:
    straight, resumed, _ = interrupted_then_resumed(tiny_context, tiny_config, tmp_path,
                                                    privacy=NOISY)
    assert (straight.test_embeddings == resumed.test_embeddings).all()
    assert _numbers(straight.summary) == _numbers(resumed.summary)
    assert straight.summary["privacy"] == resumed.summary["privacy"]
    rows = RunDir(tmp_path / "cut").read_metrics()
    assert [r["epsilon"] for r in rows] == [r["epsilon"] for r in straight.metrics]


def test_a_small_population_of_steps_is_warned_of(capsys: pytest.CaptureFixture,
                                                  tiny_context: Callable,
                                                  tiny_config: Callable[..., OsmlConfig]) -> None:
    train, test = tiny_context()
    config = tiny_config(agents=AGENTS, epochs=1, privacy={**NOISY, "delta": 0.01})
    train_osml(config, train, test, progress=False)
    assert "at or above 1 / 120 time steps" in capsys.readouterr().err


@pytest.mark.parametrize(("block", "message"), [
    ({"where": "central"}, "privacy.where: OSM-L adds noise at the agent (local)"),
    ({"secure_aggregation": True}, "privacy.secure_aggregation: not available in OSM-L"),
])
def test_what_osml_cannot_mean_is_one_line(block: dict[str, Any], message: str,
                                           tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(InputError, match=re.escape(f"f.yaml: {message}")):
        OsmlConfig.validated({"privacy": {**NOISY, **block}}, "f.yaml")
    path = tmp_path / "osml.yaml"
    path.write_text(yaml.safe_dump({"mode": "osml", "epochs": 1, "privacy": {**NOISY, **block},
                                    "data": {"generated": "simple", "seed": 0}}))
    code = main(["run", str(path), "--out", str(tmp_path / "r")])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(
        "osmotic: error: ")]
    assert code == EXIT["input"] and len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "r").exists()


def test_local_is_osmls_default_and_both_levels_are_a_time_step() -> None:
    assert OsmlConfig(privacy=NOISY).privacy.where == "local"
    for level in ("user", "record"):
        assert OsmlConfig(privacy={**NOISY, "level": level}).privacy.level == level
