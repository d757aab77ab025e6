"""Reading and writing agents' time series in the paper's CSV layout.

One column per agent feature, named ``Agent<id>[<feature index>]``, one row per time step. The
loader is strict on purpose: a malformed file would otherwise train agents on shifted, truncated
or NaN-poisoned windows without any visible symptom, so every defect stops the run with one line
naming the file and the column, row or agent at fault, and nothing is silently dropped.
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

Series = dict[str, np.ndarray]
"""Agent id -> float32 array [T, k_i]; agents in order of first appearance, features by index."""

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_COLUMN = re.compile(r"Agent(?P<agent>[A-Za-z0-9_.-]+)\[(?P<feature>\d+)\]")


class DataError(ValueError):
    """Input data that cannot be used as it is; the message names the file and the culprit."""


def shown(value: object, limit: int = 40, quote: bool = True) -> str:
    """`repr(value)` (or `str`) cut to `limit` characters: an error is one short line quoting
    what it found, not a whole file that a broken header turned into one cell."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def listed(values: Sequence[object], limit: int = 6, quote: bool = True) -> str:
    """The first `limit` of `values`, each `shown`, and how many there are in all."""
    more = f", ... ({len(values)} in all)" if len(values) > limit else ""
    return ", ".join(shown(v, 24, quote) for v in values[:limit]) + more


