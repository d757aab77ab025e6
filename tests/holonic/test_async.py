"""Asynchronous rounds: the simulated clock, synchronous rounds timed by it, and buffered
aggregation (FedBuff) at the root of a one-level holarchy or at every head of a deeper one,
with dropouts."""
from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import torch
from opacus.accountants import RDPAccountant
from pydantic import ValidationError

from osmotic.holarchy.buffered import BufferedHead, buffering_head, staleness_weight
from osmotic.holarchy.builders import fedavg, structure
from osmotic.holarchy.privacy import HolarchyPrivacy
from osmotic.holarchy.schedule import Participation
from osmotic.holonic.config import HolonicConfig
from osmotic.holonic.runner import load_data, run
from osmotic.runtime.clock import ClockSettings, SimClock, read_clock_file, stragglers
from osmotic.runtime.privacy import PrivacySettings, Release, calibrate
from osmotic.settings import InputError
from tests.holonic.test_resume import models, same_numbers

TWENTY = {"holarchy": {"holarchy": {"id": "R", "members": [str(i) for i in range(20)]}}}
SMALL = {**TWENTY, "data": "digits", "pool_size": 300, "distribution": "ueqniid", "rounds": 4,
         "local_epochs": 1, "lr": 0.05, "participation": 0.3, "threads": 1}
STRAGGLERS = {"speed": {"distribution": "lognormal", "sigma": 0.5}, "stragglers": 0.1,
              "straggler_factor": 10}
TWO_LEVELS = {"holarchy": {"holarchy": {"id": "R", "members": [
    {"id": "H1", "members": [str(i) for i in range(10)]},
    {"id": "H2", "members": [str(i) for i in range(10, 20)]}]}}}
"""The paper's 2L shape, 20 terminals, without neighbour edges (buffered takes none)."""
LOCAL_DP = {"clip": 0.5, "noise_multiplier": 0.8, "where": "local", "delta": 1e-3}
RECORD_DP = {"clip": 1.0, "noise_multiplier": 1.0, "level": "record", "delta": 1e-3}
ASYNC_ONLY = {"messages", "bytes", "staleness", "arrived", "aggregated_heads"}
"""Keys of a buffered row that differ from a synchronous one by definition: the head sends
its model to the terminals that start, not to every member, and staleness and the order of
arrival are buffered's own."""


def small(**changes: Any) -> HolonicConfig:
    return HolonicConfig(**{**SMALL, **changes})


def rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]

