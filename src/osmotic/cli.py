"""The `osmotic` command line: a thin layer that parses arguments and calls the modes.

Each mode registers its own sub-commands (`osmotic osml ...`, `osmotic holonic ...`,
`osmotic dssl ...`) through an `add_commands(subparsers)` function in its package, so this
file stays short.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from osmotic import __version__


class CliError(Exception):
    """A user error: printed as one line, exit status 2, no traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    from osmotic.osml.cli import add_commands as add_osml

    parser = argparse.ArgumentParser(prog="osmotic", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"osmotic {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_osml(sub)
    from osmotic.dssl.cli import add_commands as add_dssl
    from osmotic.holonic.cli import add_commands as add_holonic

    add_holonic(sub)
    add_dssl(sub)
    resume = sub.add_parser("resume", help="continue an interrupted run from its last checkpoint")
    resume.add_argument("run_dir", help="the run's directory (holds config.yaml)")
    resume.add_argument("--json", action="store_true", help="print summary.json as the last line")
    resume.set_defaults(func=_resume)
    args = parser.parse_args(argv)
    from osmotic.engines import AgentsLost, RunInterrupted

    try:
        return int(args.func(args) or 0)
    except (CliError, ValueError, FileNotFoundError, AgentsLost, RunInterrupted) as e:
        print(f"osmotic: error: {e}", file=sys.stderr)
        return 2


def _resume(args: argparse.Namespace) -> int:
    """Dispatch on the `mode` the run recorded in its config.yaml."""
    import json
    from pathlib import Path

    from osmotic.settings import read_mapping

    config = Path(args.run_dir) / "config.yaml"
    if not config.is_file():
        raise CliError(f"{config}: no such file; is {args.run_dir} a run directory?")
    mode = read_mapping(config, CliError).get("mode")
    if mode == "osml":
        from osmotic.osml.experiments import resume

        done = resume(args.run_dir)
        print(json.dumps(done.summary) if args.json else f"resumed and finished: {done.dir.path}")
    elif mode == "holonic":
        from osmotic.holonic.runner import resume as resume_holonic

        summary = resume_holonic(args.run_dir)
        print(json.dumps(summary) if args.json else f"resumed and finished: {summary['run_dir']}")
    elif mode == "dssl":
        from osmotic.dssl.runner import resume as resume_dssl

        summary = resume_dssl(args.run_dir)
        print(json.dumps(summary) if args.json else f"resumed and finished: {summary['run_dir']}")
    else:
        raise CliError(f"{config}: resuming mode {mode!r} is not supported (osml, holonic and "
                       "dssl runs only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
