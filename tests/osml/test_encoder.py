"""OSM-L with an encoder of the user's own (by import path), its refusal when it cannot run
batched, and live TensorBoard logging of every epoch."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from osmotic.cli import main
from osmotic.data.timeseries import write_csv
from osmotic.models import ModelError
from osmotic.osml import experiments
from osmotic.osml.agent import OsmoticAgent

TINY = ["--epochs", "2", "--hidden", "4", "--batch-size", "20", "--cluster-every", "1",
        "--cluster-samples", "20"]


def test_the_projection_fits_the_encoders_width() -> None:
    agent = OsmoticAgent(3, window=10, dim=5, encoder="tests.models.usernets:WindowEncoder",
                         encoder_params={"width": 7})
    assert agent.project.in_features == 7 and agent.encoder.net[1].in_features == 30


def test_cli_run_with_an_import_path_encoder_and_tensorboard(
        tmp_path: Path, tiny_context: Callable, capsys: pytest.CaptureFixture) -> None:
    train, test = tiny_context()
    write_csv(tmp_path / "train.csv", train)
    write_csv(tmp_path / "test.csv", test)
    code = main(["osml", "run", "--train", str(tmp_path / "train.csv"), "--test",
                 str(tmp_path / "test.csv"), *TINY, "--encoder",
                 "tests.models.usernets:WindowEncoder", "--encoder-params", "width=6",
                 "--log", "tensorboard", "--out", str(tmp_path / "r"), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("context_accuracy")] == [1, 2]
    assert events.Scalars("context_accuracy")[-1].value == pytest.approx(
        summary["context_accuracy"], abs=1e-6)
    assert "train_loss" in events.Tags()["scalars"]


def test_an_encoder_that_cannot_be_batched_is_refused(tiny_context: Callable,
                                                      tiny_config: Callable,
                                                      tmp_path: Path) -> None:
    train, test = tiny_context()
    config = tiny_config(encoder="tests.models.usernets:ItemEncoder")
    with pytest.raises(ModelError, match="encoder\\): cannot run batched over agents .*"
                       "usernets.py:[0-9]+ .*\\.item\\(\\)"):
        experiments.run(config, train, test, tmp_path / "r")
    assert not (tmp_path / "r").exists()
