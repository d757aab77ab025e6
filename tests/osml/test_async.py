"""Asynchronous OSM-L on a simulated clock: a clock alone and buffering that waits for
everyone change no number, simulated time grows and buffering saves it when stragglers are
left behind, the diffuser uses the latest embeddings it holds of late agents, a resumed run
ends as the uninterrupted one, and what OSM-L cannot mean is one line."""
from __future__ import annotations

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
from osmotic.osml.trainer import OsmlResult, answered, batch_durations, train_osml
from osmotic.settings import InputError
from tests.engines.test_ray import close
from tests.osml.compare import numbers
from tests.osml.test_resume import AGENTS, interrupted_then_resumed

STRAGGLERS = {"stragglers": 0.2, "straggler_factor": 10.0}
"""One of the four AGENTS computes ten times slower."""
BATCHES = 6
"""Training batches per epoch of the tiny context: 111 windows in batches of 20."""


def _numbers(x: Any) -> Any:
    """`x` without timings and what only simulated time adds."""
    return numbers(x, ("sim_time", "late_share"))


def _same(a: OsmlResult, b: OsmlResult) -> None:
    assert (a.test_embeddings == b.test_embeddings).all()
    assert _numbers(a.summary) == _numbers(b.summary)
    assert _numbers(a.metrics) == _numbers(b.metrics)
    assert a.history == b.history


def _run(tiny_context: Callable, tiny_config: Callable[..., OsmlConfig],
         **settings: Any) -> OsmlResult:
    train, test = tiny_context()
    return train_osml(tiny_config(agents=AGENTS, **settings), train, test, progress=False)


def test_arrivals_and_the_answer() -> None:
    assert answered([1.0, 2.0, 10.0], 3, 2) == (6.0, [2])
    assert answered([1.0, 2.0, 10.0], 1, 3) == (10.0, [])
    assert answered([2.0, 2.0, 2.0], 4, 1) == (8.0, [])  # ties arrive together
    config = OsmlConfig(batch_size=20, clock={"speed": 2, "delay": 1})
    assert batch_durations(config, ["a", "b"]) == [11.0, 11.0]
    slow = batch_durations(OsmlConfig(batch_size=20, clock=STRAGGLERS), AGENTS)
    assert sorted(slow) == [20.0, 20.0, 20.0, 200.0]


@pytest.mark.parametrize("settings", [
    {"clock": STRAGGLERS},  # sync on a clock: only sim_time is added
    {"aggregation": "buffered"},  # B = all agents, every agent at speed 1
    {"aggregation": "buffered", "clock": {"speed": 2, "delay": 1}, "buffer": 1},  # ties
    {"aggregation": "buffered", "clock": {"speed": {"distribution": "lognormal"}},
     "buffer": 4},  # whoever is slowest: B = all waits for it
])
def test_what_waits_for_everyone_changes_nothing(settings: dict[str, Any],
                                                 tiny_context: Callable,
                                                 tiny_config: Callable[..., OsmlConfig]) -> None:
    plain = _run(tiny_context, tiny_config)
    timed = _run(tiny_context, tiny_config, **settings)
    _same(plain, timed)
    assert ("sim_time" in timed.metrics[0]) == ("clock" in settings)
    if settings.get("aggregation") == "buffered":
        assert [r["late_share"] for r in timed.metrics] == [0.0, 0.0]


def test_privacy_with_buffering_that_waits_for_everyone(tiny_context: Callable,
                                                        tiny_config: Callable[..., OsmlConfig]
                                                        ) -> None:
    noisy = {"clip": 1.0, "noise_multiplier": 2.0}
    _same(_run(tiny_context, tiny_config, privacy=noisy),
          _run(tiny_context, tiny_config, privacy=noisy, aggregation="buffered"))


def test_buffering_leaves_the_straggler_behind(tiny_context: Callable,
                                               tiny_config: Callable[..., OsmlConfig]) -> None:
    sync = _run(tiny_context, tiny_config, epochs=3, clock=STRAGGLERS)
    buffered = _run(tiny_context, tiny_config, epochs=3, clock=STRAGGLERS,
                    aggregation="buffered", buffer=3)
    # sync: every batch waits for the straggler's 20 / 0.1 = 200 s; buffered: for the third
    # agent at speed 1, 20 s
    assert [r["sim_time"] for r in sync.metrics] == [1200.0, 2400.0, 3600.0]
    assert [r["sim_time"] for r in buffered.metrics] == [120.0, 240.0, 360.0]
    assert sync.summary["sim_time"] == 3600.0 and buffered.summary["sim_time"] == 360.0
    assert "late_share" not in sync.metrics[0]
    assert [r["late_share"] for r in buffered.metrics] == [0.25] * 3  # 1 of 4, every batch
    assert buffered.summary["late_share"] == 0.25
    assert not (sync.test_embeddings == buffered.test_embeddings).all()


