"""Command-line options generated from a mode's settings, so every mode's `run` takes one
option per `Config` field (`--batch-size 20`, `--sphere/--no-sphere`, `--model-params
hidden=32`, `--data digits`) and a new setting needs no CLI change. Precedence: defaults <
`--config FILE.yaml` < options.
"""
from __future__ import annotations

import argparse
import json
import types
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic.fields import FieldInfo

from osmotic.report.result import RunResult
from osmotic.settings import InputError, Settings


def add_config_options(parser: argparse.ArgumentParser, kind: type[Settings], *,
                       only: Collection[str] | None = None, exclude: Collection[str] = (),
                       defaults: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """One option per field of `kind` (or the fields in `only`, less `exclude`); unset options
    stay None. `defaults` maps preset names to their configs' values, for help texts that
    show each preset's own default where they differ."""
    names = [n for n in kind.model_fields if (only is None or n in only) and n not in exclude]
    parser.set_defaults(_settings_options=names)
    own = parser.add_argument_group(f"settings ({kind.__name__} fields)")
    engine = parser.add_argument_group("engine settings (the same in every mode; they change "
                                       "no number)")
    for name in sorted(names, key=lambda n: n in kind.engine_fields):  # the mode's own first
        info = kind.model_fields[name]
        per_preset = {k: v[name] for k, v in (defaults or {}).items()}
        group = engine if name in kind.engine_fields else own
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None,
                           help=_help(info, per_preset),
                           **_argparse_type(kind, name, info.annotation))


def config_overrides(args: argparse.Namespace, kind: type[Settings]) -> dict[str, Any]:
    """The settings given as options (those `add_config_options` added), as field values of
    `kind`."""
    out = {}
    for name in getattr(args, "_settings_options", ()):
        info = kind.model_fields[name]
        value = getattr(args, name, None)
        if value is not None:
            out[name] = dict(value) if get_origin(_required(info.annotation)) is dict else value
    return out


def settings_from_args(kind: type[Settings], args: argparse.Namespace) -> Settings:
    """`--config FILE` (if given) with the options on top, validated; one line naming the
    file or the options for anything wrong."""
    changes = config_overrides(args, kind)
    positional = getattr(args, "config_file", None)
    if positional is not None and getattr(args, "config", None) is not None:
        raise InputError(f"give the settings file once: {positional} or --config "
                         f"{args.config}, not both")
    if positional is not None:
        args.config = positional
    if getattr(args, "config", None) is None:
        return kind.validated(changes, "options")
    base = kind.from_yaml(args.config)
    return kind.validated(base.merged(changes), f"{args.config} with options")


def add_run_command(sub: Any, kind: type[Settings], *, help: str,
                    run: Callable[[Any, argparse.Namespace], RunResult],
                    describe: Callable[[RunResult], str], exclude: Collection[str] = ()
                    ) -> argparse.ArgumentParser:
    """`<mode> run`: `CONFIG.yaml` or `--config`, `--out`, `--json` and one option per setting; `run(config,
    args)` runs it (args for a mode's own options) and `describe` says what came out."""
    parser = sub.add_parser("run", help=help, description=help)
    parser.add_argument("config_file", nargs="?", type=Path, metavar="CONFIG.yaml",
                        help="YAML file of settings, as --config")
    parser.add_argument("--config", type=Path, help="YAML file of settings (a run's "
                        "config.yaml works too); options given here override it")
    add_output_options(parser)
    add_config_options(parser, kind, exclude=exclude)
    parser.set_defaults(func=lambda args: report(
        run(settings_from_args(kind, args), args), args.json, describe))
    return parser


def add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="run directory, absent or empty (one that "
                        "holds this run, finished, is read back; any other is refused)")
    parser.add_argument("--json", action="store_true", help="print summary.json as the last "
                        "line")


def report(result: RunResult, as_json: bool, describe: Callable[[RunResult], str]) -> int:
    """A short human summary of a finished run, or with --json its summary as one line."""
    print(json.dumps(result.summary, separators=(",", ":")) if as_json else describe(result))
    return 0


def _help(info: FieldInfo, per_preset: dict[str, Any]) -> str:
    default = info.default_factory() if info.default_factory else info.default
    if len({repr(v) for v in per_preset.values()}) > 1:
        default = ", ".join(f"{v} for {k}" for k, v in per_preset.items())
    text = info.description or ""
    if default not in (None, [], {}) and "default" not in text:
        text = f"{text} (default: {default})".strip()
    return text.replace("%", "%%")  # argparse formats help strings with %


def _required(annotation: Any) -> Any:
    """`X | None` -> X."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _argparse_type(kind: type[Settings], name: str, annotation: Any) -> dict[str, Any]:
    """argparse keywords for a field's type: a flag pair for bool, choices for a Literal, lists
    and KEY=VALUE pairs; anything richer (a data entry, a holarchy) is read as YAML."""
    t = _required(annotation)
    origin = get_origin(t)
    if t is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is Literal:  # checked by the settings model: a wrong word is one line, not usage
        choices = get_args(t)
        return {"type": type(choices[0]), "metavar": "{" + ",".join(map(str, choices)) + "}"}
    if origin is list:
        item = get_args(t)[0]
        if get_origin(item) is Literal:
            return {"nargs": "+", "metavar": "{" + ",".join(map(str, get_args(item))) + "}"}
        return {"nargs": "+", "type": item, "metavar": name.upper().rstrip("S")}
    if origin is dict:
        return {"nargs": "+", "type": _key_value(get_args(t)[1]), "metavar": "KEY=VALUE"}
    if t in (int, float, str):
        return {"type": t}
    return {"type": _yaml_value, "metavar": "YAML"}


def _yaml_value(text: str) -> Any:
    """A value as YAML reads it: a word, a number, or a mapping such as `{format: npz, path:
    x.npz}`."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"not valid YAML: {text!r}") from None


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
