"""The registry of learning modes: one place that knows them all, for the CLI, `osmotic run
CONFIG.yaml`, `osmotic resume DIR` and the Python API (`osmotic.run`, `osmotic.resume`).

Each mode is a package `osmotic.<name>` with the same face: `Config`, `run`, `resume` and a
`MODE` record (`runtime.session.Mode`) in its `api` module, and its commands in its `cli`
module. Modes are imported on first use.
"""
from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from osmotic.report.result import RunResult
from osmotic.runtime.lifecycle import Logger
from osmotic.runtime.session import Mode
from osmotic.settings import InputError, Settings, read_mapping

NAMES = ("osml", "holonic", "dssl")
"""Osmotic Learning, Holonic Learning, distributed self-supervised pre-training."""


def get(name: str) -> Mode:
    """The mode called `name`, or one line listing the modes there are."""
    if name not in NAMES:
        raise InputError(f"mode: unknown {name!r}; choose from {', '.join(NAMES)}")
    return importlib.import_module(f"osmotic.{name}.api").MODE


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Every mode's commands (`osmotic osml ...`, `osmotic holonic ...`, `osmotic dssl ...`)."""
    for name in NAMES:
        importlib.import_module(f"osmotic.{name}.cli").add_commands(sub)


def mode_of_file(path: str | Path) -> Mode:
    """The mode a settings file names in its `mode:` (as every run's config.yaml does)."""
    mode = read_mapping(Path(path), InputError).get("mode")
    if mode is None:
        raise InputError(f"{path}: mode: missing; say which mode the file is for "
                         f"({', '.join(NAMES)})")
    return get(str(mode))


def mode_of_run(run_dir: str | Path) -> Mode:
    """The mode that wrote the run directory `run_dir` (its config.yaml says)."""
    config = Path(run_dir) / "config.yaml"
    if not config.is_file():
        raise InputError(f"{config}: no such file; is {run_dir} a run directory?")
    return mode_of_file(config)


def run(config: Settings | str | Path | None = None, *, mode: str | None = None,
        out: str | Path | None = None, progress: bool | None = None,
        log: Logger | str | Sequence[Logger | str] | None = None, **settings: Any) -> RunResult:
    """Run any mode: `config` is a mode's `Config` object, a YAML file whose `mode:` names the
    mode, or None with `mode="osml" | "holonic" | "dssl"` and keyword settings. Returns the
    run's `RunResult` (summary, metrics rows, run directory)."""
    if isinstance(config, Settings):
        chosen = get(type(config).mode)
    elif isinstance(config, str | Path):
        chosen = mode_of_file(config)
    elif mode is not None:
        chosen = get(mode)
    else:
        raise InputError("give a config (an object or a YAML file with `mode:`) or mode=...")
    if mode is not None and mode != chosen.name:
        raise InputError(f"mode: {mode!r} given, but the config is for {chosen.name!r}")
    return chosen.run(config, out=out, progress=progress, log=log, **settings)


def resume(run_dir: str | Path, *, progress: bool | None = None, force: bool = False
           ) -> RunResult:
    """Continue an interrupted run of any mode from its last checkpoint: the same numbers as
    the uninterrupted run. `force`: even if its config.yaml was edited since the checkpoint
    (the run then goes on with the settings, and any code, the file names now)."""
    return mode_of_run(run_dir).resume(run_dir, progress=progress, force=force)
