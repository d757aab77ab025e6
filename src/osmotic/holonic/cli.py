"""`osmotic holonic run | reproduce | draw`: holonic learning from the command line.

`holonic run` takes one option per HolonicConfig field, generated from the settings model
(`runtime.options`); `reproduce` runs the paper's MNIST study and `draw` renders a holarchy.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from osmotic.holarchy.holarchy import Holarchy
from osmotic.holonic.config import HolonicConfig
from osmotic.holonic.summary import HELP, describe
from osmotic.report.result import RunResult
from osmotic.runtime.options import add_config_options, add_run_command, config_overrides, report
from osmotic.runtime.session import add_mode_parser
from osmotic.settings import EngineSettings, InputError


def add_commands(subparsers: Any) -> None:
    """Register `holonic` and its sub-commands on the top-level parser's subparsers."""
    sub = add_mode_parser(subparsers, "holonic", HELP)
    add_run_command(sub, HolonicConfig, help="any holarchy, data, model and schedule",
                    run=_run, describe=describe)

    rep = sub.add_parser("reproduce", help="the paper's MNIST study (one cell, or --grid)")
    rep.add_argument("--structure", choices=["1P", "2L", "3L", "4L"])
    rep.add_argument("--distribution", choices=["iid", "eqniid", "ueqniid"])
    rep.add_argument("--grid", action="store_true",
                     help="all 4 structures x 3 distributions, with a comparison")
    rep.add_argument("--rounds", type=int, help="rounds (default 50)")
    rep.add_argument("--eval-every", type=int, help="test every N rounds and the last "
                     "(default 1)")
    rep.add_argument("--mnist-dir", help="IDX folder (its t10k files become the test set)")
    rep.add_argument("--seed", type=int)
    rep.add_argument("--out", help="run directory (default: runs/holonic/<structure>-"
                     "<distribution>; with --grid, runs/holonic/grid)")
    rep.add_argument("--json", action="store_true", help="print summary.json as the last line")
    add_config_options(rep, EngineSettings)
    rep.set_defaults(func=_reproduce)

    draw = sub.add_parser("draw", help="render a holarchy YAML to PNG")
    draw.add_argument("file", help="holarchy YAML")
    draw.add_argument("--out", help="PNG path (default: beside the YAML)")
    draw.set_defaults(func=_draw)


def _run(config: HolonicConfig, args: argparse.Namespace) -> RunResult:
    from osmotic.holonic.api import run

    return run(config, out=args.out)


def _reproduce(args: argparse.Namespace) -> int:
    overrides = {"rounds": args.rounds, "mnist_dir": args.mnist_dir, "seed": args.seed,
                 "eval_every": args.eval_every, **config_overrides(args, EngineSettings)}
    if args.grid:
        if args.structure or args.distribution:
            raise InputError("--grid runs every structure and distribution; drop --structure "
                             "and --distribution")
        from osmotic.holonic.grid import run_grid

        out = Path(args.out or "runs/holonic/grid")
        base = HolonicConfig.validated({"structure": "2L", **_given(overrides)}, "options")
        summaries = run_grid(base, out)
        print(json.dumps({"grid": str(out), "runs": summaries}) if args.json
              else f"grid written to {out} (comparison.md, grid-*.png)")
        return 0
    if not (args.structure and args.distribution):
        raise InputError("reproduce needs --structure and --distribution (or --grid)")
    from osmotic.holonic.api import run

    config = HolonicConfig.validated({"structure": args.structure,
                                      "distribution": args.distribution, **_given(overrides)},
                                     "options")
    result = run(config, out=args.out)
    return report(result, args.json, describe)


def _given(options: dict[str, Any]) -> dict[str, Any]:
    """The options given (argparse leaves the others None)."""
    return {k: v for k, v in options.items() if v is not None}


def _draw(args: argparse.Namespace) -> int:
    from osmotic.holarchy.draw import draw_holarchy

    path = Path(args.file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such holarchy file")
    holarchy = Holarchy.from_yaml(path)
    out = Path(args.out) if args.out else path.with_suffix(".png")
    draw_holarchy(holarchy, out, path.stem)
    print(f"{holarchy!r} drawn to {out}")
    return 0
