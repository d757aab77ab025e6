"""What every mode's settings share: strict pydantic models, one reader of settings files, the
engine settings every mode has, and one-line validation errors."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class InputError(ValueError):
    """Bad input (a file, an option, a setting): printed as one line, exit status 2."""


class Settings(BaseModel):
    """A mode's settings: unknown keys are refused, copies are validated again."""

    model_config = ConfigDict(extra="forbid")
    engine_fields: ClassVar[tuple[str, ...]] = ()
    """Settings that decide where and how safely a run computes, not what it computes."""
    mode: ClassVar[str] = ""
    """The mode these settings belong to (the `mode:` a run's config.yaml records)."""
    recorded: ClassVar[tuple[str, ...]] = ()
    """Keys a run adds to its config.yaml to describe itself (not settings): skipped on reading."""

    @classmethod
    def from_yaml(cls, path: str | Path) -> Self:
        """The settings of a YAML file (a run's config.yaml too): one line naming the file and
        the setting at fault for anything wrong. Relative paths in it are taken from the
        file's folder, as a reader of the file would (`with_folder`)."""
        path = Path(path)
        data = read_mapping(path, InputError)
        mode = data.pop("mode", cls.mode)
        if mode != cls.mode:
            raise InputError(f"{path}: mode: this file is for {mode!r}, not {cls.mode!r}")
        for key in cls.recorded:
            data.pop(key, None)
        try:
            return cls.model_validate(cls.with_folder(data, path.parent))
        except ValidationError as e:
            raise InputError(one_line(e, str(path))) from None

    @classmethod
    def with_folder(cls, data: dict[str, Any], folder: Path) -> dict[str, Any]:
        """`data` read from a file in `folder`, its relative paths made absolute (a mode with
        file settings overrides this)."""
        return data

    def merged(self, changes: dict[str, Any]) -> dict[str, Any]:
        """The settings this object was given (a file's, say) with `changes` on top, to be
        validated again: defaults < file < options."""
        return {**self.model_dump(exclude_unset=True), **changes}

    @classmethod
    def validated(cls, data: dict[str, Any], where: str) -> Self:
        """`data` as settings, or one line naming `where` and the field at fault."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise InputError(one_line(e, where)) from None

    def with_overrides(self, **changes: Any) -> Self:
        """A validated copy with `changes` applied (None values are ignored)."""
        data = self.model_dump()
        data.update({k: v for k, v in changes.items() if v is not None})
        return type(self)(**data)

    @classmethod
    def from_run(cls, run_dir: str | Path) -> Self:
        """The settings a run recorded in its `config.yaml` (its other entries, such as the
        data source, are descriptions, not settings)."""
        saved = yaml.safe_load((Path(run_dir) / "config.yaml").read_text()) or {}
        return cls(**{k: v for k, v in saved.items() if k in cls.model_fields})

    def same_experiment(self, other: Settings) -> bool:
        """Whether `other` computes the same numbers (engine settings aside)."""
        skip = set(self.engine_fields)
        return self.model_dump(exclude=skip) == other.model_dump(exclude=skip)


class EngineSettings(Settings):
    """Where and how safely a run computes, the same in every mode: threads, engine, Ray,
    checkpoints and live loggers. None of them changes a run's numbers."""

    engine_fields = ("threads", "engine", "actors", "ray_address", "restart_failed",
                     "checkpoint_every", "log")

    threads: int = Field(0, ge=0, description="CPU threads for tensor operations, per process; "
                         "0: the cores other processes leave idle when the work is large "
                         "enough to split, else 1 (one per Ray actor)")
    engine: Literal["inprocess", "ray"] = Field("inprocess", description="where agents "
                                                "compute: this process, or Ray actors")
    actors: int | None = Field(None, ge=1, description="Ray actors (default: one per CPU, at "
                               "most one per agent)")
    ray_address: str | None = Field(None, description="Ray cluster to join ('auto' or "
                                    "HOST:PORT); default: start a local instance")
    restart_failed: bool = Field(False, description="recreate lost Ray actors from the last "
                                 "checkpoint and go on, instead of stopping")
    checkpoint_every: int | None = Field(None, ge=1, description="epochs or rounds between "
                                         "checkpoints (default: every epoch for OSM-L, every "
                                         "budget K rounds for holonic, every 5 rounds for "
                                         "D-SSL)")
    log: list[Literal["tensorboard"]] = Field(default_factory=list, description="live loggers "
                                              "besides metrics.jsonl (tensorboard: event files "
                                              "in the run directory)")


def read_mapping(path: Path, error: type[Exception] = ValueError) -> dict[str, Any]:
    """A YAML file of settings as a dict (an empty file: {}), or one line (`error`) naming the
    file, and the line for a syntax error."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise error(f"{path}: not valid YAML{where}: "
                    f"{getattr(e, 'problem', None) or str(e).splitlines()[0]}") from None
    data = {} if data is None else data
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise error(f"{path}: expected a mapping of setting: value")
    return data


def one_line(e: ValidationError, where: str) -> str:
    """`where: field: message (got value)` for the first error of `e`, and how many more: a bad
    file or option is reported on one line, without pydantic's multi-line dump."""
    err = e.errors()[0]
    msg = err["msg"].removeprefix("Value error, ")
    got = "" if err["type"] == "extra_forbidden" or not err["loc"] else f" (got {err['input']!r})"
    field = ".".join(map(str, err["loc"]))
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{where}: " + (f"{field}: " if field else "") + f"{msg}{got}{more}"
