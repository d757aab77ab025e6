"""Fixtures of the fuzz suite: a scratch folder per session (one fresh sub-folder per case) and
one finished tiny run of each mode, made once and copied by the cases that resume or score."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.fuzz.harness import EXAMPLES, PROFILE, Case, run_cli
from tests.fuzz.strategies import BASE


@pytest.fixture(scope="session")
def fuzz_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="session")
def finished_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """mode -> a finished run directory of the mode's tiny settings (BASE)."""
    root = tmp_path_factory.mktemp("fuzz-runs")
    runs = {}
    for mode, settings in BASE.items():
        case = Case(root / mode)
        case.root.mkdir()
        case.write("config.yaml", yaml.safe_dump(settings))
        outcome = run_cli(case, ["run", "config.yaml", "--out", "out"])
        assert outcome.rc == 0, (mode, outcome.stderr)
        runs[mode] = case.out
    return runs


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if EXAMPLES["count"]:
        by_test = ", ".join(f"{k} {v}" for k, v in sorted(EXAMPLES["by_test"].items()))
        terminalreporter.write_line(f"fuzz ({PROFILE} profile): {EXAMPLES['count']} cases run "
                                    f"through osmotic.cli.main ({by_test}); outcomes: "
                                    f"{dict(sorted(EXAMPLES['exits'].items()))}")
