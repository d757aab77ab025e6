"""`osmotic osml ...` and `osmotic demo`: OSM-L from the command line.

`osml run` takes one option per OsmlConfig field, generated from the settings model
(`runtime.options`); `reproduce`, `generate` and `score` are the mode's own commands.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from osmotic.data.scenarios import generate_scenario
from osmotic.data.synthetic import SIZES, generate_context
from osmotic.data.timeseries import write_csv
from osmotic.osml.config import OsmlConfig
from osmotic.osml.presets import EXPERIMENTS
from osmotic.osml.summary import HELP, describe, fmt
from osmotic.report.result import RunResult
from osmotic.report.rundir import write_json
from osmotic.runtime.options import (
    add_config_options,
    add_output_options,
    add_run_command,
    config_overrides,
    report,
)
from osmotic.runtime.session import add_mode_parser
from osmotic.settings import InputError

if TYPE_CHECKING:
    from osmotic.osml.experiments import Run

SCENARIO = {"groups": [3, 2], "loners": 1, "noise": 2}
"""`generate scenario` without options: a 7-agent scenario (two groups, a loner, two noise
agents)."""
REPRODUCE_OPTIONS = ("seed", "preserve", "epochs", "engine", "actors", "ray_address",
                     "restart_failed", "checkpoint_every", "eval_every", "threads")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `osml` (run, reproduce, generate, score) and the top-level `demo`."""
    sub = add_mode_parser(subparsers, "osml", HELP)
    run = add_run_command(sub, OsmlConfig, help="run OSM-L on any CSV pair in the paper's "
                          "layout", run=_run, describe=describe, exclude=("data",))
    run.add_argument("--train", type=Path, help="training CSV (Agent<id>[<k>] columns)")
    run.add_argument("--test", type=Path, help="test CSV with the same agents")

    rep = sub.add_parser("reproduce", help="run one of the paper's experiments")
    rep.add_argument("experiment", choices=list(EXPERIMENTS), help="; ".join(
        f"{e.name}: agents {', '.join(e.agents)} of the {e.context} context, {e.about}"
        for e in EXPERIMENTS.values()))
    rep.add_argument("--data", type=Path, help="folder with the paper's <context>-context/"
                     "{train,test}_data.csv (default: generate the context from --seed)")
    add_output_options(rep)
    add_config_options(rep, OsmlConfig, only=REPRODUCE_OPTIONS, defaults={
        e.name: e.config().model_dump() for e in EXPERIMENTS.values()})
    rep.set_defaults(func=_reproduce)

    gen = sub.add_parser("generate", help="write a generated context as train/test CSV files")
    gen.add_argument("context", choices=[*SIZES, "scenario"], help="the paper's simple or "
                     "complex context, or a scenario with a known answer (writes truth.json)")
    gen.add_argument("--out", type=Path, required=True, help="folder for train_data.csv and "
                     "test_data.csv (name it <context>-context to use its parent as --data)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--groups", type=_sizes, help="scenario: sizes of the groups of agents "
                     "that share a latent process, e.g. 3,2 (default: 3,2)")
    gen.add_argument("--loners", type=int, help="scenario: agents with a latent process of "
                     "their own (default: 1)")
    gen.add_argument("--noise", type=int, help="scenario: agents that see only noise "
                     "(default: 2)")
    gen.set_defaults(func=_generate)

    score = sub.add_parser("score", help="compare a finished run's sub-contexts with a "
                           "scenario's truth.json")
    score.add_argument("run_dir", type=Path, help="run directory (holds summary.json)")
    score.add_argument("--truth", type=Path, required=True, help="truth.json of the scenario")
    score.add_argument("--json", action="store_true", help="print the scores as one JSON line")
    score.set_defaults(func=_score)

    demo = subparsers.add_parser("demo", help="reproduce the paper's three OSM-L experiments")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--epochs", type=int, help="override every preset's epochs (a quick look)")
    demo.set_defaults(func=_demo)


def _run(config: OsmlConfig, args: argparse.Namespace) -> RunResult:
    """--train/--test, else the data section of --config, else an error saying what to give."""
    from osmotic.osml.api import run

    if args.train or args.test:
        if not (args.train and args.test):
            raise InputError("give both --train and --test")
        return run(config, train=args.train, test=args.test, out=args.out)
    if config.data is None:
        raise InputError("give --train and --test (or a --config with a data section)")
    return run(config, out=args.out)


def _reproduce(args: argparse.Namespace) -> int:
    from osmotic.osml import experiments as ex

    settings = config_overrides(args, OsmlConfig)
    seed = settings.pop("seed", 0)
    preset = ex.EXPERIMENTS[args.experiment].config()
    OsmlConfig.validated(preset.merged(settings), "options")  # fail before loading data
    done = ex.reproduce(args.experiment, data_dir=args.data, seed=seed, out=args.out, **settings)
    return report(RunResult.from_dir(done.dir.path), args.json, describe)


def _generate(args: argparse.Namespace) -> int:
    truth = None
    layout = {"groups": args.groups, "loners": args.loners, "noise": args.noise}
    if args.context == "scenario":
        given = {k: v for k, v in layout.items() if v is not None}
        try:
            train, test, truth = generate_scenario(**{**SCENARIO, **given}, seed=args.seed)
        except ValueError as e:
            raise InputError(str(e)) from None
    else:
        named = [f"--{k}" for k, v in layout.items() if v is not None]
        if named:
            raise InputError(f"{named[0]} is for `generate scenario`, not {args.context}")
        train, test = generate_context(args.context, args.seed)
    paths = {name: args.out / name for name in ("train_data.csv", "test_data.csv", "truth.json")}
    for path in paths.values():
        if path.exists():
            raise InputError(f"{path} already exists; choose another --out")
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(paths["train_data.csv"], train)
    write_csv(paths["test_data.csv"], test)
    steps = [len(next(iter(split.values()))) for split in (train, test)]
    print(f"wrote {paths['train_data.csv']} ({steps[0]} steps) and {paths['test_data.csv']} "
          f"({steps[1]} steps), agents {', '.join(train)}")
    if truth is not None:
        write_json(paths["truth.json"], truth)
        print(f"wrote {paths['truth.json']}: groups "
              + (", ".join("{" + ", ".join(g) + "}" for g in truth["groups"]) or "none")
              + f"; loners {', '.join(truth['loners']) or 'none'}"
              + f"; noise {', '.join(truth['noise']) or 'none'}")
    return 0


