"""The `osmotic` command line: a thin layer over the mode registry.

`osmotic run CONFIG.yaml` and `osmotic resume DIR` work for every mode (the file says which);
each mode adds its own commands (`osmotic osml ...`, `osmotic holonic ...`, `osmotic dssl
...`). Whatever goes wrong is one line on stderr and an exit status (`EXIT`).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from osmotic import __version__
from osmotic.settings import InputError

EXIT = {"done": 0, "failed": 1, "input": 2, "interrupted": 130}
"""0 done; 1 the run failed (it diverged, lost agents without restart, or could not write its
files); 2 bad input or environment (a file, a setting, a folder); 130 interrupted (Ctrl-C or
SIGTERM: the run checkpointed, `osmotic resume DIR` continues it)."""


def main(argv: Sequence[str] | None = None) -> int:
    _own_process()
    from osmotic import modes
    from osmotic.runtime.options import add_output_options

    parser = _Parser(prog="osmotic", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"osmotic {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the settings of a YAML file (its `mode:` says which "
                         "mode; a run's own config.yaml works too)")
    run.add_argument("config", type=Path, help="YAML file of settings with a `mode:` "
                     f"({', '.join(modes.NAMES)})")
    add_output_options(run)
    run.add_argument("--overwrite", action="store_true", help="replace a run already in --out "
                     "(removes only the files a run writes)")
    run.set_defaults(func=_run)
    resume = sub.add_parser("resume", help="continue an interrupted run from its last checkpoint")
    resume.add_argument("run_dir", type=Path, help="the run's directory (holds config.yaml)")
    resume.add_argument("--json", action="store_true", help="print summary.json as the last line")
    resume.add_argument("--force", action="store_true", help="resume even if the run's "
                        "config.yaml was edited since its last checkpoint")
    resume.set_defaults(func=_resume)
    modes.add_commands(sub)
    try:
        args = parser.parse_args(argv)
    except InputError as e:
        return _error(e, "input")
    return _one_line(args.func, args)


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line and exit 2, like every other input error, not a usage
    block (`--help` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        raise InputError(f"{self.prog}: {message} (see {self.prog} --help)")


def _one_line(command: Callable[[argparse.Namespace], int | None], args: argparse.Namespace
              ) -> int:
    """Run `command`; whatever stops it becomes one line on stderr and its exit status."""
    from osmotic.engines import AgentsLost, RunInterrupted
    from osmotic.runtime.lifecycle import Interrupted, RunFailed

    try:
        return int(command(args) or 0)
    except Interrupted as e:
        return _error(e, "interrupted")
    except KeyboardInterrupt:  # outside a run's units (loading data, plotting, a second Ctrl-C)
        return _error("interrupted; a run directory with a checkpoint continues with: osmotic "
                      "resume DIR", "interrupted")
    except (RunFailed, AgentsLost, RunInterrupted) as e:
        return _error(e, "failed")
    except (ValueError, FileNotFoundError) as e:
        return _error(e, "input")
    except OSError as e:  # the environment: permissions, a full or read-only disk
        return _error(f"{e.filename or 'a file'}: {e.strerror or e}", "input")


def _error(message: object, kind: str) -> int:
    """One line of at most 300 characters, whatever the message quotes."""
    text = " ".join(str(message).split())
    print(f"osmotic: error: {text if len(text) <= 284 else text[:281] + '...'}", file=sys.stderr)
    return EXIT[kind]


def _own_process() -> None:
    """The command owns its process, so it sets what the Python API leaves to its caller:
    idle OpenMP threads sleep instead of spinning (a spinning thread holds a core that the
    thread it waits for needs: two threads then trained 7-20x slower than one on a busy
    machine). OpenMP reads this once, when torch loads; a user's own setting wins."""
    signal.signal(signal.SIGTERM, _terminate)  # one line and 130, as Ctrl-C, at any moment
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM outside a run's units (starting, finishing): stop as Ctrl-C would."""
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    from osmotic.modes import mode_of_file
    from osmotic.runtime.options import report

    mode = mode_of_file(args.config)
    result = mode.run(args.config, out=args.out, **({"overwrite": True} if args.overwrite else {}))
    return report(result, args.json, mode.describe)


def _resume(args: argparse.Namespace) -> int:
    from osmotic.modes import mode_of_run
    from osmotic.runtime.options import report

    mode = mode_of_run(args.run_dir)
    result = mode.resume(args.run_dir, force=args.force)
    if args.json:
        return report(result, True, mode.describe)
    print(f"resumed and finished: {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
