"""`osmotic holonic reproduce | run | draw`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from osmotic.holarchy.holarchy import Holarchy
from osmotic.holonic.config import ENGINE_FIELDS, HolonicConfig
from osmotic.report.tensorboard import LOGGERS


def add_commands(sub: Any) -> None:
    """Register `holonic` and its sub-commands on the top-level parser's subparsers."""
    p = sub.add_parser("holonic", help="Holonic Learning (holarchies, HoAL averaging)")
    hsub = p.add_subparsers(dest="holonic_command", required=True)

    rep = hsub.add_parser("reproduce", help="the paper's MNIST study (one cell, or --grid)")
    rep.add_argument("--structure", choices=["1P", "2L", "3L", "4L"])
    rep.add_argument("--distribution", choices=["iid", "eqniid", "ueqniid"])
    rep.add_argument("--grid", action="store_true",
                     help="all 4 structures x 3 distributions, with a comparison")
    rep.add_argument("--rounds", type=int, help="rounds (default 50)")
    rep.add_argument("--eval-every", type=int, help="test every N rounds and the last "
                     "(default 1)")
    _common(rep)
    rep.set_defaults(func=_reproduce)

    run = hsub.add_parser("run", help="any holarchy, partition, model and schedule")
    run.add_argument("--config", required=True, help="run settings (YAML)")
    _common(run)
    run.set_defaults(func=_run)

    draw = hsub.add_parser("draw", help="render a holarchy YAML to PNG")
    draw.add_argument("file", help="holarchy YAML")
    draw.add_argument("--out", help="PNG path (default: beside the YAML)")
    draw.set_defaults(func=_draw)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mnist-dir", help="IDX folder (its t10k files become the test set)")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="run directory (default: runs/holonic/<name>)")
    p.add_argument("--json", action="store_true", help="print summary.json as the last line")
    p.add_argument("--threads", type=int, help="CPU threads per process (default 0: the idle cores)")
    p.add_argument("--engine", choices=["inprocess", "ray"], help="where terminals train "
                   "(default inprocess)")
    p.add_argument("--actors", type=int, help="Ray actors (default: one per CPU)")
    p.add_argument("--ray-address", help="Ray cluster to join ('auto' or HOST:PORT)")
    p.add_argument("--restart-failed", action="store_true", default=None,
                   help="recreate lost Ray actors from the last checkpoint and go on")
    p.add_argument("--checkpoint-every", type=int, help="rounds between checkpoints "
                   "(default: the budget K)")
    p.add_argument("--log", nargs="+", choices=LOGGERS, help="live loggers besides "
                   "metrics.jsonl (tensorboard: event files in RUN_DIR/tensorboard)")


def _engine(args: argparse.Namespace) -> dict[str, Any]:
    """The engine, thread and checkpoint options given on the command line (unset: None)."""
    return {k: getattr(args, k) for k in ENGINE_FIELDS}


def _reproduce(args: argparse.Namespace) -> int:
    overrides = {"rounds": args.rounds, "mnist_dir": args.mnist_dir, "seed": args.seed,
                 "eval_every": args.eval_every, **_engine(args)}
    if args.grid:
        if args.structure or args.distribution:
            raise ValueError("--grid runs every structure and distribution; drop --structure "
                             "and --distribution")
        from osmotic.holonic.grid import run_grid

        out = Path(args.out or "runs/holonic/grid")
        summaries = run_grid(HolonicConfig(structure="2L").with_overrides(**overrides), out)
        _report({"grid": str(out), "runs": summaries}, args.json,
                 f"grid written to {out} (comparison.md, grid-*.png)")
        return 0
    if not (args.structure and args.distribution):
        raise ValueError("reproduce needs --structure and --distribution (or --grid)")
    config = HolonicConfig(structure=args.structure, distribution=args.distribution)
    return _train(config.with_overrides(**overrides),
                  args.out or f"runs/holonic/{args.structure}-{args.distribution}", args.json)


def _run(args: argparse.Namespace) -> int:
    config = HolonicConfig.from_yaml(args.config)
    config = config.with_overrides(mnist_dir=args.mnist_dir, seed=args.seed, **_engine(args))
    return _train(config, args.out or f"runs/holonic/{config.name}-{config.distribution}",
                  args.json)


def _train(config: HolonicConfig, out: str, as_json: bool) -> int:
    from osmotic.holonic.runner import run

    summary = run(config, out)
    _report(summary, as_json, f"{summary['structure']}/{summary['distribution']}: mean test "
            f"accuracy {summary['mean_test_accuracy']:.4f} after {summary['rounds']} rounds; "
            f"results in {summary['run_dir']}")
    return 0


def _report(obj: dict[str, Any], as_json: bool, line: str) -> None:
    print(json.dumps(obj) if as_json else line)


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
