"""A run directory: everything a run produced, in files other tools can read.

Layout (every mode): `config.yaml` (the resolved settings), `metrics.jsonl` (one JSON object per
epoch or round, appended as the run goes so nothing is lost to a crash), `summary.json` (the
final numbers, stable keys), plus mode-specific arrays and PNG plots.

Nothing is lost: a new run claims only an empty or absent folder (`claim`), or one that holds
an identical finished run (read back, not run again); anything else is refused with one line
saying what to do, and `overwrite` removes only the files a run writes. A lock file stops two
processes writing one folder. `config.yaml`, `summary.json` and checkpoints are written
atomically (a temporary file, fsync, rename), so a crash at any moment leaves the last good
version readable.
"""
from __future__ import annotations

import fcntl
import itertools
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Self

import yaml

from osmotic.settings import InputError, SafeDumper, SafeLoader, Settings

CHECKPOINT = "checkpoint.safetensors"
"""The run's last checkpoint, inside its directory (written by `runtime.lifecycle`)."""
LOCK = ".osmotic.lock"
"""Held (flock) by the process writing the run."""
_WRITTEN = ("config.yaml", "metrics.jsonl", "summary.json", CHECKPOINT, "clusterings.json",
            "embeddings.safetensors", "partition.json", "traffic.json")
RUN_FILES = (*_WRITTEN, *(f"{name}.tmp" for name in _WRITTEN), LOCK)  # .tmp: atomic writes
RUN_FOLDERS = ("plots", "models", "tensorboard")
"""What runs write: all that `overwrite` may remove, and all that marks a folder as a run's."""


def jsonable(x: Any) -> Any:
    """NaN/inf become null so the files stay valid JSON for every reader."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "item") and getattr(x, "ndim", 1) == 0:  # numpy / torch scalars
        return jsonable(x.item())
    if hasattr(x, "tolist"):
        return jsonable(x.tolist())
    return x


def write_atomic(path: Path, text: str) -> None:
    """Write `text` so that `path` holds either its old content or all of the new: a temporary
    file beside it, flushed to disk, then renamed over it."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (`write_atomic`), NaN and infinities as null."""
    write_atomic(path, json.dumps(jsonable(obj), indent=2) + "\n")


def siblings(path: Path) -> Iterator[Path]:
    """`path`, then the names a new run takes beside it (`name-1`, `name-2`, ...)."""
    yield path
    yield from (path.with_name(f"{path.name}-{n}") for n in itertools.count(1))


class RunDir:
    """The output folder of one run (created if absent)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.plots = self.path / "plots"
        self.plots.mkdir(exist_ok=True)

    def file(self, name: str) -> Path:
        return self.path / name

    def write_config(self, config: dict[str, Any]) -> None:
        write_atomic(self.file("config.yaml"), yaml.dump(jsonable(config), Dumper=SafeDumper, sort_keys=False))

    def reset_metrics(self) -> None:
        self.file("metrics.jsonl").write_text("")

    def log_metrics(self, row: dict[str, Any]) -> None:
        with self.file("metrics.jsonl").open("a") as f:
            f.write(json.dumps(jsonable(row)) + "\n")

    def rewrite_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Replace metrics.jsonl by `rows` (after a rewind to a checkpoint), atomically."""
        tmp = self.file("metrics.jsonl.tmp")
        tmp.write_text("".join(json.dumps(jsonable(r)) + "\n" for r in rows))
        os.replace(tmp, self.file("metrics.jsonl"))

    def read_metrics(self) -> list[dict[str, Any]]:
        p = self.file("metrics.jsonl")
        return [json.loads(line) for line in p.read_text().splitlines() if line] if p.exists() else []

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.file("summary.json"), summary)

    def read_summary(self) -> dict[str, Any]:
        return json.loads(self.file("summary.json").read_text())


RunState = Literal["finished", "interrupted", "diverged", "new"]


def run_state(settings: Settings, run_dir: str | Path) -> RunState:
    """What `run_dir` holds of the experiment `settings` describe: a finished run (read it
    back), an interrupted one with a checkpoint (resume it), or nothing usable (absent,
    unreadable, or other settings: start afresh). What a grid needs to resume where it
    stopped."""
    rd = Path(run_dir)
    kind = type(settings)
    try:  # both as recorded: paths absolute; a run given its data in memory is never the same
        same = (rd / "config.yaml").is_file() and kind.model_validate(
            settings.recorded_form()).same_experiment(kind.from_yaml(rd / "config.yaml"))
    except ValueError:
        same = False
    if not same:
        return "new"
    if (rd / "summary.json").is_file():
        try:
            status = json.loads((rd / "summary.json").read_text()).get("status", "finished")
        except (OSError, ValueError, AttributeError):
            return "new"
        return "finished" if status == "finished" else "diverged"
    return "interrupted" if (rd / CHECKPOINT).is_file() else "new"