def test_the_diffuser_uses_what_it_holds_of_late_agents(
        monkeypatch: pytest.MonkeyPatch, tiny_context: Callable,
        tiny_config: Callable[..., OsmlConfig]) -> None:
    """First epoch: the late agent is left out of the one shared context, which every agent
    aligns to. Later: the diffuser's input holds its embedding of the same steps from the
    epoch before, and everyone else's fresh ones."""
    sent: list[torch.Tensor] = []
    received: list[torch.Tensor] = []
    aligned: list[torch.Tensor] = []
    embed, step, contexts = (trainer.InProcessEngine.embed, trainer.InProcessEngine.step,
                             Diffuser.contexts)

    def spy_embed(self: Any, split: str, start: int, stop: int, train: bool = False) -> Any:
        out = embed(self, split, start, stop, train)
        if train:
            sent.append(out[0].clone())
        return out

    monkeypatch.setattr(trainer.InProcessEngine, "embed", spy_embed)
    monkeypatch.setattr(trainer.InProcessEngine, "step",
                        lambda self, C: aligned.append(C.clone()) or step(self, C))
    monkeypatch.setattr(Diffuser, "contexts",
                        lambda self, E: received.append(E.clone()) or contexts(self, E))
    config = tiny_config(agents=AGENTS, clock=STRAGGLERS, aggregation="buffered", buffer=3)
    slow = batch_durations(config, AGENTS).index(200.0)
    fast = [i for i in range(len(AGENTS)) if i != slow]
    train, test = tiny_context()
    train_osml(config, train, test, progress=False)

    assert len(sent) == len(aligned) == 2 * BATCHES
    for E, C in zip(sent[:BATCHES], aligned[:BATCHES]):  # epoch 1: the mean of the arrived
        torch.testing.assert_close(C, E[fast].mean(0).expand_as(C), rtol=0, atol=1e-6)
    training = [E for E in received if E.shape[1] <= 20]  # not evaluation's 31 test steps
    assert len(training) == BATCHES  # epoch 2's answers: epoch 1 left the late agent out
    for k, used in enumerate(training):
        before, now = sent[k], sent[BATCHES + k]
        assert torch.equal(used[fast], now[fast]) and torch.equal(used[slow], before[slow])


def test_resume_equals_uninterrupted(tiny_context: Callable,
                                     tiny_config: Callable[..., OsmlConfig],
                                     tmp_path: Path) -> None:
    straight, resumed, rd = interrupted_then_resumed(
        tiny_context, tiny_config, tmp_path, clock=STRAGGLERS, aggregation="buffered",
        buffer=3)
    _same(straight, resumed)
    rows = rd.read_metrics()
    assert [r["sim_time"] for r in rows] == [r["sim_time"] for r in straight.metrics] \
        == [120.0, 240.0, 360.0, 480.0]
    assert [r["late_share"] for r in rows] == [0.25] * 4
    assert resumed.summary["sim_time"] == 480.0


def test_buffering_on_ray_gives_the_in_process_numbers(ray_local: Any, tiny_context: Callable,
                                                 tiny_config: Callable[..., OsmlConfig]
                                                 ) -> None:
    settings = {"clock": STRAGGLERS, "aggregation": "buffered", "buffer": 3}
    local = _run(tiny_context, tiny_config, **settings)
    remote = _run(tiny_context, tiny_config, engine="ray", actors=2, **settings)
    # as the synchronous run on Ray: batching agents differently moves the last bits
    close(local, remote)
    for key in ("sim_time", "late_share"):
        assert [r[key] for r in local.metrics] == [r[key] for r in remote.metrics]


@pytest.mark.parametrize(("settings", "message"), [
    ({"staleness_exponent": 1.0}, "staleness_exponent: not used in OSM-L"),
    ({"buffer": 2}, "buffer: only with aggregation: buffered"),
    ({"aggregation": "buffered", "buffer": 5, "agents": AGENTS},
     "buffer: at most the 4 agents, got 5"),
    ({"aggregation": "asynchronous"}, "aggregation: Input should be 'sync' or 'buffered'"),
])
def test_what_osml_cannot_mean_is_one_line(settings: dict[str, Any], message: str,
                                           tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(InputError, match=re.escape(f"f.yaml: {message}")):
        OsmlConfig.validated(settings, "f.yaml")
    path = tmp_path / "osml.yaml"
    path.write_text(yaml.safe_dump({"mode": "osml", "epochs": 1, **settings,
                                    "data": {"generated": "simple", "seed": 0}}))
    code = main(["run", str(path), "--out", str(tmp_path / "r")])
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("osmotic: error: ")]
    assert code == EXIT["input"] and len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "r").exists()


def test_the_data_decide_the_agents(tiny_context: Callable,
                                    tiny_config: Callable[..., OsmlConfig],
                                    tmp_path: Path) -> None:
    """Without `agents`, a buffer or a clock file is checked against the data's agents."""
    train, test = tiny_context()
    train, test = {a: train[a] for a in AGENTS}, {a: test[a] for a in AGENTS}
    with pytest.raises(InputError, match=r"^buffer: at most the 4 agents, got 9$"):
        train_osml(tiny_config(aggregation="buffered", buffer=9), train, test, progress=False)
    speeds = tmp_path / "speeds.csv"
    speeds.write_text("terminal,speed\n0,1\n1,1\nM0,1\n")
    with pytest.raises(InputError, match="terminal M1: missing"):
        train_osml(tiny_config(clock={"file": str(speeds)}), train, test, progress=False)
    speeds.write_text("terminal,speed,delay\n0,1,0\n1,1,0\nM0,1,0\nM1,0.1,0\n")
    run = train_osml(tiny_config(clock={"file": str(speeds)}, aggregation="buffered",
                                 buffer=3, epochs=1), train, test, progress=False)
    assert run.metrics[0]["sim_time"] == 120.0 and run.metrics[0]["late_share"] == 0.25


def test_a_relative_clock_file_is_taken_from_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "speeds.csv").write_text("terminal,speed\na,1\nb,2\n")
    path = tmp_path / "osml.yaml"
    path.write_text(yaml.safe_dump({"agents": ["a", "b"], "clock": {"file": "speeds.csv"}}))
    config = OsmlConfig.from_yaml(path)
    assert config.clock.file == str((tmp_path / "speeds.csv").resolve())
    assert batch_durations(config.with_overrides(batch_size=20), ["a", "b"]) == [20.0, 10.0]
