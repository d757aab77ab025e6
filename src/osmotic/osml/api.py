"""The OSM-L mode's face: `run` and `resume` from Python (docs/api.md), on a config, a YAML
file or keyword settings, with series in memory or CSV files in the paper's layout."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from osmotic.data.timeseries import DataError, Series
from osmotic.osml import experiments as ex
from osmotic.osml.config import OsmlConfig
from osmotic.osml.summary import HELP, describe
from osmotic.report.result import RunResult
from osmotic.runtime.lifecycle import Logger
from osmotic.runtime.session import Mode, configure, split_log

__all__ = ["MODE", "OsmlConfig", "resume", "run"]


def run(config: OsmlConfig | str | Path | None = None, *,
        train: Mapping[str, Any] | str | Path | None = None,
        test: Mapping[str, Any] | str | Path | None = None, out: str | Path | None = None,
        progress: bool | None = None,
        log: Logger | str | Sequence[Logger | str] | None = None,
        **settings: Any) -> RunResult:
    """Train OSM-L agents; returns the summary, every epoch's metrics and the run directory.

    `config` is an `OsmlConfig`, a YAML file of settings (a run's config.yaml works: its `data`
    section is used when `train` is not given), or None (defaults); `settings` are `OsmlConfig`
    fields applied on top (`epochs=10`, `strategy="geometric_median"`,
    `encoder="my_package.nets:MyEncoder"` or the class itself, ...). `train` / `test` are
    {agent id: array [T, k]} in memory (the same agents in both; a 1-D array is one feature),
    or CSV files in the paper's layout; without them, the config's `data` section. `out` is the
    run directory (default runs/osml/run-seed<N>); `log` holds callables, each called with
    every epoch's metrics row, and logger names (`"tensorboard"`: event files in the run
    directory). `progress`: a progress bar (None: when the terminal is interactive).
    """
    loggers = split_log(log, settings)
    cfg = configure(OsmlConfig, config, settings)
    if train is None and test is None and cfg.data:
        source = ex.source_from_record(cfg.data)
        train_s, test_s = source.load(cfg.window)
        record = source.record()
    elif isinstance(train, str | Path) and isinstance(test, str | Path):
        source = ex.CsvSource(Path(train), Path(test))
        train_s, test_s = source.load(cfg.window)
        record = source.record()
    elif isinstance(train, Mapping) and isinstance(test, Mapping):
        train_s, test_s = series(train, "train", cfg.window), series(test, "test", cfg.window)
        if list(train_s) != list(test_s):
            raise DataError(f"train and test hold different agents: {list(train_s)} vs "
                            f"{list(test_s)}")
        record = {"memory": "series given from Python"}
    else:
        raise ValueError("give train and test: both {agent: array [T, k]} or both CSV paths "
                         "(or a config with a data section)")
    done = ex.run(cfg, train_s, test_s, out or ex.default_out("run", cfg.seed), source=record,
                  progress=progress, log=loggers)
    return RunResult.from_dir(done.dir.path)


def resume(run_dir: str | Path, *, progress: bool | None = None, force: bool = False
           ) -> RunResult:
    """Continue an interrupted OSM-L run from its last checkpoint, with its own settings and
    data; ends with the numbers the uninterrupted run would have produced. `force`: resume even
    if its config.yaml was edited since its last checkpoint."""
    return RunResult.from_dir(ex.resume(run_dir, progress, force).dir.path)


MODE = Mode("osml", HELP, OsmlConfig, run, resume, describe)


def series(arrays: Mapping[str, Any], split: str, window: int) -> Series:
    """{agent: float32 [T, k]} from arrays, checked: numbers, finite, one length for all agents,
    at least one window long; one line naming the split and agent otherwise."""
    out: Series = {}
    for agent, values in arrays.items():
        a = np.asarray(values, dtype=np.float64) if not isinstance(values, np.ndarray) \
            else values.astype(np.float64)
        a = a[:, None] if a.ndim == 1 else a
        where = f"{split} series of agent {agent}"
        if a.ndim != 2 or a.shape[1] == 0:
            raise DataError(f"{where}: shape {np.shape(values)}, expected [steps, features]")
        if not np.isfinite(a).all():
            raise DataError(f"{where}: NaN or infinite values (first at step "
                            f"{int(np.argmax(~np.isfinite(a).all(1)))})")
        out[str(agent)] = a.astype(np.float32)
    if not out:
        raise DataError(f"{split}: no agents")
    lengths = {a: len(v) for a, v in out.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"{split}: agents' series differ in length {lengths}; they must be "
                        "time-aligned")
    if min(lengths.values()) < window:
        raise DataError(f"{split}: {min(lengths.values())} steps, fewer than one window of "
                        f"{window}")
    return out