def find_run(settings: Settings, run_dir: str | Path) -> tuple[Path, RunState]:
    """Where a grid keeps the experiment `settings` describe: `run_dir` or, when that holds
    another experiment, the sibling (`name-1`, `name-2`, ... as `RunDir` names them) that holds
    a finished or interrupted run of this one, else the first free name. Looking only at
    `run_dir` re-ran a finished cell on every call once another run held its folder."""
    # the first sibling that is free (None) or holds this experiment (not "new")
    states = ((p, run_state(settings, p) if p.exists() else None) for p in siblings(Path(run_dir)))
    return next((p, state or "new") for p, state in states if state != "new")


RUN_OUTPUTS = {"plots": ".png", "models": ".safetensors", "tensorboard": "events.out.tfevents"}
"""What runs put inside their folders: `overwrite` removes these and nothing else there."""


def written_by_a_run(folder: Path) -> bool:
    """Whether `folder`'s config.yaml is one a run wrote (it records its mode and whether its
    data were given in memory); a user's own settings file is not."""
    try:
        config = yaml.load((folder / "config.yaml").read_text(), Loader=SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return False
    return isinstance(config, dict) and "mode" in config and "data_in_memory" in config


def remove_run_files(folder: Path) -> None:
    """Remove what runs write in `folder`, and only that: its files by name, and inside
    plots/, models/ and tensorboard/ only the kinds of files runs put there (the folders go
    when they are left empty)."""
    for name in RUN_FILES:
        if name != LOCK:  # held by the caller
            (folder / name).unlink(missing_ok=True)
    for sub, kind in RUN_OUTPUTS.items():
        target = folder / sub
        if target.is_dir():
            for f in target.rglob("*"):
                if f.is_file() and (f.name.endswith(kind) or f.name.startswith(kind)):
                    f.unlink()
            for d in sorted((d for d in target.rglob("*") if d.is_dir()), reverse=True):
                if not any(d.iterdir()):
                    d.rmdir()
            if not any(target.iterdir()):
                target.rmdir()


def claim(settings: Settings, folder: str | Path, *, overwrite: bool = False
          ) -> Literal["new", "finished"]:
    """May a new run of `settings` write into `folder` (which the caller has locked)? "new":
    yes (absent, empty, left by a run stopped before its first checkpoint, or emptied of what
    runs write, with `overwrite`); "finished": it holds this experiment, finished (read it
    back). Anything else is refused with one line naming the folder and what to do: an
    unfinished run is resumed, not overwritten; a folder of the user's own files is left
    alone."""
    folder = Path(folder)
    if not folder.exists():
        return "new"
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder; choose another --out")
    present = {p.name for p in folder.iterdir()} - {LOCK}
    if not present:
        return "new"
    ours = written_by_a_run(folder)
    progress = {"summary.json", "metrics.jsonl", CHECKPOINT} & present
    if ours and not progress and present <= set(RUN_FILES + RUN_FOLDERS):
        remove_run_files(folder)  # a start that stopped before its first checkpoint: nothing
        return "new"              # of value, and no one else's file
    if not overwrite:
        state = run_state(settings, folder)
        if state == "finished":
            return "finished"
        if state == "interrupted":
            raise InputError(f"{folder}: holds an unfinished run; continue it with: osmotic "
                             f"resume {folder} (or choose another --out, or --overwrite)")
        if state == "diverged":
            raise InputError(f"{folder}: holds a run that diverged; choose another --out, or "
                             "--overwrite to replace it")
        what = "another run" if ours else "files of its own"
        raise InputError(f"{folder}: holds {what} ({', '.join(sorted(present)[:4])}); choose "
                         "another --out" + (", or --overwrite to replace it" if ours else ""))
    if not ours:
        raise InputError(f"{folder}: holds no run to overwrite ({', '.join(sorted(present)[:4])}"
                         "); choose another --out")
    remove_run_files(folder)
    return "new"


class Lock:
    """An exclusive lock on a run folder (flock on `LOCK`), so two processes never write one
    run; released on `release()`, on leaving a `with` block, or when the process ends."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK
        self.fd: int | None = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise InputError(f"{folder}: another run is writing here now; wait for it or "
                             "choose another --out") from None

    def release(self) -> None:
        """Let go (the file stays: removing it while another process opens it would let two
        processes hold two locks)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()