def read_csv(path: str | Path) -> Series:
    """Read one split (train or test) of every agent's features from ``path``. A UTF-8
    byte-order mark (spreadsheets write one) is not part of the first column's name."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise DataError(f"{path}: not a readable CSV file ({reason})") from None
    rows = _strip_trailing_blank(rows)
    if not rows:
        raise DataError(f"{path}: file is empty (expected a header of Agent<id>[<k>] columns)")
    header, body = rows[0], rows[1:]
    layout = _parse_header(path, header)
    if not body:
        raise DataError(f"{path}: no data rows after the header")
    values = _parse_body(path, header, body)
    return {agent: values[:, cols] for agent, cols in layout.items()}


def write_csv(path: str | Path, series: Series) -> None:
    """Write ``series`` so that :func:`read_csv` returns it unchanged (float32 values)."""
    path = Path(path)
    arrays = _checked_for_writing(path, series)
    header = [f"Agent{agent}[{j}]" for agent, a in arrays.items() for j in range(a.shape[1])]
    table = np.concatenate(list(arrays.values()), axis=1)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        # 9 significant digits identify every float32 exactly.
        writer.writerows([f"{v:.9g}" for v in row] for row in table.tolist())


def load_pair(train_path: str | Path, test_path: str | Path, window: int) -> tuple[Series, Series]:
    """Read a train/test pair; check they hold the same agents, long enough for ``window``."""
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    train, test = read_csv(train_path), read_csv(test_path)
    _check_same_agents(Path(train_path), train, Path(test_path), test)
    for path, series in ((train_path, train), (test_path, test)):
        steps = _steps(series)
        if steps < window:
            raise DataError(f"{path}: {steps} steps is fewer than the window of {window}")
    check_agents(train, str(train_path))
    return train, test


def select(series: Series, agents: Sequence[str]) -> Series:
    """The given agents, in the given order; an experiment names its agents explicitly."""
    unknown = [a for a in agents if a not in series]
    if unknown:
        raise DataError(f"unknown agent {shown(unknown[0])}; available agents: "
                        f"{listed(list(series), quote=False)}")
    duplicated = [a for a, n in Counter(agents).items() if n > 1]
    if duplicated:
        raise DataError(f"agent {shown(duplicated[0])} selected more than once")
    chosen = {a: series[a] for a in agents}
    check_agents(chosen, "agents")
    return chosen


def check_agents(series: Series, where: str) -> None:
    """OSM-L aligns agents with each other: with fewer than two there is no context to learn
    and nothing to score (the scores would be the mean of nothing)."""
    if len(series) < 2:
        named = listed(list(series), quote=False) or "none"
        raise DataError(f"{where}: {len(series)} agent ({named}); OSM-L needs at least two "
                        "agents to align")


def _strip_trailing_blank(rows: list[list[str]]) -> list[list[str]]:
    """Drop blank lines at the end of the file only: they carry no data (a final newline)."""
    end = len(rows)
    while end and not any(cell.strip() for cell in rows[end - 1]):
        end -= 1
    return rows[:end]


def _parse_header(path: Path, header: list[str]) -> dict[str, list[int]]:
    """Map each agent to its column positions, ordered by feature index 0..k-1."""
    features: dict[str, dict[int, int]] = {}
    seen: dict[str, int] = {}
    for col, name in enumerate(header):
        match = _COLUMN.fullmatch(name)
        if match is None:
            raise DataError(
                f"{path}: column {col + 1} {shown(name)} is not named "
                "Agent<id>[<feature index>]"
            )
        if name in seen:
            raise DataError(
                f"{path}: column {shown(name)} appears twice (columns {seen[name] + 1} and "
                f"{col + 1})"
            )
        seen[name] = col
        features.setdefault(match["agent"], {})[int(match["feature"])] = col
    layout = {}
    for agent, by_index in features.items():
        last = max(by_index)
        # indices beyond the agent's column count cannot all be there: say so before counting
        missing = sorted(set(range(last + 1)) - set(by_index)) if last < len(by_index) else \
            [next(j for j in range(len(by_index) + 1) if j not in by_index)]
        if missing:
            raise DataError(
                f"{path}: agent {shown(agent)} has feature indices [{listed(sorted(by_index))}], "
                f"expected 0..{last} (missing Agent{agent}[{missing[0]}])"
            )
        layout[agent] = [by_index[j] for j in range(len(by_index))]
    return layout


def _parse_body(path: Path, header: list[str], body: list[list[str]]) -> np.ndarray:
    """Parse every cell into a float32 table [T, columns], rejecting gaps and non-finite values."""
    table = np.empty((len(body), len(header)), dtype=np.float32)
    for i, row in enumerate(body):
        line = i + 2  # the header is line 1
        if len(row) > len(header):
            raise DataError(f"{path}: line {line} has {len(row)} cells, the header {len(header)}")
        for col, name in enumerate(header):
            cell = row[col].strip() if col < len(row) else ""
            table[i, col] = _parse_cell(path, line, name, cell)
    return table


def _parse_cell(path: Path, line: int, column: str, cell: str) -> np.float32:
    """One finite float32 value, or a DataError naming the line and the column."""
    where = f"{path}: line {line}, column {column}"
    if not cell:
        raise DataError(
            f"{where}: no value (every feature of an agent needs a value at every step)"
        )
    try:
        value = float(cell)
    except ValueError:
        raise DataError(f"{where}: {shown(cell)} is not a number") from None
    if not math.isfinite(value) or abs(value) > _FLOAT32_MAX:
        raise DataError(f"{where}: {shown(cell)} is not a finite float32 value")
    return np.float32(value)


def _check_same_agents(train_path: Path, train: Series, test_path: Path, test: Series) -> None:
    """Train and test must hold the same agents with the same feature counts."""
    only_train = [a for a in train if a not in test]
    only_test = [a for a in test if a not in train]
    if only_train or only_test:
        raise DataError(
            f"{train_path} and {test_path} hold different agents: "
            f"missing from the test file: {only_train or 'none'}; "
            f"missing from the train file: {only_test or 'none'}"
        )
    for agent, a in train.items():
        if a.shape[1] != test[agent].shape[1]:
            raise DataError(
                f"agent {shown(agent)} has {a.shape[1]} features in {train_path} "
                f"but {test[agent].shape[1]} in {test_path}"
            )


def _steps(series: Series) -> int:
    """Number of time steps; read_csv guarantees every agent has the same."""
    return next(iter(series.values())).shape[0]


def _checked_for_writing(path: Path, series: Series) -> dict[str, np.ndarray]:
    """Refuse to write anything that read_csv would reject, naming the agent at fault."""
    if not series:
        raise DataError(f"{path}: nothing to write (no agents)")
    arrays = {}
    steps = None
    for agent, a in series.items():
        a = np.asarray(a, dtype=np.float32)
        if _COLUMN.fullmatch(f"Agent{agent}[0]") is None:
            raise DataError(f"{path}: agent id {shown(agent)} cannot be written as a column "
                            "name")
        if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
            raise DataError(f"{path}: agent {shown(agent)} has shape {a.shape}, expected "
                            "[T>0, k>0]")
        if steps is not None and a.shape[0] != steps:
            raise DataError(f"{path}: agent {shown(agent)} has {a.shape[0]} steps, others {steps}")
        if not np.isfinite(a).all():
            raise DataError(f"{path}: agent {shown(agent)} has NaN or infinite values")
        steps = a.shape[0]
        arrays[agent] = a
    return arrays