def buffered_equals_sync(config: HolonicConfig, tmp_path: Path, digits: Any
                         ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Run `config` synchronously and buffered; assert the rows (apart from what buffered
    adds) and the saved models are the same bits; both summaries, then both runs' rows."""
    sync = run(config, tmp_path / "sync", digits, progress=False)
    buffered = run(config.with_overrides(aggregation="buffered"), tmp_path / "buffered",
                   digits, progress=False)
    got, want = rows(tmp_path / "buffered"), rows(tmp_path / "sync")
    assert [{k: v for k, v in r.items() if k not in ASYNC_ONLY} for r in got] == \
        [{k: v for k, v in r.items() if k not in ASYNC_ONLY} for r in want]
    ms, mb = models(Path(sync["run_dir"])), models(Path(buffered["run_dir"]))
    assert ms.keys() == mb.keys() and all(torch.equal(ms[k], mb[k]) for k in ms)
    return sync, buffered, got, want



@pytest.fixture(scope="module")
def digits() -> Any:
    return load_data(small())


@pytest.mark.parametrize("clock", [None, STRAGGLERS], ids=["equal-speeds", "stragglers"])
def test_buffered_with_every_drawn_terminal_equals_sync_bit_for_bit(
        tmp_path: Path, digits: Any, clock: dict[str, Any] | None) -> None:
    """B = the terminals drawn per round: nothing is ever stale, every aggregation is a
    synchronous round, so losses, accuracies, simulated times and models are the same bits.
    (Without a clock block the sync run takes the unchanged synchronous code path.)"""
    *_, got, _ = buffered_equals_sync(small(clock=clock), tmp_path, digits)
    assert all(r["staleness"] == 0 for r in got)
    assert ("sim_time" in got[-1]) == (clock is not None)


@pytest.mark.parametrize("clock", [None, STRAGGLERS], ids=["equal-speeds", "stragglers"])
def test_buffered_with_dropouts_equals_sync_with_the_same_dropouts(
        tmp_path: Path, digits: Any, clock: dict[str, Any] | None) -> None:
    """B = the terminals drawn per round, dropout_rate 0.3: a terminal drops out of the round
    it started for by `Participation`'s own draw (seed, terminal, round), trains, and the head
    stops waiting for it when its update would have arrived: every aggregation is the
    synchronous round with the same dropouts, bit for bit (simulated time included)."""
    *_, got, want = buffered_equals_sync(small(clock=clock, dropout_rate=0.3, rounds=5),
                                         tmp_path, digits)
    assert any(r["reported"] < r["trained"] for r in want)  # some terminals dropped out
    assert all(r["reported"] > 0 for r in want)  # (a round nobody reports differs: docs)
    assert all(len(r["arrived"]) == r["reported"] for r in got)


@pytest.mark.parametrize("dropout_rate", [0.0, 0.3], ids=["all-report", "dropouts"])
def test_two_levels_buffered_with_every_drawn_terminal_equals_sync_bit_for_bit(
        tmp_path: Path, digits: Any, dropout_rate: float) -> None:
    """Two heads over ten terminals each under a root, budget K = 2, equal speeds, B = the
    terminals each head draws per round: both heads fill at once, so each event is a
    synchronous round (both aggregate, report up every K, the root waits for both and sends
    down): the same rows and models, bit for bit."""
    config = small(**TWO_LEVELS, budget=2, rounds=5, dropout_rate=dropout_rate)
    *_, got, want = buffered_equals_sync(config, tmp_path, digits)
    assert all(r["aggregated_heads"] == ["H1", "H2"] and r["staleness"] == 0 for r in got)
    assert any(r["reported"] < r["trained"] for r in want) == (dropout_rate > 0)


def test_two_levels_buffered_reaches_the_aggregations_sooner_and_resumes(
        tmp_path: Path, digits: Any) -> None:
    """10 % stragglers: four synchronous rounds are eight head aggregations, each round
    waiting for its slowest terminal; with B = 2 of 5 in flight per head the heads make those
    eight aggregations in less simulated time, each on its own, and a resumed run ends where
    the uninterrupted one does."""
    config = small(**TWO_LEVELS, clock={"stragglers": 0.1}, participation=0.5, rounds=4)
    run(config, tmp_path / "sync", digits, progress=False)
    buffered = config.with_overrides(aggregation="buffered", buffer=2, rounds=10,
                                     checkpoint_every=3)
    straight = run(buffered, tmp_path / "buffered", digits, progress=False)
    sync, got = rows(tmp_path / "sync"), rows(tmp_path / "buffered")
    done = [sum(len(r["aggregated_heads"]) for r in got[: i + 1]) for i in range(len(got))]
    eighth = got[next(i for i, n in enumerate(done) if n >= 8)]
    assert eighth["sim_time"] < sync[-1]["sim_time"]
    assert any(len(r["aggregated_heads"]) == 1 for r in got)
    assert max(r["staleness"] for r in got) > 0
    run(buffered.with_overrides(rounds=5), tmp_path / "cut", digits, progress=False)
    (tmp_path / "cut" / "summary.json").unlink()
    resumed = run(buffered, tmp_path / "cut", digits, progress=False, resume=True)
    same_numbers(straight, resumed)
    assert rows(tmp_path / "cut") == got


@pytest.mark.parametrize(("changes", "block"), [
    ({}, LOCAL_DP), ({"dropout_rate": 0.3, "rounds": 5}, LOCAL_DP),
    ({**TWO_LEVELS, "budget": 2}, LOCAL_DP), ({}, RECORD_DP)],
    ids=["local", "local-dropouts", "local-two-levels", "record"])
def test_buffered_with_dp_and_every_drawn_terminal_equals_sync_bit_for_bit(
        tmp_path: Path, digits: Any, changes: dict[str, Any], block: dict[str, Any]) -> None:
    """Local DP: a terminal whose update arrives sends it clipped and with its own noise,
    relative to the model it started from, keyed by the version it started from + 1: with
    equal speeds and B = all drawn that is the synchronous round's key and model, so rows
    (ε included: the updates each terminal sent are the rounds it reported in), models and
    the summary's privacy entry are the same bits. Record level: DP-SGD inside training,
    unchanged."""
    sync, buffered, got, _ = buffered_equals_sync(small(privacy=block, **changes), tmp_path,
                                                  digits)
    assert all(r["staleness"] == 0 for r in got)
    assert 0 < got[0]["epsilon"] < got[-1]["epsilon"]
    assert buffered["privacy"] == sync["privacy"]


def test_buffered_local_dp_epsilon_counts_the_updates_each_terminal_sent(
        tmp_path: Path, digits: Any) -> None:
    """Stragglers, B = 3 of 10 in flight: ε after each aggregation is Opacus' for the
    terminal that has sent the most updates so far (sampling rate 1), never falling; the
    summary's privacy entry has the synchronous shape and the last row's ε; a resumed run
    (the counts are in the checkpoint) ends with the same rows."""
    config = small(clock=STRAGGLERS, aggregation="buffered", buffer=3, participation=0.5,
                   rounds=6, checkpoint_every=2, privacy=LOCAL_DP)
    straight = run(config, tmp_path / "straight", digits, progress=False)
    got = rows(tmp_path / "straight")
    sent: dict[str, int] = {}
    busiest = []
    for r in got:
        for t in r["arrived"]:
            sent[t] = sent.get(t, 0) + 1
        busiest.append(max(sent.values()))
    assert busiest[-1] > busiest[0]
    expected = []
    for n in busiest:
        accountant = RDPAccountant()
        accountant.history = [(LOCAL_DP["noise_multiplier"], 1.0, n)]
        expected.append(accountant.get_epsilon(LOCAL_DP["delta"]))
    assert [r["epsilon"] for r in got] == pytest.approx(expected, rel=1e-12)
    assert all(a["epsilon"] <= b["epsilon"] for a, b in pairwise(got))
    sync = run(small(privacy=LOCAL_DP, rounds=1), tmp_path / "sync", digits, progress=False)
    assert straight["privacy"].keys() == sync["privacy"].keys()
    assert straight["privacy"]["epsilon"] == got[-1]["epsilon"]
    run(config.with_overrides(rounds=3), tmp_path / "cut", digits, progress=False)
    (tmp_path / "cut" / "summary.json").unlink()
    resumed = run(config, tmp_path / "cut", digits, progress=False, resume=True)
    same_numbers(straight, resumed)
    assert rows(tmp_path / "cut") == got


def test_buffered_target_epsilon_is_calibrated_for_an_update_every_unit() -> None:
    """A buffered terminal can send an update in every aggregation, so a `target_epsilon`
    is calibrated for `rounds` updates (conservative), not for the rounds `Participation`
    would draw the busiest terminal in."""
    h, settings = fedavg(10), PrivacySettings(clip=1.0, target_epsilon=4.0, where="local",
                                              delta=1e-3)

    def plan(buffered: bool) -> HolarchyPrivacy:
        return HolarchyPrivacy(settings, h, Participation(h, 0.3), dict.fromkeys(
            h.terminals(), 10), 5, batch_size=5, epochs=1, buffered=buffered)

    buffered, sync = plan(True), plan(False)
    assert buffered.noise_multiplier == calibrate(4.0, Release(1.0), 5, 1e-3)
    assert buffered.noise_multiplier > sync.noise_multiplier
    assert buffered.epsilon(5) == 0.0  # nothing sent yet
    for _ in range(5):
        buffered.count(h.terminals())
    assert 3.5 < buffered.epsilon(5) <= 4.0


def test_a_dropout_ends_its_flight_unaggregated() -> None:
    """A terminal that drops out is one of the B flights that end, at its would-be arrival
    time; only the others are aggregated, and its slot is drawn anew."""
    head = BufferedHead("R", ["a", "b", "c"], dict.fromkeys("abc", 1.0), torch.zeros(1),
                        buffer=2, concurrency=2, seed=3, dropout_rate=0.5)
    head.fill({"a": 1.0, "b": 2.0, "c": 3.0})
    ended = head.arrivals()
    kept = [t for t in ended if not head.drops(t)]
    gone = [t for t in ended if head.drops(t)]
    assert (ended, gone) == (["b", "c"], ["b"])
    model = head.aggregate({t: torch.ones(1) for t in kept}, gone)
    assert head.version == 1 and not head.flights and head.now == 3.0
    assert torch.equal(model, torch.ones(1))
    assert head.fill({"a": 1.0, "b": 2.0, "c": 3.0}) != []  # both slots drawn anew
    empty = head.aggregate({}, head.arrivals())  # nothing arrived: the model stays
    assert torch.equal(empty, model) and head.version == 2
    drops = {t: BufferedHead("R", [t], {t: 1.0}, torch.zeros(1), buffer=1, concurrency=1,
                             seed=3, dropout_rate=0.5) for t in "abc"}
    for t, h in drops.items():
        h.fill({t: 1.0})
    assert [t for t in ended if drops[t].drops(t)] == gone  # (seed, terminal, round) alone


def test_staleness_weights_and_stale_updates() -> None:
    """Three members, two updates per aggregation: the second aggregation takes a fresh
    update as it is and a stale one as the head's model plus its delta, weighted data size ×
    (1 + s)^-a, normalised."""
    assert staleness_weight(0, 0.5) == 1.0
    assert staleness_weight(3, 0.5) == pytest.approx(0.5)
    assert staleness_weight(5, 0.0) == 1.0
    init = torch.zeros(2)
    sizes = {"a": 1.0, "b": 3.0, "c": 2.0}
    head = BufferedHead("R", ["a", "b", "c"], sizes, init, buffer=2, concurrency=3, seed=0)
    assert head.fill({"a": 1.0, "b": 2.0, "c": 3.0}) == ["a", "b", "c"]
    assert head.arrivals() == ["a", "b"]
    ta, tb = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    first = head.aggregate({"a": ta, "b": tb})
    torch.testing.assert_close(first, (1 * ta + 3 * tb) / 4)
    assert head.version == 1 and head.now == 2.0
    assert sorted(head.fill({"a": 1.0, "b": 2.0, "c": 3.0})) == ["a", "b"]  # c is in flight
    assert head.arrivals() == ["a", "c"]  # both at time 3: ties go in member order
    assert head.staleness("a") == 0 and head.staleness("c") == 1
    ta2, tc = torch.tensor([2.0, 2.0]), torch.tensor([4.0, -4.0])
    second = head.aggregate({"a": ta2, "c": tc})
    wa, wc = 1.0, 2.0 * 2 ** -0.5
    stale = first + (tc - init)  # c started from version 0's model
    torch.testing.assert_close(second, (wa * ta2 + wc * stale) / (wa + wc))
    assert head.now == 3.0 and list(head.flights) == ["b"]


def test_buffered_state_round_trips() -> None:
    head = BufferedHead("R", ["a", "b", "c"], dict.fromkeys("abc", 1.0), torch.zeros(2),
                        buffer=1, concurrency=2, seed=3)
    head.fill({"a": 1.0, "b": 2.5, "c": 1.5})
    head.aggregate({t: torch.ones(2) for t in head.arrivals()})
    head.fill({"a": 1.0, "b": 2.5, "c": 1.5})
    tensors, meta = head.state()
    other = BufferedHead("R", ["a", "b", "c"], dict.fromkeys("abc", 1.0), torch.zeros(2),
                         buffer=1, concurrency=2, seed=3)
    other.load_state(tensors, json.loads(json.dumps(meta)))
    assert other.flights == head.flights and other.version == head.version == 1
    assert all(torch.equal(other.starts[t], head.starts[t]) for t in head.starts)
    assert other.arrivals() == head.arrivals() and other.draw(1) == head.draw(1)


def test_stragglers_cost_sync_more_simulated_time(tmp_path: Path, digits: Any) -> None:
    """10 % of terminals 10x slower: a synchronous round waits for any straggler it drew; a
    buffered head (B = half the terminals in flight) aggregates the same number of updates
    in much less simulated time, and reaches the same number of aggregations sooner still."""
    config = small(clock={"stragglers": 0.1}, participation=0.5, rounds=4)
    run(config, tmp_path / "sync", digits, progress=False)
    run(config.with_overrides(aggregation="buffered", buffer=5, rounds=8),
        tmp_path / "buffered", digits, progress=False)
    sync, buffered = rows(tmp_path / "sync"), rows(tmp_path / "buffered")
    assert sum(r["trained"] for r in sync) == sum(r["trained"] for r in buffered) == 40
    assert buffered[3]["sim_time"] < buffered[-1]["sim_time"] < sync[-1]["sim_time"]
    assert max(r["staleness"] for r in buffered) > 0
    assert all(a["sim_time"] < b["sim_time"] for a, b in pairwise(sync))


def test_buffered_resume_equals_uninterrupted(tmp_path: Path, digits: Any) -> None:
    config = small(clock=STRAGGLERS, aggregation="buffered", buffer=3, checkpoint_every=1)
    straight = run(config, tmp_path / "straight", digits, progress=False)
    run(config.with_overrides(rounds=2), tmp_path / "cut", digits, progress=False)
    (tmp_path / "cut" / "summary.json").unlink()
    resumed = run(config, tmp_path / "cut", digits, progress=False, resume=True)
    same_numbers(straight, resumed)
    assert rows(tmp_path / "cut") == rows(tmp_path / "straight")
    assert max(r["staleness"] for r in rows(tmp_path / "cut")) > 0


def test_sync_rows_carry_sim_time_only_with_a_clock(tmp_path: Path, digits: Any) -> None:
    config = small(rounds=2, clock={"speed": 2.0, "delay": 1.0})
    run(config, tmp_path / "timed", digits, progress=False)
    timed = rows(tmp_path / "timed")
    clock = SimClock(config.clock, {str(i): 1 for i in range(20)}, 1, 0)
    assert clock.duration("0") == 1 / 2.0 + 1.0
    assert 0 < timed[0]["sim_time"] < timed[1]["sim_time"]
    run(small(rounds=2), tmp_path / "plain", digits, progress=False)
    assert all("sim_time" not in r for r in rows(tmp_path / "plain"))


def test_clock_draws_depend_on_seed_and_ids_only() -> None:
    settings = ClockSettings(speed={"distribution": "lognormal", "sigma": 1.0},
                             delay={"distribution": "uniform", "low": 1, "high": 2})
    ten = SimClock(settings, {str(i): 5 for i in range(10)}, 2, seed=7)
    twenty = SimClock(settings, {str(i): 5 for i in reversed(range(20))}, 2, seed=7)
    assert all(ten.speed[t] == twenty.speed[t] and ten.delay[t] == twenty.delay[t]
               for t in ten.speed)
    assert SimClock(settings, {"0": 5}, 2, seed=8).speed["0"] != ten.speed["0"]
    assert ten.duration("3") == 5 * 2 / ten.speed["3"] + ten.delay["3"]
    slow = stragglers([str(i) for i in range(100)], 0.1, seed=0)
    assert len(slow) == 10 and slow == stragglers([str(i) for i in range(100)], 0.1, seed=0)
    drawn = SimClock(ClockSettings(stragglers=0.1, straggler_factor=4),
                     {str(i): 1 for i in range(100)}, 1, seed=0)
    assert sorted(t for t, v in drawn.speed.items() if v == 0.25) == sorted(slow)


def test_clock_file(tmp_path: Path) -> None:
    good = tmp_path / "speeds.csv"
    good.write_text("terminal,speed,delay\n0,2,1\n1,0.5,\n")
    assert read_clock_file(good, ["0", "1"]) == {"0": (2.0, 1.0), "1": (0.5, 0.0)}
    yml = tmp_path / "speeds.yaml"
    yml.write_text("0: {speed: 2, delay: 1}\n1: 0.5\n")
    assert read_clock_file(yml, ["0", "1"]) == {"0": (2.0, 1.0), "1": (0.5, 0.0)}
    with pytest.raises(InputError, match=r"speeds.csv: terminal 7: not a terminal"):
        read_clock_file(_write(good, "terminal,speed\n0,1\n1,1\n7,1\n"), ["0", "1"])
    with pytest.raises(InputError, match=r"speeds.csv: terminal 1: missing"):
        read_clock_file(_write(good, "terminal,speed\n0,1\n"), ["0", "1"])
    with pytest.raises(InputError, match=r"speeds.yaml: terminal 1: speed must be a positive"):
        read_clock_file(_write(yml, "0: 1\n1: {speed: 0}\n"), ["0", "1"])
    with pytest.raises(InputError, match="no such clock file"):
        read_clock_file(tmp_path / "none.csv", ["0"])


def test_clock_file_in_a_config_is_taken_from_its_folder(tmp_path: Path) -> None:
    (tmp_path / "speeds.csv").write_text("terminal,speed\n" + "".join(
        f"{i},{i + 1}\n" for i in range(20)))
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"mode": "holonic", **TWENTY, "data": "digits",
                                  "clock": {"file": "speeds.csv"}}))
    assert HolonicConfig.from_yaml(config).clock.file == str(tmp_path / "speeds.csv")
    (tmp_path / "speeds.csv").write_text("terminal,speed\n0,1\n")
    with pytest.raises(InputError, match=r"run.yaml: .*speeds.csv: terminal 1: missing"):
        HolonicConfig.from_yaml(config)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(("changes", "message"), [
    ({"structure": "2L", "holarchy": None}, "buffered needs a holarchy without neighbour edges"),
    ({"structure": "1P", "holarchy": None}, "buffered needs a holarchy without neighbour edges"),
    ({"holarchy": {"holarchy": {"id": "R", "members": [
        "0", {"id": "H", "members": ["1", "2"]}]}}}, "all terminals or all non-terminals"),
    ({**TWO_LEVELS, "buffer": 4}, "at most the 3 terminals drawn per round by the smallest"),
    ({"buffer": 7}, "buffer: at most the 6 terminals drawn per round"),
    ({"privacy": {"clip": 1.0, "noise_multiplier": 1.0}},
     "does not take privacy.where: central: .* no noise can be sized to a fixed cohort"),
    ({"privacy": {"secure_aggregation": True, "where": "local"}},
     "does not take privacy.secure_aggregation: no fixed set of members"),
])
def test_buffered_refusals(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        HolonicConfig.validated({**SMALL, "aggregation": "buffered", **changes}, "config")
    assert len(str(_error({**SMALL, "aggregation": "buffered", **changes})).splitlines()) == 1


def test_buffer_needs_buffered_and_one_level_fedavg_is_accepted() -> None:
    with pytest.raises(InputError, match="buffer: only with aggregation: buffered"):
        HolonicConfig.validated({**SMALL, "buffer": 2}, "config")
    assert buffering_head(fedavg(5)) == "R"
    with pytest.raises(ValueError, match="one-level"):
        buffering_head(structure("3L"))
    with pytest.raises(ValidationError):
        small(aggregation="buffered", staleness_exponent=-1)


def _error(data: dict[str, Any]) -> InputError:
    try:
        HolonicConfig.validated(data, "config")
    except InputError as e:
        return e
    raise AssertionError("not refused")
