"""What a run started from Python returns: its numbers and where its files are."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from osmotic.models import register_model
from osmotic.report.rundir import RunDir
from osmotic.settings import Settings, one_line

S = TypeVar("S", bound=Settings)
MODEL_FIELDS = ("model", "encoder")


@dataclass
class RunResult:
    """`summary` is summary.json, `metrics` every epoch's or round's row (metrics.jsonl),
    `run_dir` the folder holding them, the config, models and plots."""

    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    run_dir: Path

    @classmethod
    def from_dir(cls, run_dir: str | Path) -> RunResult:
        """Read a finished run back from its directory (as written, NaN as None)."""
        rd = RunDir(run_dir, fresh=False)
        return cls(rd.read_summary(), rd.read_metrics(), rd.path)


def configure(kind: type[S], config: S | None, settings: dict[str, Any]) -> S:
    """The settings of a Python API call: `config` (None: the defaults) with keyword
    `settings` on top, validated as the CLI validates them; a bad setting is one line. A class
    or function given as `model` / `encoder` stands for its import path; one defined inside a
    function has none, so it is registered under that name for this process (a resume in
    another process then says where to move it)."""
    for key in MODEL_FIELDS:
        value = settings.get(key)
        if callable(value):
            settings[key] = f"{value.__module__}:{value.__qualname__}"
            if "<locals>" in value.__qualname__:
                register_model(settings[key], value)
    try:
        base = {} if config is None else config.model_dump()
        return kind.model_validate({**base, **settings})
    except ValidationError as e:
        raise ValueError(one_line(e, "settings")) from None


def split_log(log: Any, settings: dict[str, Any]) -> list[Any]:
    """An API call's `log`: names (`"tensorboard"`) go to the config's `log` setting, callables
    (called with every metrics row) are returned as loggers."""
    items = [] if log is None else [log] if callable(log) or isinstance(log, str) else list(log)
    names = [x for x in items if isinstance(x, str)]
    if names:
        settings["log"] = [*settings.get("log", []), *names]
    return [x for x in items if not isinstance(x, str)]
