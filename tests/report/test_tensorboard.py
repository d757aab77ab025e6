"""The TensorBoard logger: rows become scalars (nested as parent/child), read back with
TensorBoard's own reader; a resumed or rewound run shows each step once."""
from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from osmotic.report.tensorboard import TensorBoardLogger, scalars


def read(folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(folder))
    events.Reload()
    return events


def test_scalars_flatten_and_skip_what_is_not_a_number() -> None:
    row = {"loss": 0.5, "acc": None, "messages": {"h": 3, "v": 4}, "ok": True,
           "groups": [{"agents": ["0"]}], "nan": float("nan")}
    assert dict(scalars(row)) == {"loss": 0.5, "messages/h": 3.0, "messages/v": 4.0, "ok": 1.0}


def test_rows_read_back_and_rewinds_replace_steps(tmp_path: Path) -> None:
    log = TensorBoardLogger(tmp_path)
    for r in (1, 2, 3):
        log({"round": r, "mean_train_loss": 1.0 / r, "traffic": {"vertical": 10 * r}})
    log({"round": 2, "mean_train_loss": 0.25, "traffic": {"vertical": 20}})  # a rewind
    log.close()
    resumed = TensorBoardLogger(tmp_path)  # a resumed run, in a new process
    resumed({"round": 3, "mean_train_loss": 0.125, "traffic": {"vertical": 30}})
    resumed.close()
    events = read(tmp_path)
    loss = events.Scalars("mean_train_loss")
    assert [e.step for e in loss] == [1, 2, 3]
    assert [e.value for e in loss] == pytest.approx([1.0, 0.25, 0.125])
    assert [e.value for e in events.Scalars("traffic/vertical")] == [10, 20, 30]


def test_a_row_without_a_step_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs one of \\('round', 'epoch'\\)"):
        TensorBoardLogger(tmp_path)({"loss": 1.0})
