"""The paper's presets as data, settings precedence, run-directory names and data sources."""
from __future__ import annotations

from pathlib import Path

import pytest

from osmotic.osml.experiments import (
    EXPERIMENTS,
    CsvSource,
    GeneratedSource,
    default_out,
    source_from_record,
)


@pytest.mark.parametrize(("name", "context", "agents", "epochs"), [
    ("simple", "simple", ["0", "1"], 5),
    ("robust", "simple", ["0", "1", "M0", "M1"], 5),
    ("complex", "complex", ["0", "1", "2", "3", "4"], 30),
])
def test_the_papers_presets(name: str, context: str, agents: list[str], epochs: int) -> None:
    exp = EXPERIMENTS[name]
    config = exp.config()
    assert (exp.context, config.agents, config.epochs) == (context, agents, epochs)


def test_overrides_win_and_none_leaves_the_preset_alone() -> None:
    exp = EXPERIMENTS["complex"]
    assert exp.config(epochs=None).epochs == 30
    changed = exp.config(epochs=2, preserve="reference", seed=4)
    assert (changed.epochs, changed.preserve, changed.seed) == (2, "reference", 4)


def test_default_run_directory_names_changed_settings() -> None:
    assert default_out("complex", 0) == Path("runs/osml/complex-seed0")
    assert default_out("robust", 3, preserve="reference", epochs=None) == Path(
        "runs/osml/robust-reference-seed3")
    assert default_out("simple", 1, epochs=2) == Path("runs/osml/simple-epochs2-seed1")


def test_sources_round_trip_through_their_record(tmp_path: Path) -> None:
    csv = CsvSource.paper(tmp_path, "complex")
    assert csv.train == tmp_path / "complex-context" / "train_data.csv"
    assert source_from_record(csv.record()) == CsvSource(csv.train.resolve(), csv.test.resolve())
    generated = GeneratedSource("simple", 7)
    assert source_from_record(generated.record()) == generated
    relative = source_from_record({"train": "a.csv", "test": "/b.csv"}, relative_to=tmp_path)
    assert relative == CsvSource(tmp_path / "a.csv", Path("/b.csv"))
    for bad in ({"train": "a.csv"}, "a.csv"):
        with pytest.raises(ValueError, match="data: expected"):
            source_from_record(bad)


def test_a_missing_paper_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="simple-context/train_data.csv: no such file"):
        CsvSource.paper(tmp_path, "simple").load(window=10)
