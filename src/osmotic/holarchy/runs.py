"""The Python API's side of a run over holarchy terminals (holonic learning, D-SSL): labelled
data named in the settings or given in memory, then the mode's runner."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from osmotic.data.splits import Dataset
from osmotic.report.result import RunResult
from osmotic.runtime.lifecycle import Logger
from osmotic.runtime.session import configure, split_log
from osmotic.settings import EngineSettings

S = TypeVar("S", bound=EngineSettings)
Arrays = tuple[Any, Any]
Data = Dataset | Arrays | str | dict[str, Any] | None
"""What `data=` takes: a `data:` entry as in a config file (`"digits"`, `{"format": "npz",
"path": ...}`), a `Dataset`, or arrays `(x, y)` (inputs [n, ...], integer labels [n])."""


def run_on_data(kind: type[S], train: Callable[..., dict[str, Any]], config: S | str | Path | None,
                *, data: Data, test: Arrays | None, out: str | Path | None,
                default_out: Callable[[S], str], progress: bool | None,
                log: Logger | str | Sequence[Logger | str] | None,
                settings: dict[str, Any]) -> RunResult:
    """`train(config, out, dataset, progress, log=..., in_memory=...)` on the settings of an
    API call (`config` with keyword `settings` on top) and its data: a `data:` entry becomes
    the `data` setting; a `Dataset` or arrays (checked and standardised like files, with a
    stratified hold-out of `holdout` when `test=(x, y)` is not given; `pool_size` applies) are
    used as they are and recorded as given in memory."""
    loggers = split_log(log, settings)
    if isinstance(data, str | dict):
        settings["data"], data = data, None
    base = configure(kind, config, settings)
    if test is not None and not isinstance(data, tuple):
        raise ValueError("test=(x, y) goes with data=(x, y); a Dataset brings its own test set")
    dataset = Dataset.from_arrays(*data, test, holdout=base.holdout, seed=base.seed) \
        if isinstance(data, tuple) else data
    if dataset is not None and base.pool_size is not None:  # as for data the settings name
        dataset = dataset.pool_subset(base.pool_size, base.seed)
    summary = train(base, out if out is not None else default_out(base), dataset, progress,
                    log=loggers, in_memory=dataset is not None)
    return RunResult.from_dir(summary["run_dir"])