def _sizes(text: str) -> list[int]:
    """`3,2` -> [3, 2]: the --groups option."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 3,2, got {text!r}") from None


def _score(args: argparse.Namespace) -> int:
    """ARI, exact match, intruders and training time of one run against a scenario's truth.
    Both files may be hand-made or from another mode: a missing key is one line naming the
    file and the key, not a KeyError."""
    def require(path: Path, data: Any, keys: dict[str, tuple[type, ...]],
                prefix: str = "") -> None:
        if not isinstance(data, dict):
            raise InputError(f"{path}: {prefix.rstrip('.') or 'the file'}: expected a mapping "
                             f"with keys {', '.join(keys)}")
        for key, kinds in keys.items():
            if key not in data:
                raise InputError(f"{path}: {prefix}{key}: missing")
            if not isinstance(data[key], kinds) or isinstance(data[key], bool):
                raise InputError(f"{path}: {prefix}{key}: expected "
                                 f"{' or '.join(k.__name__ for k in kinds)}, got "
                                 f"{data[key]!r:.60}")

    from osmotic.osml.metrics import against_truth

    summary_file = args.run_dir / "summary.json"
    summary, truth = _read_json(summary_file), _read_json(args.truth)
    require(summary_file, summary, {"subcontexts": (list,), "agents": (list,),
                                    "train_seconds": (int, float)})
    require(args.truth, truth, {"agents": (dict, list), "groups": (list,), "loners": (list,),
                                "noise": (list,)})
    for i, group in enumerate(summary["subcontexts"]):
        require(summary_file, group, {"agents": (list,)}, f"subcontexts[{i}].")
    found = [g["agents"] for g in summary["subcontexts"]]
    try:
        scores = against_truth(found, summary["agents"], truth)
    except (ValueError, TypeError) as e:  # an agent outside the truth, a group not of ids
        raise InputError(f"{args.truth}: {e}") from None
    scores["train_seconds"] = summary["train_seconds"]
    if args.json:
        print(json.dumps(scores, separators=(",", ":")))
        return 0
    print(format_scores(scores))
    return 0


def format_scores(scores: dict[str, Any]) -> str:
    """One run's `against_truth` scores as a few readable lines."""
    def groups(gs: list[list[str]]) -> str:
        return ", ".join("{" + ", ".join(g) + "}" for g in gs) or "none"

    return (f"ARI {scores['ari']:.3f}  exact {'yes' if scores['exact'] else 'no'}  "
            f"loners/noise in a sub-context: {', '.join(scores['intruders']) or 'none'}  "
            f"training {scores['train_seconds']:.1f} s\n"
            f"  expected: {groups(scores['expected'])}\n  found:    {groups(scores['found'])}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON (line {e.lineno})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not valid JSON (not UTF-8)") from None


def _demo(args: argparse.Namespace) -> int:
    """The three presets on generated data, and on the paper's files when they are here."""
    from osmotic.osml import experiments as ex

    sources: dict[str, Path | None] = {"generated": None}
    paper, looked = ex.paper_data()
    if paper is not None:
        sources["paper"] = paper
        print(f"paper data: {paper}")
    else:
        print(f"paper data not found (looked in {', '.join(map(str, looked))}); generated "
              "data only")
    rows = []
    for label, data_dir in sources.items():
        for name in ex.EXPERIMENTS:
            print(f"{name} on {label} data ...", flush=True)
            out = args.out / label / f"{name}-seed{args.seed}"
            done = ex.reproduce(name, data_dir=data_dir, seed=args.seed, out=out,
                                epochs=args.epochs)
            rows.append((name, label, done))
    print()
    print(results_table(rows))
    print("\nEach run directory holds summary.json, metrics.jsonl, clusterings.json, "
          "embeddings.safetensors and plots/: similarity.png (paper Figs. 4-6), "
          "subcontexts.png (Fig. 7), training.png (Fig. 8).")
    for name, label, done in rows:
        print(f"  {name} on {label} data: {done.dir.path}")
    return 0


def results_table(rows: Sequence[tuple[str, str, Run]]) -> str:
    """Plain-text table: experiment, data, sub-contexts found with their accuracy and rank
    score, the overall figures, unclustered agents, training seconds."""
    header = ("experiment", "data", "sub-contexts (accuracy/rank)", "accuracy", "rank",
              "unclustered", "train s")
    lines = [header]
    for name, label, done in rows:
        s = done.summary
        found = "  ".join(f"{{{','.join(sc['agents'])}}} {fmt(sc['context_accuracy'], 3)}/"
                          f"{fmt(sc['rank_score'], 2)}" for sc in s["subcontexts"])
        lines.append((name, label, found or "none", fmt(s["context_accuracy"]),
                      fmt(s["rank_score"]), ",".join(s["unclustered"]) or "-",
                      f"{s['train_seconds']:.1f}"))
    widths = [max(len(r[c]) for r in lines) for c in range(len(header))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in lines)
