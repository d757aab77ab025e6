"""A run directory: everything a run produced, in files other tools can read.

Layout (every mode): `config.yaml` (the resolved settings), `metrics.jsonl` (one JSON object per
epoch or round, appended as the run goes so nothing is lost to a crash), `summary.json` (the
final numbers, stable keys), plus mode-specific arrays and PNG plots.

A directory that already holds a `summary.json` is never overwritten: a new run goes beside it
(`name-1`, `name-2`, ...) and says so.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from osmotic.settings import Settings

CHECKPOINT = "checkpoint.safetensors"
"""The run's last checkpoint, inside its directory (written by `runtime.lifecycle`)."""


def _jsonable(x: Any) -> Any:
    """NaN/inf become null so the files stay valid JSON for every reader."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and getattr(x, "ndim", 1) == 0:  # numpy / torch scalars
        return _jsonable(x.item())
    if hasattr(x, "tolist"):
        return _jsonable(x.tolist())
    return x


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_jsonable(obj), indent=2) + "\n")
    os.replace(tmp, path)


def siblings(path: Path) -> Iterator[Path]:
    """`path`, then the names a new run takes beside it (`name-1`, `name-2`, ...)."""
    yield path
    yield from (path.with_name(f"{path.name}-{n}") for n in itertools.count(1))


class RunDir:
    """The output folder of one run."""

    def __init__(self, path: str | Path, *, fresh: bool = True):
        path = Path(path)
        if fresh and (path / "summary.json").exists():
            base = path
            path = next(p for p in siblings(base) if not p.exists())
            print(f"{base} already holds results; writing this run to {path}", file=sys.stderr)
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)
        self.plots = self.path / "plots"
        self.plots.mkdir(exist_ok=True)

    def file(self, name: str) -> Path:
        return self.path / name

    def write_config(self, config: dict[str, Any]) -> None:
        self.file("config.yaml").write_text(yaml.safe_dump(_jsonable(config), sort_keys=False))

    def reset_metrics(self) -> None:
        self.file("metrics.jsonl").write_text("")

    def log_metrics(self, row: dict[str, Any]) -> None:
        with self.file("metrics.jsonl").open("a") as f:
            f.write(json.dumps(_jsonable(row)) + "\n")

    def rewrite_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Replace metrics.jsonl by `rows` (after a rewind to a checkpoint), atomically."""
        tmp = self.file("metrics.jsonl.tmp")
        tmp.write_text("".join(json.dumps(_jsonable(r)) + "\n" for r in rows))
        os.replace(tmp, self.file("metrics.jsonl"))

    def read_metrics(self) -> list[dict[str, Any]]:
        p = self.file("metrics.jsonl")
        return [json.loads(line) for line in p.read_text().splitlines() if line] if p.exists() else []

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.file("summary.json"), summary)

    def read_summary(self) -> dict[str, Any]:
        return json.loads(self.file("summary.json").read_text())


RunState = Literal["finished", "interrupted", "new"]


def run_state(settings: Settings, run_dir: str | Path) -> RunState:
    """What `run_dir` holds of the experiment `settings` describe: a finished run (read it
    back), an interrupted one with a checkpoint (resume it), or nothing usable (absent,
    unreadable, or other settings: start afresh). What a grid needs to resume where it
    stopped."""
    rd = Path(run_dir)
    try:
        same = (rd / "config.yaml").is_file() and settings.same_experiment(settings.from_run(rd))
    except (ValidationError, yaml.YAMLError, TypeError):
        same = False
    if not same:
        return "new"
    if (rd / "summary.json").is_file():
        return "finished"
    return "interrupted" if (rd / CHECKPOINT).is_file() else "new"


def find_run(settings: Settings, run_dir: str | Path) -> tuple[Path, RunState]:
    """Where a grid keeps the experiment `settings` describe: `run_dir` or, when that holds
    another experiment, the sibling (`name-1`, `name-2`, ... as `RunDir` names them) that holds
    a finished or interrupted run of this one, else the first free name. Looking only at
    `run_dir` re-ran a finished cell on every call once another run held its folder."""
    # the first sibling that is free (None) or holds this experiment (not "new")
    states = ((p, run_state(settings, p) if p.exists() else None) for p in siblings(Path(run_dir)))
    return next((p, state or "new") for p, state in states if state != "new")

