"""Engines decide where shards and heads live and how arrays travel; the algorithms don't change."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


class AgentsLost(RuntimeError):
    """Some agents' process died (a Ray actor, say); the message names them."""


class RunInterrupted(RuntimeError):
    """A run stopped before its end and can be resumed; the message says from where."""


def stop_or_rewind(lost: AgentsLost, *, restart: bool, checkpoint: Path | None, unit: str,
                   engine: Any, restore: Callable[[], None]) -> None:
    """After losing agents: with `restart` (and a checkpoint), wait for the engine to bring
    them back and rewind everything to the last checkpoint; otherwise stop with one line that
    names the lost agents, the last checkpoint (`unit` N) and how to resume."""
    from osmotic.runtime.checkpoint import checkpoint_meta

    if restart and checkpoint is not None:
        engine.recover()
        restore()
        return
    if checkpoint is None:
        raise RunInterrupted(f"{lost}; no checkpoint was written (no run directory)") from None
    last = checkpoint_meta(checkpoint)[unit] if checkpoint.is_file() else None
    raise RunInterrupted(f"{lost}; last checkpoint: {unit} {last}; resume with: "
                         f"osmotic resume {checkpoint.parent}") from None
