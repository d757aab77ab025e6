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

import hashlib
import math
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from torch import Tensor

from osmotic.engines import AgentsLost, RunInterrupted
from osmotic.report.progress import progress_bar
from osmotic.report.rundir import CHECKPOINT, RunDir, jsonable
from osmotic.runtime.checkpoint import (
    CheckpointError,
    checkpoint_meta,
    load_checkpoint,
    save_checkpoint,
)

Row = dict[str, Any]


class Interrupted(RuntimeError):
    """SIGINT or SIGTERM: the run stopped after the unit it was doing and checkpointed it; the
    message says how to continue (exit status 130)."""


class RunFailed(RuntimeError):
    """The run itself failed (exit status 1): it diverged, or its files could not be written."""


class Diverged(RunFailed):
    """A non-finite loss: `agents` names those whose loss was not finite."""

    def __init__(self, message: str, agents: Sequence[str] = ()):
        super().__init__(message)
        self.agents = list(agents)


def check_finite(losses: Any, ids: Sequence[str], trained: Any = None, params: Any = None
                 ) -> None:
    """Raise `Diverged` naming the agents (of `trained`, default all) whose loss is NaN or
    infinite, or whose parameters (`params`, [agents, P], when the mode has them at hand) are;
    agents that sat the unit out may have no loss (NaN) and are not judged."""
    judged = set(ids) if trained is None else set(trained)
    finite = [math.isfinite(v) for v in losses]
    if params is not None:
        finite = [f and ok for f, ok in zip(finite, np.isfinite(params).all(axis=1), strict=True)]
    bad = [a for a, ok in zip(ids, finite, strict=True) if a in judged and not ok]
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        what = "loss or parameters" if params is not None else "loss"
        raise Diverged(f"non-finite {what} for {', '.join(bad[:5])}{more}", bad)


def fingerprint(path: Path) -> str | None:
    """SHA-256 of a run's config.yaml (None without one): a checkpoint records it, so that a
    resume notices a config edited since the run started."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


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
        self.stop_requested: str | None = None
        self.fingerprint = None if run_dir is None else fingerprint(run_dir.file("config.yaml"))

    @property
    def checkpoint(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir.file(CHECKPOINT)

    def save(self) -> None:
        groups, meta = self.job.state()
        try:
            save_checkpoint(self.checkpoint, groups, {
                self.unit: self.done, "metrics": self.metrics, "job": meta,
                "config_sha256": self.fingerprint})
        except OSError as e:
            raise RunFailed(f"{self.checkpoint}: cannot write the checkpoint after {self.unit} "
                            f"{self.done} ({e.strerror}); the previous one is intact") from None

    def restore(self) -> None:
        """Back to the last checkpoint: the job's state, the units done and their rows, each
        checked against this run first (a checkpoint is read, never trusted)."""
        path = self.checkpoint
        groups, meta = load_checkpoint(path)
        done, rows = meta.get(self.unit), meta.get("metrics")
        if not isinstance(done, int) or isinstance(done, bool) or not 0 <= done <= self.total:
            raise CheckpointError(f"{path}: records {self.unit} {done!r}, not one of 0 to "
                                  f"{self.total}")
        if not isinstance(rows, list) or len(rows) != done:
            raise CheckpointError(f"{path}: records {done} {self.unit}s but "
                                  f"{len(rows) if isinstance(rows, list) else 'no'} rows")
        if not all(isinstance(r, dict) and r.get(self.unit) == i + 1 for i, r in enumerate(rows)):
            raise CheckpointError(f"{path}: its rows are not those of {self.unit}s 1 to {done}")
        try:
            written = self.run_dir.read_metrics()[:done]
        except (OSError, ValueError):
            written = None  # unreadable: the checkpoint's rows replace it
        if written is not None and len(written) == done and written != jsonable(rows):
            raise CheckpointError(f"{path}: its rows disagree with metrics.jsonl")
        expected, _ = self.job.state()
        for group, tensors in expected.items():
            for name, want in tensors.items():
                got = groups.get(group, {}).get(name)
                if got is not None and (got.shape != want.shape or got.dtype != want.dtype):
                    raise CheckpointError(
                        f"{path}: {group}/{name} is {got.dtype} {tuple(got.shape)}, this run "
                        f"has {want.dtype} {tuple(want.shape)}")
        try:
            self.job.load_state(groups, meta.get("job", meta))  # older checkpoints: at the top
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            raise CheckpointError(f"{path}: does not fit this run ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0][:160] if str(e) else ''})") from None
        self.done, self.metrics = done, rows
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
        with progress_bar(progress) as bar, self._stop_requests():
            task = bar.add_task(self.label, total=self.total, completed=self.done, info="")
            while self.done < self.total:
                try:
                    row = self.job.step(self.done + 1, bar)
                except AgentsLost as lost:
                    self.stop_or_rewind(lost)
                    bar.update(task, completed=self.done)
                    continue
                except Diverged as e:
                    raise Diverged(f"diverged in {self.unit} {self.done + 1} of {self.total}: "
                                   f"{e}; {self._kept()}", e.agents) from None
                self._finish(row)
                bar.update(task, completed=self.done, info=self.job.status(row))
                if self.stop_requested and self.done < self.total:
                    self._interrupt()
        return self.metrics

    def diverged_after(self, e: Diverged) -> Diverged:
        """`e` (raised after the last unit, by evaluation) with where the run stands."""
        return Diverged(f"diverged after {self.unit} {self.done} of {self.total}: {e}; "
                        f"{self._kept()}", e.agents)

    def _kept(self) -> str:
        """Where the run stands on disk: its last checkpoint, if it has one."""
        if self.checkpoint is None or not self.checkpoint.is_file():
            return "nothing was saved (no run directory)"
        return f"its last checkpoint ({self.unit} {checkpoint_meta(self.checkpoint)[self.unit]})" \
            f" is kept in {self.run_dir.path}"

    def _interrupt(self) -> None:
        """Checkpoint the unit just finished and stop with one line saying how to go on."""
        if self.run_dir is None:
            raise Interrupted(f"interrupted after {self.unit} {self.done} of {self.total} "
                              f"({self.stop_requested}); nothing was saved (no run directory)")
        if self.done % self.every:  # not checkpointed yet
            self.save()
        raise Interrupted(f"interrupted after {self.unit} {self.done} of {self.total}; "
                          f"continue with: osmotic resume {self.run_dir.path}")

    @contextmanager
    def _stop_requests(self) -> Iterator[None]:
        """While units run, SIGINT (Ctrl-C) and SIGTERM ask the run to stop after the unit it
        is doing, checkpointed; a second Ctrl-C stops at once. Signals are only for the main
        thread; elsewhere nothing changes."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def ask(signum: int, frame: Any) -> None:
            if self.stop_requested is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.stop_requested = signal.Signals(signum).name

        before = {s: signal.signal(s, ask) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in before.items():
                signal.signal(s, handler)

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
            try:
                self.run_dir.log_metrics(row)
            except OSError as e:
                raise RunFailed(f"{self.run_dir.file('metrics.jsonl')}: cannot write "
                                f"{self.unit} {self.done}'s row ({e.strerror})") from None
            if self.done % self.every == 0 or self.done == self.total:
                self.save()
        for log in self.loggers:
            log(row)
