"""The holonic mode's face: `run` and `resume` from Python (docs/api.md), on a config, a YAML
file or keyword settings, with the data named in the config or given in memory (arrays or a
`Dataset`)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from osmotic.data.splits import Dataset
from osmotic.holonic import runner
from osmotic.holonic.config import HolonicConfig
from osmotic.holonic.summary import HELP, describe
from osmotic.report.result import RunResult
from osmotic.runtime.lifecycle import Logger
from osmotic.runtime.session import Mode, configure, split_log

Arrays = tuple[Any, Any]
__all__ = ["MODE", "HolonicConfig", "resume", "run"]


def run(config: HolonicConfig | str | Path | None = None, *,
        data: Dataset | Arrays | str | dict[str, Any] | None = None, test: Arrays | None = None,
        out: str | Path | None = None, progress: bool | None = None,
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
    (`"tensorboard"`: event files in the run directory). `progress`: a progress bar (None:
    when the terminal is interactive).
    """
    loggers = split_log(log, settings)
    if isinstance(data, str | dict):  # a `data:` entry, as in a config file
        settings["data"], data = data, None
    base = configure(HolonicConfig, config, settings)
    if test is not None and not isinstance(data, tuple):
        raise ValueError("test=(x, y) goes with data=(x, y); a Dataset brings its own test set")
    dataset = Dataset.from_arrays(*data, test, holdout=base.holdout, seed=base.seed) \
        if isinstance(data, tuple) else data
    out = out if out is not None else f"runs/holonic/{base.name}-{base.distribution}"
    summary = runner.run(base, out, dataset, progress, log=loggers,
                         in_memory=dataset is not None)
    return RunResult.from_dir(summary["run_dir"])


def resume(run_dir: str | Path, *, progress: bool | None = None) -> RunResult:
    """Continue an interrupted holonic run from its last checkpoint, with its own settings and
    data; ends with the numbers the uninterrupted run would have produced."""
    return RunResult.from_dir(runner.resume(run_dir, progress)["run_dir"])


MODE = Mode("holonic", HELP, HolonicConfig, run, resume, describe)
