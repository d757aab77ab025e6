"""Asynchronous rounds in D-SSL, on the drivers holonic uses (`holarchy.asynchronous`): FL's
buffered server with B = every drawn client is the synchronous run, a `clock:` block times FL
and DecL rounds, the order of arrival is recorded, and what buffering cannot do is refused in
one line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from osmotic.dssl.config import DsslConfig
from osmotic.dssl.runner import load_data, run
from osmotic.settings import InputError
from tests.dssl.conftest import TINY, tiny
from tests.dssl.test_runs import final, same_numbers

ASYNC_ONLY = {"messages", "bytes", "staleness", "arrived"}
"""Keys of a buffered row that differ from a synchronous one by definition (the server sends
its model to the clients that start, and staleness and arrival order are buffered's own)."""


def rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def common(run_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in ASYNC_ONLY} for r in run_rows]


@pytest.fixture(scope="module")
def pool() -> Any:
    return load_data(tiny())


@pytest.mark.parametrize(("participation", "dropout"), [(1.0, 0.0), (0.5, 0.0), (0.5, 0.4)],
                         ids=["all", "half", "half-dropouts"])
def test_buffered_fl_with_every_drawn_client_equals_sync_bit_for_bit(
        tmp_path: Path, pool: Any, participation: float, dropout: float) -> None:
    """Equal speeds, B = the clients drawn per round: nothing is ever stale, every
    aggregation is a synchronous round: the same rows (drift too, over the clients that
    trained, dropouts included), models and probes, bit for bit."""
    config = tiny(participation=participation, dropout_rate=dropout)
    sync = run(config, tmp_path / "sync", pool, progress=False)
    buffered = run(config.with_overrides(aggregation="buffered"), tmp_path / "buffered", pool,
                   progress=False)
    got, want = rows(tmp_path / "buffered"), rows(tmp_path / "sync")
    assert common(got) == common(want)
    assert all(r["staleness"] == 0 for r in got)
    assert all(len(r["arrived"]) == r.get("reported", int(4 * participation)) for r in got)
    same_numbers({k: v for k, v in sync.items() if k not in ASYNC_ONLY},
                 {k: v for k, v in buffered.items() if k not in ASYNC_ONLY})


def test_buffered_records_the_order_of_arrival_and_resumes_exactly(tmp_path: Path,
                                                                   pool: Any) -> None:
    """Client speeds from a file: local work is local_steps × batch_size = 16 samples, so
    the first turns end at 16 / speed (3: 2, 1: 4, 2: 8, 0: 16 simulated seconds). B = 2: the
    server aggregates 3 and 1 at 4, again at 8 (3 at 6; 1 and 2 tie at 8, member order
    first), then 2 (two versions stale) and 3 at 10; a resumed run ends where the
    uninterrupted one does."""
    speeds = tmp_path / "speeds.csv"
    speeds.write_text("terminal,speed\n0,1\n1,4\n2,2\n3,8\n")
    config = tiny(aggregation="buffered", buffer=2, rounds=3, clock={"file": str(speeds)})
    straight = run(config, tmp_path / "straight", pool, progress=False)
    got = rows(tmp_path / "straight")
    assert [r["arrived"] for r in got] == [["3", "1"], ["3", "1"], ["2", "3"]]
    assert [r["sim_time"] for r in got] == [4.0, 8.0, 10.0]
    assert [r["staleness"] for r in got] == [0.0, 0.0, 1.0]
    assert all(r["trained"] == r["reported"] == 2 for r in got)
    run(config.with_overrides(rounds=2), tmp_path / "cut", pool, progress=False)
    (tmp_path / "cut" / "summary.json").unlink()
    resumed = run(config, tmp_path / "cut", pool, progress=False, resume=True)
    same_numbers(straight, resumed)
    assert rows(tmp_path / "cut") == got


@pytest.mark.parametrize("framework", ["fl", "decl"])
def test_a_clock_times_sync_rounds(tmp_path: Path, pool: Any, framework: str) -> None:
    """A round of local_steps × batch_size = 16 samples at speed 2 with a delay of 1 lasts
    9 simulated seconds; the numbers are the unclocked run's."""
    config = tiny(framework=framework, degree=2)
    plain = run(config, tmp_path / "plain", pool, progress=False)
    timed = run(config.with_overrides(clock={"speed": 2, "delay": 1}), tmp_path / "timed",
                pool, progress=False)
    assert [r["sim_time"] for r in rows(tmp_path / "timed")] == [9.0, 18.0]
    assert [{k: v for k, v in r.items() if k != "sim_time"} for r in rows(tmp_path / "timed")] \
        == rows(tmp_path / "plain")
    assert all("sim_time" not in r for r in rows(tmp_path / "plain"))
    assert torch.equal(final(plain)["consensus"], final(timed)["consensus"])


@pytest.mark.parametrize(("changes", "message"), [
    ({"framework": "decl", "degree": 2}, "buffered is FL's: a DecL graph has no head"),
    ({"method": "mar", "mar_target": "reference"}, "does not take MAR's latent exchange"),
    ({"privacy": {"clip": 1.0, "noise_multiplier": 1.0}}, "does not take privacy.where: central"),
    ({"privacy": {"secure_aggregation": True, "where": "local"}},
     "does not take privacy.secure_aggregation"),
    ({"buffer": 5}, "buffer: at most the 4 terminals drawn per round"),
])
def test_buffered_refusals(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message) as refused:
        DsslConfig.validated({**TINY, "aggregation": "buffered", **changes}, "config")
    assert len(str(refused.value).splitlines()) == 1


def test_clock_file_must_list_the_clients(tmp_path: Path) -> None:
    speeds = tmp_path / "speeds.csv"
    speeds.write_text("terminal,speed\n0,1\n1,1\n2,1\n")
    with pytest.raises(InputError, match=r"speeds.csv: terminal 3: missing"):
        DsslConfig.validated({**TINY, "framework": "decl", "degree": 2,
                              "clock": {"file": str(speeds)}}, "config")
    assert tiny(method="mar", mar_target="model", aggregation="buffered").buffer is None
