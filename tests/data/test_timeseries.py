"""The CSV loader: exact round trips, the paper's files, and one clear error per defect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from osmotic.data.timeseries import DataError, load_pair, read_csv, select, write_csv

PAPER_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "osml-paper"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _series(steps: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "0": rng.standard_normal((steps, 1)).astype(np.float32),
        "M1": (1e6 * rng.standard_normal((steps, 2))).astype(np.float32),
        "4": rng.uniform(-1e-7, 1e-7, (steps, 3)).astype(np.float32),
    }


def test_round_trip_is_exact_at_float32(tmp_path: Path) -> None:
    series = _series()
    write_csv(tmp_path / "s.csv", series)
    back = read_csv(tmp_path / "s.csv")
    assert list(back) == list(series)
    for agent, values in series.items():
        assert back[agent].dtype == np.float32
        np.testing.assert_array_equal(back[agent], values)


def test_features_in_any_column_order_agents_in_first_appearance(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.csv", "AgentB[1],AgentA[0],AgentB[0]\n1,2,3\n4,5,6\n")
    series = read_csv(path)
    assert list(series) == ["B", "A"]
    np.testing.assert_array_equal(series["B"], [[3, 1], [6, 4]])
    np.testing.assert_array_equal(series["A"], [[2], [5]])


def test_trailing_blank_lines_are_not_data(tmp_path: Path) -> None:
    series = read_csv(_write(tmp_path / "s.csv", "Agent0[0]\n1\n2\n\n\n"))
    assert series["0"].shape == (2, 1)


@pytest.mark.parametrize("name", ["Agent0", "Agent0[x]", "Sensor0[0]", "Agent[0]", " Agent0[0]"])
def test_malformed_column_name(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / "bad.csv", f"Agent1[0],{name}\n1,2\n")
    with pytest.raises(DataError, match=r"bad\.csv: column 2 .* is not named Agent<id>"):
        read_csv(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Agent0[0],Agent1[0],Agent0[0]\n1,2,3\n", r"bad\.csv: column 'Agent0\[0\]' appears twice"),
        ("Agent4[0],Agent4[2]\n1,2\n", r"bad\.csv: agent '4' .*\(missing Agent4\[1\]"),
        ("Agent4[0],Agent4[1]\n1,2\n3,4\n5\n",  # ragged row: features of unequal length
         r"bad\.csv: line 4, column Agent4\[1\]: no value"),
        ("Agent0[0],Agent1[0]\n1,2\n,4\n", r"bad\.csv: line 3, column Agent0\[0\]: no value"),
        ("Agent0[0]\n1\n2,3\n", r"bad\.csv: line 3 has 2 cells, the header 1"),
        ("Agent0[0],AgentM0[0]\n1,2\n3,abc\n",
         r"line 3, column AgentM0\[0\]: 'abc' is not a number"),
        ("", r"bad\.csv: file is empty"),
        ("Agent0[0]\n", r"bad\.csv: no data rows"),
    ],
    ids=["duplicate-column", "missing-feature-index", "ragged-row", "empty-cell",
         "row-longer-than-header", "non-numeric-cell", "empty-file", "header-without-rows"],
)
def test_bad_file_is_one_line_naming_file_and_column(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_csv(_write(tmp_path / "bad.csv", text))


@pytest.mark.parametrize("cell", ["nan", "NaN", "inf", "-inf", "1e39"])
def test_non_finite_value(tmp_path: Path, cell: str) -> None:
    path = _write(tmp_path / "bad.csv", f"Agent0[0],Agent1[0]\n1,2\n3,{cell}\n")
    with pytest.raises(DataError, match=r"line 3, column Agent1\[0\]: .* is not a finite"):
        read_csv(path)


def test_write_refuses_what_read_would_reject(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"agent '1' has 3 steps, others 2"):
        write_csv(tmp_path / "s.csv", {"0": np.zeros((2, 1)), "1": np.zeros((3, 1))})
    with pytest.raises(DataError, match=r"agent '0' has NaN"):
        write_csv(tmp_path / "s.csv", {"0": np.full((2, 1), np.nan)})


def test_load_pair(tmp_path: Path) -> None:
    write_csv(tmp_path / "train.csv", _series(20))
    write_csv(tmp_path / "test.csv", _series(10, seed=1))
    train, test = load_pair(tmp_path / "train.csv", tmp_path / "test.csv", window=10)
    assert train["M1"].shape == (20, 2) and test["M1"].shape == (10, 2)


@pytest.mark.parametrize(
    ("train", "test", "window", "message"),
    [
        ({"0": np.zeros((5, 1)), "1": np.zeros((5, 1))}, {"0": np.zeros((5, 1)), "M0": np.zeros((5, 1))},
         2, r"missing from the test file: \['1'\]; missing from the train file: \['M0'\]"),
        ({"4": np.zeros((5, 2))}, {"4": np.zeros((5, 1))},
         2, r"agent '4' has 2 features in .*train\.csv but 1 in"),
        ({"0": np.zeros((20, 1))}, {"0": np.zeros((7, 1))},
         10, r"test\.csv: 7 steps is fewer than the window of 10"),
    ],
    ids=["agent-sets-differ", "feature-count-differs", "fewer-steps-than-window"],
)
def test_load_pair_refuses_a_mismatched_pair(tmp_path: Path, train: dict, test: dict,
                                             window: int, message: str) -> None:
    write_csv(tmp_path / "train.csv", train)
    write_csv(tmp_path / "test.csv", test)
    with pytest.raises(DataError, match=message):
        load_pair(tmp_path / "train.csv", tmp_path / "test.csv", window=window)


def test_select_keeps_the_requested_order() -> None:
    series = _series()
    assert list(select(series, ["4", "0"])) == ["4", "0"]


def test_select_unknown_agent() -> None:
    with pytest.raises(DataError, match=r"unknown agent 'M7'; available agents: 0, M1, 4"):
        select(_series(), ["0", "M7"])


@pytest.mark.skipif(
    not PAPER_DATA.is_dir(), reason=f"the paper's CSV files are not at {PAPER_DATA}"
)
@pytest.mark.parametrize(
    ("context", "agents", "features", "steps"),
    [
        ("simple-context", ["0", "1", "M0", "M1"], [1, 1, 1, 1], (925, 200)),
        ("complex-context", ["0", "1", "2", "3", "4"], [1, 1, 1, 1, 2], (900, 191)),
    ],
)
def test_reads_the_papers_files(
    context: str, agents: list[str], features: list[int], steps: tuple[int, int]
) -> None:
    folder = PAPER_DATA / context
    train, test = load_pair(folder / "train_data.csv", folder / "test_data.csv", window=10)
    assert list(train) == agents and list(test) == agents
    assert [a.shape[1] for a in train.values()] == features
    assert {a.shape[0] for a in train.values()} == {steps[0]}
    assert {a.shape[0] for a in test.values()} == {steps[1]}


def test_a_byte_order_mark_is_no_part_of_the_first_column(tmp_path: Path) -> None:
    write_csv(tmp_path / "plain.csv", _series())
    text = (tmp_path / "plain.csv").read_text()
    (tmp_path / "bom.csv").write_text(text, encoding="utf-8-sig")
    assert (tmp_path / "bom.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    got, want = read_csv(tmp_path / "bom.csv"), read_csv(tmp_path / "plain.csv")
    assert list(got) == list(want) == ["0", "M1", "4"]


def test_an_unreadable_file_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_bytes(b"Agent0[0]\n\xff\xfe\x00")
    with pytest.raises(DataError, match=f"{tmp_path / 'bad.csv'}: not a readable CSV file "
                       "\\(.*utf-8"):
        read_csv(tmp_path / "bad.csv")
    with pytest.raises(DataError, match=f"{tmp_path}: not a readable CSV file"):
        read_csv(tmp_path)  # a folder


def test_one_agent_is_refused(tmp_path: Path) -> None:
    """With one agent there is nothing to align, and its scores would be the mean of nothing
    (NumPy's "Mean of empty slice" warning on the terminal)."""
    one = {"0": np.zeros((20, 1))}
    write_csv(tmp_path / "train.csv", one)
    write_csv(tmp_path / "test.csv", one)
    with pytest.raises(DataError, match=r"train\.csv: 1 agent \(0\); OSM-L needs at least two"):
        load_pair(tmp_path / "train.csv", tmp_path / "test.csv", window=5)
    with pytest.raises(DataError, match=r"agents: 1 agent \(M1\); OSM-L needs at least two"):
        select(_series(), ["M1"])
