"""Holonic runs on the Ray engine: the in-process numbers for any number of actors, exact
resume, and a killed actor either stops the run with one clear line or is restarted."""
from __future__ import annotations

from pathlib import Path

import pytest

from osmotic.engines import RunInterrupted
from osmotic.holonic.runner import load_data, run
from tests.engines.test_ray import kill_an_actor_at
from tests.holonic.test_resume import interrupted_then_resumed, same_numbers, small

RAY = {"engine": "ray", "actors": 2}


def test_parity_with_inprocess_for_any_number_of_actors(ray_local, tmp_path: Path) -> None:
    config = small(rounds=2)
    data = load_data(config)
    local = run(config, tmp_path / "local", data)
    two = run(config.with_overrides(**RAY), tmp_path / "two", data)
    three = run(config.with_overrides(engine="ray", actors=3), tmp_path / "three", data)
    assert two["engine"] == "ray"
    same_numbers({**local, "engine": "ray"}, two, atol=1e-5)
    same_numbers(two, three, atol=1e-5)


def test_resume_equals_uninterrupted_on_ray(ray_local, tmp_path: Path) -> None:
    straight, resumed, _ = interrupted_then_resumed(tmp_path, **RAY)
    same_numbers({**straight, "engine": "ray"}, resumed, atol=1e-5)


def test_killed_actor_stops_with_one_clear_error(ray_local, tmp_path: Path) -> None:
    with pytest.raises(RunInterrupted, match=r"losing agents .*last checkpoint: round 1; "
                                             r"resume with: osmotic resume"):
        run(small(rounds=3, **RAY), tmp_path / "run", log=kill_an_actor_at("round", 1))


def test_killed_actor_is_restarted_and_the_run_completes(ray_local, tmp_path: Path) -> None:
    config = small(rounds=3, **RAY)
    data = load_data(config)
    straight = run(config.with_overrides(engine="inprocess"), tmp_path / "straight", data)
    restarted = run(config.with_overrides(restart_failed=True), tmp_path / "run", data,
                    log=kill_an_actor_at("round", 1))
    same_numbers({**straight, "engine": "ray"}, restarted, atol=1e-5)


@pytest.mark.parametrize("changes", [
    {"participation": 0.5, "dropout_rate": 0.3},
    {"privacy": {"clip": 1.0, "noise_multiplier": 0.5, "where": "local"}},
    {"model": "mlp", "privacy": {"clip": 1.0, "noise_multiplier": 0.5, "level": "record"}},
], ids=["dropouts", "local-dp", "dp-sgd"])
def test_partial_and_private_runs_on_ray_equal_inprocess(ray_local, tmp_path: Path,
                                                         changes: dict) -> None:
    """Draws, local noise (the driver's, per terminal and round) and DP-SGD noise (each
    terminal's own generator, in its actor) do not depend on the engine."""
    config = small(rounds=2, **changes)
    data = load_data(config)
    local = run(config, tmp_path / "local", data)
    two = run(config.with_overrides(**RAY), tmp_path / "two", data)
    same_numbers({**local, "engine": "ray"}, two, atol=1e-5)
