"""What every run does around its training, written once for every mode.

A mode brings its settings (an `EngineSettings`), its engine and its `Job` (one epoch or round
at a time, `runtime.lifecycle`), and its summary; a `Session` does the rest the same way for
OSM-L, holonic learning and D-SSL: the run directory and its `config.yaml` (with the `mode:`
that `osmotic resume` and `osmotic run` read), the thread choice, live loggers, the lifecycle
(metrics.jsonl, checkpoints, resume, lost agents, the progress bar), shutting the engine down
whatever happens, and `summary.json`, written last so that its presence marks a finished run.

`Mode` is the face every mode package shows (`Config`, `run`, `resume`, its commands); the
registry in `osmotic.modes` collects them.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from osmotic.engines.inprocess import cpu_threads
from osmotic.models import register_model
from osmotic.report.result import RunResult
from osmotic.report.rundir import CHECKPOINT, Lock, RunDir, claim
from osmotic.report.tensorboard import live_loggers
from osmotic.runtime.checkpoint import checkpoint_meta
from osmotic.runtime.lifecycle import (
    Diverged,
    Job,
    Lifecycle,
    Logger,
    Row,
    RunFailed,
    as_loggers,
    fingerprint,
    resumable,
)
from osmotic.settings import EngineSettings, InputError, Settings

S = TypeVar("S", bound=Settings)
J = TypeVar("J", bound=Job)
T = TypeVar("T")
MODEL_FIELDS = ("model", "encoder", "backbone")
"""Settings that name a model, which the Python API also accepts as the class itself."""


@dataclass(frozen=True)
class Mode:
    """One learning mode as the registry, the CLI and `osmotic.run` / `osmotic.resume` see it."""

    name: str
    help: str
    config: type[EngineSettings]
    run: Callable[..., RunResult]
    """`run(config | YAML path | None, *, out=None, progress=None, log=None, **settings)`."""
    resume: Callable[..., RunResult]
    """`resume(run_dir, *, progress=None)`: continue an interrupted run, same numbers."""
    describe: Callable[[RunResult], str]
    """A few words on a finished run, for the terminal."""


class Session:
    """One run: its directory (None: nothing written, as benchmarks and tests train), threads,
    loggers, engine and lifecycle; see the module docstring."""

    def __init__(self, config: EngineSettings, run_dir: RunDir | None = None, *,
                 resume: bool = False, lock: Lock | None = None):
        self.config, self.dir, self.resume, self.lock = config, run_dir, resume, lock
        self.finished: RunResult | None = None
        """Set when `out` already held this experiment, finished: nothing is to be run."""

    @classmethod
    def open(cls, config: EngineSettings, out: str | Path, *, resume: bool = False,
             record: Mapping[str, Any] | None = None) -> Session:
        """A session writing into `out`, locked against other processes. A new run claims the
        folder (`report.rundir.claim`: absent or empty, or emptied with `overwrite`; a folder
        holding this experiment finished gives a session whose `finished` is set and that
        writes nothing) and records its settings in config.yaml (the mode, every setting, and
        `record`: descriptions such as the data source); a resumed one needs an unfinished run
        with a checkpoint there."""
        out = Path(out)
        if resume:
            resumable(out)
            return cls(config, RunDir(out), resume=True, lock=Lock(out))
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"{e.filename or out}: cannot create the run directory "
                             f"({e.strerror})") from None
        lock = Lock(out)  # first: no other process may write while this one looks
        try:
            if claim(config, out, overwrite=config.overwrite) == "finished":
                lock.release()
                session = cls(config)
                session.finished = RunResult.from_dir(out)
                print(f"{out} already holds this run, finished; reading it back",
                      file=sys.stderr)
                return session
            rd = RunDir(out)
            rd.write_config({"mode": config.mode, **config.recorded_form(), **(record or {})})
        except BaseException as e:  # refused, interrupted, or the disk said no: let go
            lock.release()
            if isinstance(e, OSError):
                raise InputError(f"{e.filename or out}: cannot write the run directory "
                                 f"({e.strerror})") from None
            raise
        return cls(config, rd, lock=lock)

    @contextmanager
    def computing(self, log: Logger | Sequence[Logger] | None = None,
                  work: int | None = None) -> Iterator[list[Logger]]:
        """Threads as `threads` asks (0: `work` decides, see `engines.inprocess`) and the live
        loggers open; yields every logger, the caller's `log` first."""
        with cpu_threads(self.config.threads, work), \
                live_loggers(self.config.log if self.dir else [], self.dir) as live:
            yield [*as_loggers(log), *live]

    def train(self, engine: Callable[[], Any], job: Callable[[Any], J], *, total: int, unit: str,
              label: str, checkpoint_every: int, finish: Callable[[J, list[Row]], T],
              log: Logger | Sequence[Logger] | None = None, progress: bool | None = None,
              work: int | None = None) -> T:
        """Start the engine, make the job, run its units to `total` (or from the checkpoint),
        then `finish(job, rows)` while the engine still runs and the threads are still set;
        the engine is shut down however this ends."""
        try:
            return self._train(engine, job, total=total, unit=unit, label=label,
                               checkpoint_every=checkpoint_every, finish=finish, log=log,
                               progress=progress, work=work)
        except BaseException:  # the folder is free again, however the run ended
            if self.lock is not None:
                self.lock.release()
            raise

    def _train(self, engine: Callable[[], Any], job: Callable[[Any], J], *, total: int,
               unit: str, label: str, checkpoint_every: int,
               finish: Callable[[J, list[Row]], T], log: Logger | Sequence[Logger] | None,
               progress: bool | None, work: int | None) -> T:
        with self.computing(log, work) as loggers:
            running = engine()
            try:
                made = job(running)
                life = Lifecycle(made, total=total, unit=unit, run_dir=self.dir,
                                 checkpoint_every=checkpoint_every,
                                 restart_failed=self.config.restart_failed, label=label,
                                 loggers=loggers)
                try:
                    rows = life.run(self.resume, progress)
                    try:
                        return finish(made, rows)
                    except Diverged as e:  # evaluating the trained models
                        raise life.diverged_after(e) from None
                except Diverged as e:
                    if self.dir is not None:  # what a reader of the folder must see first
                        self.dir.write_summary({"status": "diverged", "error": str(e),
                                                "agents": e.agents})
                    raise
            finally:
                shutdown = getattr(running, "shutdown", None)
                if shutdown is not None:
                    shutdown()

    def finish(self, summary: dict[str, Any]) -> RunResult:
        """Write summary.json (last: it marks the run finished, `status: finished`), let go of
        the folder and read the run back."""
        assert self.dir is not None, "a session without a run directory writes no summary"
        try:
            self.dir.write_summary({"status": "finished", **summary})
        except OSError as e:
            raise RunFailed(f"{self.dir.file('summary.json')}: cannot write ({e.strerror}); "
                            "the last checkpoint is intact") from None
        if self.lock is not None:
            self.lock.release()
        return RunResult.from_dir(self.dir.path)


