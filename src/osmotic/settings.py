"""What every mode's settings share: strict pydantic models, one reader of settings files, the
engine settings every mode has, and one-line validation errors."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

LARGEST_INT = 2**31 - 1
LARGEST_SEED = 2**32 - 1
LARGEST_FLOAT = 3.4028234e38
"""Numbers a setting may hold, nested values included: what torch, NumPy and scikit-learn take
as a size, a seed or a float32 everywhere (a larger one fails deep inside them)."""


class InputError(ValueError):
    """Bad input (a file, an option, a setting): printed as one line, exit status 2."""


class Settings(BaseModel):
    """A mode's settings: unknown keys are refused, copies are validated again."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _representable(cls, v: Any, info: ValidationInfo) -> Any:
        """Every number in a setting, however nested, within `LARGEST_INT` (`LARGEST_SEED`
        for a seed) and `LARGEST_FLOAT`."""
        largest = LARGEST_SEED if info.field_name == "seed" else LARGEST_INT
        stack = [v]
        while stack:
            x = stack.pop()
            if isinstance(x, dict):
                stack.extend(x.values())
            elif isinstance(x, list | tuple):
                stack.extend(x)
            elif isinstance(x, int) and not isinstance(x, bool) and abs(x) > largest:
                raise ValueError(f"{x} is beyond {largest}")
            elif isinstance(x, float) and abs(x) > LARGEST_FLOAT:
                raise ValueError(f"{x} is beyond float32's {LARGEST_FLOAT:g}")
        return v
    engine_fields: ClassVar[tuple[str, ...]] = ()
    """Settings that decide where and how safely a run computes, not what it computes."""
    mode: ClassVar[str] = ""
    """The mode these settings belong to (the `mode:` a run's config.yaml records)."""
    recorded: ClassVar[tuple[str, ...]] = ()
    """Keys a run adds to its config.yaml to describe itself (not settings): skipped on reading."""
    alternatives: ClassVar[tuple[tuple[str, str], ...]] = ()
    """Pairs of settings that say one thing two ways (`merged`: a change to one drops the
    other, so an option can replace what a file says the other way)."""

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
        if data.get("data_in_memory"):
            raise InputError(f"{path}: records a run whose data were given in memory from "
                             "Python; give the same data again from Python")
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

    def recorded_form(self) -> dict[str, Any]:
        """The settings as a run records them: relative paths (given as options or from
        Python) made absolute from the working directory, so that the record means the same
        from anywhere (a resume, `osmotic run` of the run's config.yaml)."""
        return type(self).with_folder(self.model_dump(exclude={"overwrite"}), Path.cwd())

    def merged(self, changes: dict[str, Any]) -> dict[str, Any]:
        """The settings this object was given (a file's, say) with `changes` on top, to be
        validated again: defaults < file < options. A change to one of `alternatives` drops
        the other."""
        data = {**self.model_dump(exclude_unset=True), **changes}
        for a, b in self.alternatives:
            for given, other in ((a, b), (b, a)):
                if given in changes and other not in changes:
                    data.pop(other, None)
        return data

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

    def same_experiment(self, other: Settings) -> bool:
        """Whether `other` computes the same numbers (engine settings aside)."""
        skip = set(self.engine_fields)
        return self.model_dump(exclude=skip) == other.model_dump(exclude=skip)


class EngineSettings(Settings):
    """Where and how safely a run computes, the same in every mode: threads, engine, Ray,
    checkpoints and live loggers. None of them changes a run's numbers."""

    engine_fields = ("threads", "engine", "actors", "ray_address", "restart_failed",
                     "checkpoint_every", "log", "overwrite")

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
    overwrite: bool = Field(False, description="replace the run in the output folder: removes "
                            "only the files a run writes (never recorded in config.yaml)")


SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML was built with it: the same documents, several times
faster (a holarchy of 100,000 terminals takes seconds with the Python one)."""
SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def read_mapping(path: Path, error: type[Exception] = ValueError) -> dict[str, Any]:
    """A YAML file of settings as a dict (an empty file: {}; a byte-order mark is ignored), or
    one line (`error`) naming the file, and the line for a syntax error."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8-sig"), Loader=SafeLoader)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise error(f"{path}: cannot read (not UTF-8 text)") from None
    except RecursionError:
        raise error(f"{path}: nested too deeply to read") from None
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
