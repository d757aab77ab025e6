"""A progress bar on a terminal, silence elsewhere (CI logs, pipes, `--json`)."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class _Silent:
    def add_task(self, *args: object, **kwargs: object) -> int:
        return 0

    def update(self, *args: object, **kwargs: object) -> None:
        pass

    def advance(self, *args: object, **kwargs: object) -> None:
        pass


@contextmanager
def progress_bar(enabled: bool | None = None) -> Iterator[Progress | _Silent]:
    """Yield a Rich `Progress` when stderr is a terminal (or `enabled`), else a silent stand-in.

    Use as `with progress_bar() as p: t = p.add_task("epochs", total=n); p.advance(t)`.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield _Silent()
        return
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("{task.fields[info]}"), transient=True)
    with bar:
        yield bar
