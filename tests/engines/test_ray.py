"""The Ray engine: same numbers as in-process for any number of actors, exact resume, and a
killed actor either stops the run with one clear line or is restarted from the checkpoint."""
from __future__ import annotations

import os
import signal
import subprocess

import numpy as np
import pytest

from osmotic.engines import RunInterrupted
from osmotic.holonic.runner import load_data as holonic_data
from osmotic.holonic.runner import run as run_holonic
from osmotic.osml.trainer import train_osml
from osmotic.report.rundir import RunDir
from osmotic.runtime.session import Session
from tests.holonic.test_async import STRAGGLERS, rows, small
from tests.osml.test_resume import AGENTS, interrupted_then_resumed


def close(a, b) -> None:
    """Same sub-contexts, metrics within 1e-5 (batching agents differently moves the last bits)."""
    assert a.summary["subcontexts"] == pytest.approx(b.summary["subcontexts"], abs=1e-5)
    assert a.summary["unclustered"] == b.summary["unclustered"]
    for key in ("context_accuracy", "rank_score"):
        assert a.summary[key] == pytest.approx(b.summary[key], abs=1e-5)
    np.testing.assert_allclose(a.test_embeddings, b.test_embeddings, atol=1e-5)


def test_parity_with_inprocess_for_any_number_of_actors(ray_local, tiny_context, tiny_config):
    train, test = tiny_context()
    config = tiny_config(agents=AGENTS)
    local = train_osml(config, train, test)
    two = train_osml(config.with_overrides(engine="ray", actors=2), train, test)
    three = train_osml(config.with_overrides(engine="ray", actors=3), train, test)
    assert two.summary["engine"] == "ray"
    close(local, two)
    close(local, three)


def test_resume_equals_uninterrupted_on_ray(ray_local, tiny_context, tiny_config, tmp_path):
    straight, resumed, _ = interrupted_then_resumed(tiny_context, tiny_config, tmp_path,
                                                    engine="ray", actors=2)
    close(straight, resumed)


def kill_an_actor_at(key: str, value: int):
    """A `log` callback that SIGKILLs one Ray actor process once `row[key] == value` (an epoch
    or a round has finished): the newest, so not one of an earlier run's still exiting."""
    def log(row: dict) -> None:
        if row[key] == value:
            out = subprocess.run(["pgrep", "-n", "-f", "ray::Host"], check=True, capture_output=True,
                                 text=True)
            os.kill(int(out.stdout.split()[0]), signal.SIGKILL)
    return log


def test_killed_actor_stops_with_one_clear_error(ray_local, tiny_context, tiny_config, tmp_path):
    train, test = tiny_context()
    config = tiny_config(epochs=3, agents=AGENTS, engine="ray", actors=2)
    with pytest.raises(RunInterrupted, match=r"losing agents .*last checkpoint: epoch 1; "
                                             r"resume with: osmotic resume"):
        train_osml(config, train, test, session=Session(config, RunDir(tmp_path / "run")),
                   log=kill_an_actor_at("epoch", 1))


def test_killed_actor_is_restarted_and_the_run_completes(ray_local, tiny_context, tiny_config,
                                                         tmp_path):
    train, test = tiny_context()
    config = tiny_config(epochs=3, agents=AGENTS, engine="ray", actors=2)
    straight = train_osml(config.with_overrides(engine="inprocess"), train, test)
    restart = config.with_overrides(restart_failed=True)
    restarted = train_osml(restart, train, test, session=Session(restart, RunDir(tmp_path / "run")),
                           log=kill_an_actor_at("epoch", 1))
    assert [r["epoch"] for r in restarted.metrics] == [1, 2, 3]
    close(straight, restarted)


def test_buffered_holonic_rows_on_ray_equal_inprocess(ray_local, tmp_path):
    """Buffered aggregation with stragglers (stale updates): which updates each aggregation
    consumes, in which order they arrived (`arrived`), their staleness and the simulated time
    are the clock's, not the actors' finishing order, so Ray's rows are in-process's (losses
    and accuracies within 1e-5, as batching agents differently moves the last bits)."""
    config = small(clock=STRAGGLERS, aggregation="buffered", buffer=3, rounds=3)
    data = holonic_data(config)
    run_holonic(config, tmp_path / "local", data, progress=False)
    run_holonic(config.with_overrides(engine="ray", actors=2), tmp_path / "ray", data,
                progress=False)
    local, ray = rows(tmp_path / "local"), rows(tmp_path / "ray")
    assert [r["arrived"] for r in ray] == [r["arrived"] for r in local]
    assert max(r["staleness"] for r in local) > 0
    exact = ("round", "arrived", "staleness", "sim_time", "trained", "reported", "messages",
             "bytes")
    for a, b in zip(local, ray, strict=True):
        assert a.keys() == b.keys()
        assert {k: a[k] for k in exact} == {k: b[k] for k in exact}
        for k in a.keys() - set(exact):
            assert b[k] == pytest.approx(a[k], abs=1e-5, nan_ok=True), k
