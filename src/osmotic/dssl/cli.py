"""`osmotic dssl run | reproduce`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from osmotic.dssl.config import DsslConfig

RUN_OPTIONS = ("method", "framework", "degree", "clients", "partition", "alpha", "rounds",
               "local_steps", "local_epochs", "backbone", "mnist_dir", "seed", "threads",
               "engine", "actors", "ray_address", "restart_failed", "checkpoint_every",
               "pool_size")


def add_commands(sub: Any) -> None:
    """Register `dssl` and its sub-commands on the top-level parser's subparsers."""
    p = sub.add_parser("dssl", help="distributed self-supervised pre-training (SimSiam, MAE, "
                       "MAR under FL and DecL)")
    dsub = p.add_subparsers(dest="dssl_command", required=True)

    run = dsub.add_parser("run", help="one pre-training run and its probes")
    run.add_argument("--config", help="settings (YAML, the same keys as the options)")
    run.add_argument("--method", help="simsiam, mae or mar (default mae)")
    run.add_argument("--framework", help="fl or decl (default fl)")
    run.add_argument("--degree", type=int, help="DecL: neighbours per client (default 4)")
    run.add_argument("--clients", type=int, help="number of clients (default 20)")
    run.add_argument("--partition", help="iid or dirichlet (default iid)")
    run.add_argument("--alpha", type=float, help="Dirichlet α (default 1)")
    run.add_argument("--rounds", type=int)
    run.add_argument("--local-steps", type=int, help="local steps per round (the default "
                     "way to count local work)")
    run.add_argument("--local-epochs", type=int, help="local epochs per round instead")
    run.add_argument("--backbone", help="vit or cnn (default vit)")
    run.add_argument("--pool-size", type=int, help="a stratified subset of the pool")
    run.add_argument("--seed", type=int, help="seed of partition, weights and randomness (0)")
    _common(run)
    run.set_defaults(func=_run)

    rep = dsub.add_parser("reproduce", help="the study's grid, table and figures")
    rep.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    rep.add_argument("--rounds", type=int, help="rounds per cell (default: the recipe's)")
    rep.add_argument("--limit", type=int, help="run only the first N cells (priority order)")
    rep.add_argument("--pool-size", type=int, help="a stratified subset of the pool")
    rep.add_argument("--report-only", action="store_true", help="run nothing: table and "
                     "figures from the cells already finished")
    rep.add_argument("--workers", type=int, help="cells run at once, one process each, "
                     "without progress bars (default: one per core this process may use)")
    _common(rep)
    rep.set_defaults(func=_reproduce)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mnist-dir", help="IDX folder (its t10k files become the test set)")
    p.add_argument("--out", help="output directory")
    p.add_argument("--json", action="store_true", help="print summary.json as the last line")
    p.add_argument("--threads", type=int, help="CPU threads per process (default 1)")
    p.add_argument("--engine", choices=["inprocess", "ray"])
    p.add_argument("--actors", type=int, help="Ray actors (default: one per CPU)")
    p.add_argument("--ray-address", help="Ray cluster to join ('auto' or HOST:PORT)")
    p.add_argument("--restart-failed", action="store_true", default=None)
    p.add_argument("--checkpoint-every", type=int, help="rounds between checkpoints")


def _options(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def _config(args: argparse.Namespace) -> DsslConfig:
    base: dict[str, Any] = {}
    where = "options"
    if getattr(args, "config", None):
        base = DsslConfig.from_yaml(args.config).model_dump(exclude_unset=True)
        where = args.config
    changes = _options(args, RUN_OPTIONS)
    if "local_epochs" in changes:  # epochs replace the default step count
        changes.setdefault("local_steps", None)
        base.pop("local_steps", None)
    elif "local_steps" in changes:
        base.pop("local_epochs", None)
    return DsslConfig.validated({**base, **changes}, where)


def _run(args: argparse.Namespace) -> int:
    from osmotic.dssl.runner import run

    config = _config(args)
    summary = run(config, args.out or f"runs/dssl/{config.name}-seed{config.seed}")
    line = (f"{config.name}: linear probe {summary['linear_probe_accuracy']:.4f} (random init "
            f"{summary['random_init_linear_probe_accuracy']:.4f}), kNN "
            f"{summary['knn_accuracy']:.4f}; results in {summary['run_dir']}")
    print(json.dumps(summary) if args.json else line)
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from osmotic.dssl.grid import CellsFailed, run_grid
    from osmotic.engines.inprocess import usable_cores
    from osmotic.settings import InputError

    base = DsslConfig.validated(_options(args, RUN_OPTIONS), "options")
    out = Path(args.out or "runs/dssl/grid")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be at least 1, got {args.limit}")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise InputError(f"--seeds must be distinct and non-negative, got {args.seeds}")
    workers = args.workers or max(1, len(usable_cores()) // base.threads)
    try:
        summaries = run_grid(base, out, args.seeds, limit=args.limit,
                             report_only=args.report_only, workers=workers)
    except CellsFailed as e:
        raise InputError(str(e)) from None
    print(json.dumps({"grid": str(out), "runs": summaries}) if args.json else
          f"{len(summaries)} runs; table and figures in {out} (comparison.md, *.png)")
    return 0
