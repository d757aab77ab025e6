"""What every mode's settings share: strict pydantic models and one-line validation errors."""
from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError


class Settings(BaseModel):
    """A mode's settings: unknown keys are refused, copies are validated again."""

    model_config = ConfigDict(extra="forbid")

    def with_overrides(self, **changes: Any) -> Self:
        """A validated copy with `changes` applied (None values are ignored)."""
        data = self.model_dump()
        data.update({k: v for k, v in changes.items() if v is not None})
        return type(self)(**data)


def one_line(e: ValidationError, where: str) -> str:
    """`where: field: message (got value)` for the first error of `e`, and how many more: a bad
    file or option is reported on one line, without pydantic's multi-line dump."""
    err = e.errors()[0]
    msg = err["msg"].removeprefix("Value error, ")
    got = "" if err["type"] == "extra_forbidden" or not err["loc"] else f" (got {err['input']!r})"
    field = ".".join(map(str, err["loc"]))
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{where}: " + (f"{field}: " if field else "") + f"{msg}{got}{more}"
