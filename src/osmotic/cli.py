"""The `osmotic` command line: a thin layer over the mode registry.

`osmotic run CONFIG.yaml` and `osmotic resume DIR` work for every mode (the file says which);
each mode adds its own commands (`osmotic osml ...`, `osmotic holonic ...`, `osmotic dssl
...`). Exit status: 0 done, 1 the run failed (agents lost without restart), 2 bad input or
environment (one line on stderr).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from osmotic import __version__


def main(argv: Sequence[str] | None = None) -> int:
    _own_process()
    from osmotic import modes
    from osmotic.runtime.options import add_output_options

    parser = argparse.ArgumentParser(prog="osmotic", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"osmotic {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the settings of a YAML file (its `mode:` says which "
                         "mode; a run's own config.yaml works too)")
    run.add_argument("config", type=Path, help="YAML file of settings with a `mode:` "
                     f"({', '.join(modes.NAMES)})")
    add_output_options(run)
    run.set_defaults(func=_run)
    resume = sub.add_parser("resume", help="continue an interrupted run from its last checkpoint")
    resume.add_argument("run_dir", type=Path, help="the run's directory (holds config.yaml)")
    resume.add_argument("--json", action="store_true", help="print summary.json as the last line")
    resume.set_defaults(func=_resume)
    modes.add_commands(sub)
    args = parser.parse_args(argv)
    from osmotic.engines import AgentsLost, RunInterrupted

    try:
        return int(args.func(args) or 0)
    except (AgentsLost, RunInterrupted) as e:  # the run failed; its message says how to resume
        print(f"osmotic: error: {e}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as e:  # bad input
        print(f"osmotic: error: {e}", file=sys.stderr)
        return 2


def _own_process() -> None:
    """The command owns its process, so it sets what the Python API leaves to its caller:
    idle OpenMP threads sleep instead of spinning (a spinning thread holds a core that the
    thread it waits for needs: two threads then trained 7-20x slower than one on a busy
    machine). OpenMP reads this once, when torch loads; a user's own setting wins."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _run(args: argparse.Namespace) -> int:
    from osmotic.modes import mode_of_file
    from osmotic.runtime.options import report

    mode = mode_of_file(args.config)
    return report(mode.run(args.config, out=args.out), args.json, mode.describe)


def _resume(args: argparse.Namespace) -> int:
    from osmotic.modes import mode_of_run
    from osmotic.runtime.options import report

    mode = mode_of_run(args.run_dir)
    result = mode.resume(args.run_dir)
    if args.json:
        return report(result, True, mode.describe)
    print(f"resumed and finished: {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
