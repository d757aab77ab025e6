"""The run lifecycle every mode shares: units of work (epochs, rounds), one after another.

A mode describes one unit of its training as a `Job`; `Lifecycle` does everything around it, the
same way for OSM-L, holonic learning and D-SSL: `metrics.jsonl` (a row appended per unit, so a
crash loses nothing), a checkpoint at unit 0, every `checkpoint_every` units and at the end,
resume from that checkpoint, rewind to it (or stop with one line saying how to resume) when an
engine loses agents, a progress bar, and live loggers (TensorBoard, a benchmark's timer).

Checkpoint layout: the job's tensor groups, and JSON meta `{unit: done, "metrics": rows so far,
"job": the job's own JSON state}`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from torch import Tensor

from osmotic.engines import AgentsLost, RunInterrupted
from osmotic.report.progress import progress_bar
from osmotic.report.rundir import CHECKPOINT, RunDir
from osmotic.runtime.checkpoint import checkpoint_meta, load_checkpoint, save_checkpoint

Row = dict[str, Any]


def resumable(out: str | Path) -> Path:
    """`out` as a run directory that can be resumed, or one line saying why not."""
    rd = Path(out)
    if (rd / "summary.json").exists():
        raise ValueError(f"{rd}: this run has finished (summary.json exists); nothing to resume")
    if not (rd / CHECKPOINT).exists():
        raise ValueError(f"{rd}: no {CHECKPOINT} to resume from")
    return rd


Logger = Callable[[Row], None]


def as_loggers(log: Logger | Sequence[Logger] | None) -> list[Logger]:
    """A mode's `log=` argument (nothing, one callable or several) as a list of loggers."""
    if log is None:
        return []
    return [log] if callable(log) else list(log)


class Job(Protocol):
    """A mode's training, one unit at a time. `engine.recover()` brings lost agents back."""

    engine: Any

    def step(self, unit: int, bar: Any) -> Row:
        """Do unit number `unit` (1-based) and return its metrics row. `bar` is the progress
        display, for a job that shows progress within a unit."""

    def state(self) -> tuple[dict[str, dict[str, Tensor]], dict[str, Any]]:
        """Everything needed to continue after the current unit: tensor groups, JSON meta."""

    def load_state(self, groups: dict[str, dict[str, Tensor]], meta: dict[str, Any]) -> None:
        """Inverse of `state`."""

    def status(self, row: Row) -> str:
        """A few words for the progress bar after `row` (accuracy so far, say)."""


class Lifecycle:
    """Runs `job` for `total` units named `unit` ("epoch", "round"); see the module docstring.

    Without `run_dir` nothing is written (no metrics file, no checkpoint), and losing agents
    stops the run.
    """

    def __init__(self, job: Job, *, total: int, unit: str, run_dir: RunDir | None,
                 checkpoint_every: int = 1, restart_failed: bool = False, label: str = "",
                 loggers: Sequence[Logger] = ()):
        if total < 1 or checkpoint_every < 1:
            raise ValueError(f"need total >= 1 and checkpoint_every >= 1, got {total} and "
                             f"{checkpoint_every}")
        self.job, self.total, self.unit, self.run_dir = job, total, unit, run_dir
        self.every, self.restart_failed = checkpoint_every, restart_failed
        self.label = label or f"{unit}s"
        self.loggers = list(loggers)
        self.done = 0
        self.metrics: list[Row] = []

    @property
    def checkpoint(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir.file(CHECKPOINT)

    def save(self) -> None:
        groups, meta = self.job.state()
        save_checkpoint(self.checkpoint, groups,
                        {self.unit: self.done, "metrics": self.metrics, "job": meta})

    def restore(self) -> None:
        """Back to the last checkpoint: the job's state, the units done and their rows."""
        groups, meta = load_checkpoint(self.checkpoint)
        self.job.load_state(groups, meta.get("job", meta))  # older checkpoints: at the top
        self.done, self.metrics = meta[self.unit], meta["metrics"]
        self.run_dir.rewrite_metrics(self.metrics)

    def run(self, resume: bool = False, progress: bool | None = None) -> list[Row]:
        """All remaining units; returns every unit's row (those before a resume included)."""
        if resume:
            if self.checkpoint is None or not self.checkpoint.is_file():
                raise ValueError(f"{self.run_dir and self.run_dir.path}: no {CHECKPOINT} to "
                                 "resume from")
            self.restore()
        elif self.run_dir is not None:
            self.run_dir.rewrite_metrics([])
            self.save()  # unit 0: a lost agent in the first units can rewind to here
        with progress_bar(progress) as bar:
            task = bar.add_task(self.label, total=self.total, completed=self.done, info="")
            while self.done < self.total:
                try:
                    row = self.job.step(self.done + 1, bar)
                except AgentsLost as lost:
                    self.stop_or_rewind(lost)
                    bar.update(task, completed=self.done)
                    continue
                self._finish(row)
                bar.update(task, completed=self.done, info=self.job.status(row))
        return self.metrics

    def stop_or_rewind(self, lost: AgentsLost) -> None:
        """After losing agents: with `restart_failed` (and a checkpoint), wait for the engine to
        bring them back and rewind everything to the last checkpoint; otherwise stop with one
        line that names the lost agents, the last checkpoint and how to resume."""
        checkpoint = self.checkpoint
        if self.restart_failed and checkpoint is not None:
            self.job.engine.recover()
            self.restore()
            return
        if checkpoint is None:
            raise RunInterrupted(f"{lost}; no checkpoint was written (no run directory)") from None
        last = checkpoint_meta(checkpoint)[self.unit] if checkpoint.is_file() else None
        raise RunInterrupted(f"{lost}; last checkpoint: {self.unit} {last}; resume with: "
                             f"osmotic resume {checkpoint.parent}") from None

    def _finish(self, row: Row) -> None:
        """Record a finished unit: its row, a checkpoint when due, the loggers."""
        self.done += 1
        self.metrics.append(row)
        if self.run_dir is not None:
            self.run_dir.log_metrics(row)
            if self.done % self.every == 0 or self.done == self.total:
                self.save()
        for log in self.loggers:
            log(row)
