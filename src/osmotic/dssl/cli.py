"""`osmotic dssl run | reproduce`: D-SSL from the command line.

`dssl run` takes one option per DsslConfig field, generated from the settings model
(`runtime.options`); `reproduce` runs the study's grid and writes its table and figures.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from osmotic.dssl.config import DsslConfig
from osmotic.dssl.summary import HELP, describe
from osmotic.report.result import RunResult
from osmotic.runtime.lifecycle import RunFailed
from osmotic.runtime.options import add_config_options, add_run_command, config_overrides
from osmotic.runtime.session import add_mode_parser
from osmotic.settings import InputError

GRID_OPTIONS = ("rounds", "pool_size", "mnist_dir", *DsslConfig.engine_fields)
"""The settings `dssl reproduce` takes: the grid fixes the rest."""


def add_commands(subparsers: Any) -> None:
    """Register `dssl` and its sub-commands on the top-level parser's subparsers."""
    sub = add_mode_parser(subparsers, "dssl", HELP)
    add_run_command(sub, DsslConfig, help="one pre-training run and its probes", run=_run,
                    describe=describe)

    rep = sub.add_parser("reproduce", help="the study's grid, table and figures")
    rep.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    rep.add_argument("--limit", type=int, help="run only the first N cells (priority order)")
    rep.add_argument("--report-only", action="store_true", help="run nothing: table and "
                     "figures from the cells already finished")
    rep.add_argument("--workers", type=int, help="cells run at once, one process each, "
                     "without progress bars (default: one per core this process may use)")
    rep.add_argument("--out", type=Path, help="output directory (default: runs/dssl/grid)")
    rep.add_argument("--json", action="store_true", help="print the grid's summaries as the "
                     "last line")
    add_config_options(rep, DsslConfig, only=GRID_OPTIONS)
    rep.set_defaults(func=_reproduce)


def _run(config: DsslConfig, args: argparse.Namespace) -> RunResult:
    from osmotic.dssl.api import run

    return run(config, out=args.out)


def _reproduce(args: argparse.Namespace) -> int:
    from osmotic.dssl.grid import CellsFailed, run_grid
    from osmotic.engines.inprocess import usable_cores

    given = config_overrides(args, DsslConfig)
    base = DsslConfig.validated({"threads": 1, **given}, "options")  # a cell per core
    out = Path(args.out or "runs/dssl/grid")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be at least 1, got {args.limit}")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise InputError(f"--seeds must be distinct and non-negative, got {args.seeds}")
    workers = args.workers or max(1, len(usable_cores()) // max(base.threads, 1))
    try:
        summaries = run_grid(base, out, args.seeds, limit=args.limit,
                             report_only=args.report_only, workers=workers)
    except CellsFailed as e:  # the runs failed, not the input
        raise RunFailed(str(e)) from None
    print(json.dumps({"grid": str(out), "runs": summaries}) if args.json else
          f"{len(summaries)} runs; table and figures in {out} (comparison.md, *.png)")
    return 0