def recorded_settings(kind: type[S], run_dir: str | Path, force: bool = False) -> S:
    """The settings an unfinished run in `run_dir` recorded, to resume it; one line when it
    has finished, has no checkpoint, was given its data in memory (which only the caller who
    holds them can give again), or when its config.yaml was edited since the checkpoint was
    written (unless `force`: a resume runs the settings and code it names)."""
    config = resumable(run_dir) / "config.yaml"
    recorded = checkpoint_meta(Path(run_dir) / CHECKPOINT).get("config_sha256")
    if recorded is not None and recorded != fingerprint(config) and not force:
        raise InputError(f"{config}: edited since the run's last checkpoint; resume with "
                         "--force (force=True) to run it as it is now")
    return kind.from_yaml(config)


def configure(kind: type[S], config: S | str | Path | None, settings: dict[str, Any]) -> S:
    """The settings of a Python API call: `config` (a settings object, a YAML file of them, or
    None: the defaults) with keyword `settings` on top, validated as the CLI validates them; a
    bad setting is one line. A class or function given as `model` / `encoder` / `backbone`
    stands for its import path; a function, or a class defined inside a function, is
    registered under that name for this process (the caller's own code, not text from a file;
    a resume in another process then says where to move it)."""
    for key in MODEL_FIELDS:
        value = settings.get(key)
        if callable(value):
            settings[key] = f"{value.__module__}:{value.__qualname__}"
            if "<locals>" in value.__qualname__ or not isinstance(value, type):
                # the caller's own function, given as an object: trusted as code they run
                register_model(settings[key], value)
    if isinstance(config, str | Path):
        config = kind.from_yaml(config)
    return kind.validated(settings if config is None else config.merged(settings), "settings")


def split_log(log: Any, settings: dict[str, Any]) -> list[Logger]:
    """An API call's `log`: names (`"tensorboard"`) go to the config's `log` setting, callables
    (called with every metrics row) are returned as loggers."""
    items = [] if log is None else [log] if callable(log) or isinstance(log, str) else list(log)
    names = [x for x in items if isinstance(x, str)]
    if names:
        settings["log"] = [*settings.get("log", []), *names]
    return [x for x in items if not isinstance(x, str)]


def mode_face(package: str) -> Callable[[str], Any]:
    """A mode package's module `__getattr__`: `run`, `resume` and `MODE` come from its `api`
    module on first use, so that importing the package (and the CLI's start-up) does not load
    the training code."""
    def attribute(name: str) -> Any:
        if name in ("run", "resume", "MODE"):
            return getattr(importlib.import_module(f"{package}.api"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return attribute


def add_mode_parser(sub: Any, name: str, help: str) -> Any:
    """`osmotic <name> ...`: the mode's parser, returning its sub-command parsers."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
    return parser.add_subparsers(dest=f"{name}_command", required=True)
