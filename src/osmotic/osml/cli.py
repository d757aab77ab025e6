"""`osmotic osml ...` and `osmotic demo`: OSM-L from the command line.

Every OsmlConfig field is also an option of `osml run` (`--batch-size 20`, `--agents 0 1`,
`--sphere/--no-sphere`, `--strategy-params trim=0.25`), generated from the pydantic model, so a
new setting needs no CLI change. Precedence: defaults < preset < `--config FILE.yaml` < options.
"""
from __future__ import annotations

import argparse
import json
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from osmotic.cli import CliError
from osmotic.data.scenarios import generate_scenario
from osmotic.data.synthetic import SIZES, generate_context
from osmotic.data.timeseries import write_csv
from osmotic.osml import experiments as ex
from osmotic.osml.config import OsmlConfig
from osmotic.osml.metrics import against_truth
from osmotic.report.rundir import write_json
from osmotic.settings import one_line, read_mapping

SCENARIO = {"groups": [3, 2], "loners": 1, "noise": 2}
"""`generate scenario` without options: the issue's 7-agent example."""
REPRODUCE_OPTIONS = ("seed", "preserve", "epochs", "engine", "actors", "ray_address",
                     "restart_failed", "checkpoint_every", "eval_every", "threads")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `osml` (reproduce, run, generate) and the top-level `demo`."""
    osml = subparsers.add_parser("osml", help="Osmotic Learning (OSM-L)", description=__doc__)
    sub = osml.add_subparsers(dest="osml_command", required=True)

    rep = sub.add_parser("reproduce", help="run one of the paper's experiments")
    rep.add_argument("experiment", choices=list(ex.EXPERIMENTS), help="; ".join(
        f"{e.name}: agents {', '.join(e.agents)} of the {e.context} context, {e.about}"
        for e in ex.EXPERIMENTS.values()))
    rep.add_argument("--data", type=Path, help="folder with the paper's <context>-context/"
                     "{train,test}_data.csv (default: generate the context from --seed)")
    _add_output_options(rep)
    add_config_options(rep, only=REPRODUCE_OPTIONS, presets=list(ex.EXPERIMENTS.values()))
    rep.set_defaults(func=_reproduce)

    run = sub.add_parser("run", help="run OSM-L on any CSV pair in the paper's layout")
    run.add_argument("--train", type=Path, help="training CSV (Agent<id>[<k>] columns)")
    run.add_argument("--test", type=Path, help="test CSV with the same agents")
    run.add_argument("--config", type=Path, help="YAML file of settings (a run's config.yaml "
                     "works too, its data section included)")
    _add_output_options(run)
    add_config_options(run)
    run.set_defaults(func=_run)

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


def add_config_options(parser: argparse.ArgumentParser, only: Sequence[str] | None = None,
                       presets: Sequence[ex.Experiment] = ()) -> None:
    """One option per OsmlConfig field (or the fields in `only`); unset options stay None.
    With `presets`, the help shows each preset's own default where they differ."""
    group = parser.add_argument_group("settings (OsmlConfig fields)")
    configs = {e.name: e.config() for e in presets}
    for name, info in OsmlConfig.model_fields.items():
        if only is None or name in only:
            defaults = {k: getattr(c, name) for k, c in configs.items()}
            group.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None,
                               help=_help(info, defaults), **_argparse_type(name, info.annotation))


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as options, as OsmlConfig field values."""
    out = {}
    for name, info in OsmlConfig.model_fields.items():
        value = getattr(args, name, None)
        if value is not None:
            out[name] = dict(value) if get_origin(_required(info.annotation)) is dict else value
    return out


def load_config_file(path: Path) -> tuple[OsmlConfig, dict[str, Any] | None]:
    """The settings of a YAML file and its optional `data:` section; every error is one line
    naming the file (and the setting at fault)."""
    raw = read_mapping(path, CliError)
    data = raw.pop("data", None)
    raw.pop("mode", None)  # a run's config.yaml says which mode wrote it
    return resolve(raw, str(path)), data


def resolve(settings: dict[str, Any], origin: str, base: OsmlConfig | None = None) -> OsmlConfig:
    """`base` with `settings` applied; a pydantic error becomes one line naming `origin`."""
    try:
        return (base or OsmlConfig()).with_overrides(**settings)
    except ValidationError as e:
        raise CliError(one_line(e, origin)) from None



def _reproduce(args: argparse.Namespace) -> int:
    settings = config_overrides(args)
    seed = settings.pop("seed", 0)
    resolve(settings, "options", ex.EXPERIMENTS[args.experiment].config())  # fail before loading
    done = ex.reproduce(args.experiment, data_dir=args.data, seed=seed, out=args.out, **settings)
    return _report(done, args.json)


def _run(args: argparse.Namespace) -> int:
    base, data = load_config_file(args.config) if args.config else (OsmlConfig(), None)
    config = resolve(config_overrides(args), "options", base)
    source = _run_source(args, data)
    out = args.out or ex.default_out("run", config.seed)
    return _report(ex.run_source(config, source, out), args.json)


def _run_source(args: argparse.Namespace, data: dict[str, Any] | None) -> ex.Source:
    """--train/--test, else the data section of --config, else an error saying what to give."""
    if args.train or args.test:
        if not (args.train and args.test):
            raise CliError("give both --train and --test")
        return ex.CsvSource(args.train, args.test)
    if data is None:
        raise CliError("give --train and --test (or a --config with a data section)")
    try:
        return ex.source_from_record(data, relative_to=args.config.parent)
    except ValueError as e:
        raise CliError(f"{args.config}: {e}") from None


def _generate(args: argparse.Namespace) -> int:
    truth = None
    layout = {"groups": args.groups, "loners": args.loners, "noise": args.noise}
    if args.context == "scenario":
        given = {k: v for k, v in layout.items() if v is not None}
        try:
            train, test, truth = generate_scenario(**{**SCENARIO, **given}, seed=args.seed)
        except ValueError as e:
            raise CliError(str(e)) from None
    else:
        named = [f"--{k}" for k, v in layout.items() if v is not None]
        if named:
            raise CliError(f"{named[0]} is for `generate scenario`, not {args.context}")
        train, test = generate_context(args.context, args.seed)
    paths = {name: args.out / name for name in ("train_data.csv", "test_data.csv", "truth.json")}
    for path in paths.values():
        if path.exists():
            raise CliError(f"{path} already exists; choose another --out")
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
    """ARI, exact match, intruders and training time of one run against a scenario's truth."""
    summary, truth = (_read_json(path) for path in (args.run_dir / "summary.json", args.truth))
    found = [g["agents"] for g in summary["subcontexts"]]
    try:
        scores = against_truth(found, summary["agents"], truth)
    except ValueError as e:
        raise CliError(f"{args.truth}: {e}") from None
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
        raise CliError(f"{path}: cannot read ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise CliError(f"{path}: not valid JSON (line {e.lineno})") from None


def _demo(args: argparse.Namespace) -> int:
    """The three presets on generated data, and on the paper's files when they are here."""
    sources: dict[str, Path | None] = {"generated": None}
    if ex.PAPER_DATA.is_dir():
        sources["paper"] = ex.PAPER_DATA
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


def results_table(rows: Sequence[tuple[str, str, ex.Run]]) -> str:
    """Plain-text table: experiment, data, sub-contexts found with their accuracy and rank
    score, the overall figures, unclustered agents, training seconds."""
    header = ("experiment", "data", "sub-contexts (accuracy/rank)", "accuracy", "rank",
              "unclustered", "train s")
    lines = [header]
    for name, label, done in rows:
        s = done.summary
        found = "  ".join(f"{{{','.join(sc['agents'])}}} {_fmt(sc['context_accuracy'], 3)}/"
                          f"{_fmt(sc['rank_score'], 2)}" for sc in s["subcontexts"])
        lines.append((name, label, found or "none", _fmt(s["context_accuracy"]),
                      _fmt(s["rank_score"]), ",".join(s["unclustered"]) or "-",
                      f"{s['train_seconds']:.1f}"))
    widths = [max(len(r[c]) for r in lines) for c in range(len(header))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in lines)


def _report(done: ex.Run, as_json: bool) -> int:
    """A short human summary, or with --json the summary as the last line of stdout."""
    s = done.summary
    if as_json:
        print(json.dumps(s, separators=(",", ":")))
        return 0
    print(f"run directory: {done.dir.path}  (plots in {done.dir.plots})")
    for sc in s["subcontexts"]:
        print(f"  sub-context {{{', '.join(sc['agents'])}}}: "
              f"accuracy {_fmt(sc['context_accuracy'])}, rank {_fmt(sc['rank_score'])}")
    print(f"  unclustered: {', '.join(s['unclustered']) or 'none'}")
    print(f"  context accuracy {_fmt(s['context_accuracy'])}, rank score {_fmt(s['rank_score'])}, "
          f"{s['epochs']} epochs in {s['train_seconds']:.1f} s of training")
    return 0


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="run directory (default: runs/osml/<experiment>"
                        "-seed<N>; a finished run is never overwritten, a new one goes beside it)")
    parser.add_argument("--json", action="store_true", help="print summary.json as the last line")


