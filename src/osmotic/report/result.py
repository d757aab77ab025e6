"""What a run started from Python returns: its numbers and where its files are."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osmotic.report.rundir import RunDir


@dataclass
class RunResult:
    """`summary` is summary.json, `metrics` every epoch's or round's row (metrics.jsonl),
    `run_dir` the folder holding them, the config, models and plots."""

    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    run_dir: Path

    @classmethod
    def from_dir(cls, run_dir: str | Path) -> RunResult:
        """Read a finished run back from its directory (as written, NaN as None)."""
        rd = RunDir(run_dir)
        return cls(rd.read_summary(), rd.read_metrics(), rd.path)
