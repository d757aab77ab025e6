"""The D-SSL mode's face: `run` and `resume` from Python (docs/api.md), on a config, a YAML file
or keyword settings, with the images named in the config or given in memory (arrays or a
`Dataset`)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from osmotic.dssl import runner
from osmotic.dssl.config import DsslConfig
from osmotic.dssl.summary import HELP, describe
from osmotic.holarchy.runs import Arrays, Data, run_on_data
from osmotic.report.result import RunResult
from osmotic.runtime.lifecycle import Logger
from osmotic.runtime.session import Mode

__all__ = ["MODE", "DsslConfig", "resume", "run"]


def run(config: DsslConfig | str | Path | None = None, *,
        data: Data = None, test: Arrays | None = None,
        out: str | Path | None = None, progress: bool | None = None,
        log: Logger | str | Sequence[Logger | str] | None = None, **settings: Any) -> RunResult:
    """Pre-train and probe; returns the summary, every round's metrics and the run directory.

    `config` is a `DsslConfig`, a YAML file of one, or None (defaults); `settings` are
    `DsslConfig` fields applied on top (`method="mar"`, `framework="decl"`, `clients=100,
    participation=0.05`, `backbone="my_package.nets:MyEncoder"` or the class itself, ...).
    `data` is a `data:` entry as in a config file (`"digits"`, `{"format": "npz", "path": ...}`,
    `{"format": "images", "path": ...}`), or images in memory: a `Dataset`, or arrays `(x, y)`
    (images [n, C, H, W] or [n, H, W], integer labels [n] for the probes) with optional
    `test=(x, y)`. `out` is the run directory (default runs/dssl/<name>-seed<N>); `log` holds
    callables, each called with every round's metrics row, and logger names (`"tensorboard"`).
    `progress`: a progress bar (None: when the terminal is interactive).
    """
    return run_on_data(DsslConfig, runner.run, config, data=data, test=test, out=out,
                       default_out=lambda c: f"runs/dssl/{c.name}-seed{c.seed}",
                       progress=progress, log=log, settings=settings)


def resume(run_dir: str | Path, *, progress: bool | None = None, force: bool = False
           ) -> RunResult:
    """Continue an interrupted D-SSL run from its last checkpoint, with its own settings and
    data; ends with the numbers the uninterrupted run would have produced. `force`: resume even
    if its config.yaml was edited since its last checkpoint."""
    return RunResult.from_dir(runner.resume(run_dir, progress, force)["run_dir"])


MODE = Mode("dssl", HELP, DsslConfig, run, resume, describe)
