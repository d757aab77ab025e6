"""Fuzzed holarchy files: `osmotic holonic draw` and holonic runs on them (a file or inline)."""
from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import collecting, fuzz_settings, new_case, run_cli
from tests.fuzz.strategies import BASE, holarchy_doc, holarchy_text


@collecting
@fuzz_settings(quick=10, deep=300)
@given(raw=holarchy_text(), out_exists=st.booleans())
def test_draw(raw: bytes, out_exists: bool, fuzz_root: Path) -> None:
    with new_case(fuzz_root) as case:
        case.write("holarchy.yaml", raw)
        if out_exists:
            case.out.mkdir()
        run_cli(case, ["holonic", "draw", "holarchy.yaml", "--out", "out/holarchy.png"])


@collecting
@fuzz_settings(quick=8, deep=250)
@given(data=st.data())
def test_run_on_holarchy(data: st.DataObject, fuzz_root: Path) -> None:
    inline = data.draw(st.booleans(), label="inline")
    settings = {k: v for k, v in BASE["holonic"].items() if k != "structure"}
    with new_case(fuzz_root) as case:
        if inline:
            settings["holarchy"] = data.draw(holarchy_doc(), label="holarchy")
        else:
            case.write("holarchy.yaml", data.draw(holarchy_text(), label="holarchy.yaml"))
            settings["holarchy"] = "holarchy.yaml"
        try:
            text = yaml.safe_dump(settings, sort_keys=False)
        except yaml.YAMLError:
            text = repr(settings)
        case.write("config.yaml", text)
        run_cli(case, ["run", "config.yaml", "--out", "out"])
