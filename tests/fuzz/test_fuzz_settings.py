"""Fuzzed settings: each mode's YAML (`osmotic run`, `osmotic <mode> run --config`) and
`osmotic holonic run`'s generated options."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st

from osmotic import modes
from tests.fuzz.harness import collecting, fuzz_settings, new_case, run_cli
from tests.fuzz.strategies import (
    BASE,
    COST,
    SCALARS,
    VALUES,
    affordable,
    config_mapping,
    field_names,
    field_value,
    yaml_text,
)


@pytest.mark.parametrize("mode", modes.NAMES)
@collecting
@fuzz_settings(quick=12, deep=300)
@given(data=st.data())
def test_settings_file(mode: str, data: st.DataObject, fuzz_root: Path) -> None:
    raw = data.draw(yaml_text(data.draw(config_mapping(mode))), label="config.yaml")
    assume(affordable(mode, raw))
    how = data.draw(st.sampled_from(["run", "mode-run"]), label="command")
    with new_case(fuzz_root) as case:
        case.write("config.yaml", raw)
        argv = ["run", "config.yaml"] if how == "run" else [mode, "run", "--config",
                                                             "config.yaml"]
        run_cli(case, [*argv, "--out", "out", *data.draw(st.sampled_from([[], ["--json"]]))])


def _option_tokens(mode: str, name: str, value: Any) -> list[str]:
    """`--name value` as a user would type it (flags for booleans, several words for lists)."""
    flag = f"--{name.replace('_', '-')}"
    if isinstance(value, bool):
        return [flag if value else f"--no-{name.replace('_', '-')}"]
    if isinstance(value, list) and value and all(isinstance(v, str | int) for v in value):
        return [flag, *map(str, value)]
    if isinstance(value, dict):
        return [flag, *(f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}"
                        .removesuffix("\n...") for k, v in value.items())]
    if isinstance(value, str):
        return [flag, value]
    return [flag, yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")]


@pytest.mark.parametrize("mode", ["holonic", "dssl"])
@collecting
@fuzz_settings(quick=8, deep=150)
@given(data=st.data())
def test_run_options(mode: str, data: st.DataObject, fuzz_root: Path) -> None:
    """`osmotic <mode> run --<field> VALUE ...` on top of tiny settings given as options."""
    argv = [mode, "run", "--out", "out"]
    for name, value in BASE[mode].items():
        if name != "mode":
            argv += _option_tokens(mode, name, value)
    names = [n for n in field_names(mode) if n != "mode"]
    for _ in range(data.draw(st.integers(1, 3), label="options")):
        name = data.draw(st.sampled_from([*names, "unknown_option"]), label="field")
        value = data.draw(field_value(mode, name) if name in names else VALUES, label=name)
        if name in COST[mode] or name in ("engine",):
            value = value if not isinstance(value, str) else value.replace("ray", "r")
        argv += _option_tokens(mode, name, value)
    if data.draw(st.booleans(), label="with --config"):
        extra = data.draw(config_mapping(mode), label="config.yaml")
        with new_case(fuzz_root) as case:
            case.write("config.yaml", data.draw(yaml_text(extra)))
            run_cli(case, [*argv, "--config", "config.yaml"])
        return
    with new_case(fuzz_root) as case:
        run_cli(case, argv)


@collecting
@fuzz_settings(quick=6, deep=100)
@given(word=st.sampled_from(["run", "resume", "osml", "holonic", "dssl", "demo", "--version",
                             "score", "draw", "", "-", "--"]) | st.text(max_size=8),
       rest=st.lists(st.sampled_from(["--out", "out", "x.yaml", "--json", "run", "score",
                                      "draw", "--config", "--truth", "-h", "--train"])
                     | SCALARS.map(str), max_size=4))
def test_any_words(word: str, rest: list[str], fuzz_root: Path) -> None:
    """Arbitrary words on the command line (`-h` and `--version` print and exit 0 through
    SystemExit, which is argparse's way; they are left out)."""
    argv = [word, *rest]
    if {"-h", "--help", "--version"} & set(argv) or "demo" in argv:
        argv = [a for a in argv if a not in ("-h", "--help", "--version", "demo")] or ["run"]
    with new_case(fuzz_root) as case:
        run_cli(case, argv)
