"""The holonic mode's face: `run` and `resume` from Python (docs/api.md), on a config, a YAML
file or keyword settings, with the data named in the config or given in memory (arrays or a
`Dataset`)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from osmotic.holarchy.runs import Arrays, Data, run_on_data
from osmotic.holonic import runner
from osmotic.holonic.config import HolonicConfig
from osmotic.holonic.summary import HELP, describe
from osmotic.report.result import RunResult
from osmotic.runtime.lifecycle import Logger
from osmotic.runtime.session import Mode

__all__ = ["MODE", "HolonicConfig", "resume", "run"]


def run(config: HolonicConfig | str | Path | None = None, *,
        data: Data = None, test: Arrays | None = None,
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
    return run_on_data(HolonicConfig, runner.run, config, data=data, test=test, out=out,
                       default_out=lambda c: f"runs/holonic/{c.name}-{c.distribution}",
                       progress=progress, log=log, settings=settings)


def resume(run_dir: str | Path, *, progress: bool | None = None, force: bool = False
           ) -> RunResult:
    """Continue an interrupted holonic run from its last checkpoint, with its own settings and
    data; ends with the numbers the uninterrupted run would have produced. `force`: resume even
    if its config.yaml was edited since its last checkpoint."""
    return RunResult.from_dir(runner.resume(run_dir, progress, force)["run_dir"])


MODE = Mode("holonic", HELP, HolonicConfig, run, resume, describe)
