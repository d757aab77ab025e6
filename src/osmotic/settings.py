"""What every mode's settings share: strict pydantic models and one-line validation errors."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class Settings(BaseModel):
    """A mode's settings: unknown keys are refused, copies are validated again."""

    model_config = ConfigDict(extra="forbid")
    engine_fields: ClassVar[tuple[str, ...]] = ()
    """Settings that decide where and how safely a run computes, not what it computes."""

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
