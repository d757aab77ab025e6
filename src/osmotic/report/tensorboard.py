"""Live logging: every epoch's or round's metrics row as TensorBoard scalars, as it finishes.

A logger is a callable taking one metrics row (the rows `metrics.jsonl` holds), so it plugs into
the run lifecycle beside the others. Every number in the row becomes a scalar at step
`row["round"]` or `row["epoch"]`; nested mappings become `parent/child` tags (per-terminal
losses, message counts, ...), lists of mappings (OSM-L's sub-contexts) are skipped, and None
(not measured this round) is not written. Event files go to `<run dir>/tensorboard/`:

    tensorboard --logdir runs/holonic/my-run/tensorboard
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from osmotic.report.rundir import RunDir

LOGGERS = ("tensorboard",)
STEP_KEYS = ("round", "epoch")


def scalars(row: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(tag, value) for every finite number in `row`, nested mappings flattened to `a/b`."""
    for key, value in row.items():
        tag = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from scalars(value, f"{tag}/")
        elif isinstance(value, int | float) and math.isfinite(value):  # bool is an int
            yield tag, float(value)


class TensorBoardLogger:
    """Writes metrics rows as TensorBoard scalars under `log_dir`, flushed after every row so
    that a running job can be watched.

    A row whose step is not past the last one written (a resumed run, or a rewind to a
    checkpoint after lost agents) starts a new event file that purges the older events from
    that step on, so TensorBoard shows each step once, as finally computed.
    """

    def __init__(self, log_dir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError("--log tensorboard needs the tensorboard package: "
                             "pip install tensorboard") from None
        self.log_dir = Path(log_dir)
        self._writer_at = lambda step: SummaryWriter(str(self.log_dir), purge_step=step)
        self.writer: Any = None
        self.last: int | None = None

    def __call__(self, row: Mapping[str, Any]) -> None:
        step = next((int(row[k]) for k in STEP_KEYS if k in row), None)
        if step is None:
            raise ValueError(f"a metrics row needs one of {STEP_KEYS} as its step; got keys "
                             f"{sorted(row)}")
        if self.last is None or step <= self.last:
            self.close()
            self.writer = self._writer_at(step)
        for tag, value in scalars({k: v for k, v in row.items() if k not in STEP_KEYS}):
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()
        self.last = step

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@contextmanager
def live_loggers(names: Sequence[str], run_dir: RunDir
                 ) -> Iterator[list[Callable[[Mapping[str, Any]], None]]]:
    """The loggers a config's `log` names, writing into `run_dir`; closed on leaving."""
    unknown = sorted(set(names) - set(LOGGERS))
    if unknown:
        raise ValueError(f"log: unknown logger {unknown[0]!r}; choose from {list(LOGGERS)}")
    loggers = [TensorBoardLogger(run_dir.path / "tensorboard") for n in dict.fromkeys(names)
               if n == "tensorboard"]  # a name given twice (option and config) is one writer
    try:
        yield loggers
    finally:
        for logger in loggers:
            logger.close()
