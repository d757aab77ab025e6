"""`osmotic.holonic.run`: a holonic run from Python, on a config or keyword settings, with the
data named in the config or given in memory (arrays or a `Dataset`). See docs/api.md."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from osmotic.data.splits import Dataset
from osmotic.holonic.config import HolonicConfig
from osmotic.holonic.runner import run as run_holonic
from osmotic.report.result import RunResult, configure, split_log
from osmotic.runtime.lifecycle import Logger

Arrays = tuple[Any, Any]


def run(config: HolonicConfig | str | Path | None = None, *,
        data: Dataset | Arrays | None = None, test: Arrays | None = None,
        out: str | Path | None = None, show_progress: bool | None = None,
        log: Logger | str | Sequence[Logger | str] | None = None, **settings: Any) -> RunResult:
    """Train a holarchy; returns the summary, every round's metrics and the run directory.

    `config` is a `HolonicConfig`, a YAML file of one, or None (defaults); `settings` are
    `HolonicConfig` fields applied on top (validated the same way: `structure="2L"`,
    `participation=0.3`, `model="my_package.nets:MyNet"` or the class itself, ...).
    `data` is a `data:` entry as in a config file (`"digits"`, `{"format": "csv", "path": ...,
    "label": ...}`), or the data in memory: a `Dataset`, or arrays `(x, y)` (inputs [n, F] or
    images [n, C, H, W], integer labels [n]) with optional `test=(x, y)`; arrays are checked and
    standardised like files (a stratified hold-out of `holdout` when `test` is not given).
    `out` is the run directory (default runs/holonic/<structure>-<distribution>); `log` holds
    callables, each called with every round's metrics row as it finishes, and logger names
    (`"tensorboard"`: event files in the run directory).
    """
    loggers = split_log(log, settings)
    if isinstance(data, str | dict):  # a `data:` entry, as in a config file
        settings["data"], data = data, None
    base = configure(HolonicConfig, HolonicConfig.from_yaml(config)
                     if isinstance(config, str | Path) else config, settings)
    if test is not None and not isinstance(data, tuple):
        raise ValueError("test=(x, y) goes with data=(x, y); a Dataset brings its own test set")
    dataset = Dataset.from_arrays(*data, test, holdout=base.holdout, seed=base.seed) \
        if isinstance(data, tuple) else data
    out = out if out is not None else f"runs/holonic/{base.name}-{base.distribution}"
    summary = run_holonic(base, out, dataset, show_progress, log=loggers,
                          in_memory=dataset is not None)
    return RunResult.from_dir(summary["run_dir"])