def _help(info: FieldInfo, per_preset: dict[str, Any]) -> str:
    default = info.default_factory() if info.default_factory else info.default
    if len({repr(v) for v in per_preset.values()}) > 1:
        default = ", ".join(f"{v} for {k}" for k, v in per_preset.items())
    text = f"{info.description or ''} (default: {default})".strip()
    return text.replace("%", "%%")  # argparse formats help strings with %


def _required(annotation: Any) -> Any:
    """`X | None` -> X."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _argparse_type(name: str, annotation: Any) -> dict[str, Any]:
    """argparse keywords for a field's type; an unsupported type fails loudly at start-up."""
    t = _required(annotation)
    origin = get_origin(t)
    if t is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is Literal:
        choices = get_args(t)
        return {"choices": choices, "type": type(choices[0])}
    if origin is list:
        item = get_args(t)[0]
        if get_origin(item) is Literal:
            return {"nargs": "+", "choices": get_args(item)}
        return {"nargs": "+", "type": item, "metavar": name.upper().rstrip("S")}
    if origin is dict:
        return {"nargs": "+", "type": _key_value(get_args(t)[1]), "metavar": "KEY=VALUE"}
    if t in (int, float, str):
        return {"type": t}
    raise TypeError(f"OsmlConfig.{name}: no command-line form for {annotation}")


def _key_value(value_type: type) -> Any:
    def parse(text: str) -> tuple[str, Any]:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
        if value_type is Any:  # a number, a list [8, 8], a word: as YAML would read it
            return key, yaml.safe_load(value)
        try:
            return key, value_type(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{key}: {value!r} is not a {value_type.__name__}") from None

    return parse
