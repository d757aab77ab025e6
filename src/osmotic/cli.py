"""The `osmotic` command line: a thin layer that parses arguments and calls the modes.

Each mode registers its own sub-commands (`osmotic osml ...`, `osmotic holonic ...`) through an
`add_commands(subparsers)` function in its package, so this file stays short.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from osmotic import __version__


class CliError(Exception):
    """A user error: printed as one line, exit status 2, no traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    from osmotic.osmosis.cli import add_commands as add_osml

    parser = argparse.ArgumentParser(prog="osmotic", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"osmotic {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_osml(sub)
    try:
        from osmotic.holonic.cli import add_commands as add_holonic
    except ImportError:  # the holonic mode is optional until it lands
        add_holonic = None
    if add_holonic is not None:
        add_holonic(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CliError, ValueError, FileNotFoundError) as e:
        print(f"osmotic: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
