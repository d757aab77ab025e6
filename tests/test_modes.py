"""One house: every mode answers `osmotic run CONFIG.yaml`, `osmotic.run` (a config object, a
YAML file or keyword settings), `osmotic.resume`, and a `run` command whose options are its
Config's fields; help texts speak of the software only."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import osmotic
from osmotic import modes
from osmotic.cli import main

TINY: dict[str, dict[str, Any]] = {
    "osml": {"epochs": 2, "hidden": 4, "batch_size": 20, "cluster_every": 1,
             "cluster_samples": 20, "threads": 1, "data": {"generated": "simple", "seed": 0}},
    "holonic": {"structure": "1P", "data": "digits", "rounds": 2, "local_epochs": 1,
                "threads": 1},
    "dssl": {"clients": 4, "rounds": 1, "local_steps": 1, "batch_size": 8, "pool_size": 160,
             "holdout": 60, "drift_batch": 16, "threads": 1},
}
JARGON = re.compile(r"this session|this morning|issue [0-9]|commit [0-9a-f]{7}|\(ours\)", re.IGNORECASE)


def config_file(tmp_path: Path, mode: str, **changes: Any) -> Path:
    path = tmp_path / f"{mode}.yaml"
    path.write_text(yaml.safe_dump({"mode": mode, **TINY[mode], **changes}))
    return path


@pytest.mark.parametrize("mode", modes.NAMES)
def test_osmotic_run_config_file(mode: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", str(config_file(tmp_path, mode)), "--out", str(tmp_path / "r"),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == json.loads((tmp_path / "r" / "summary.json").read_text())
    recorded = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert recorded["mode"] == mode
    # a run's own config.yaml runs again, to the same numbers
    assert main(["run", str(tmp_path / "r" / "config.yaml"), "--out", str(tmp_path / "again"),
                 "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    drop = re.compile(r"seconds|run_dir")
    assert {k: v for k, v in again.items() if not drop.search(k)} == \
        {k: v for k, v in summary.items() if not drop.search(k)}


@pytest.mark.parametrize("mode", modes.NAMES)
def test_python_api_on_an_object_a_file_and_keywords(mode: str, tmp_path: Path) -> None:
    kind = modes.get(mode).config
    by_object = osmotic.run(kind(**TINY[mode]), out=tmp_path / "a", progress=False)
    by_file = osmotic.run(config_file(tmp_path, mode), out=tmp_path / "b", progress=False)
    by_keywords = osmotic.run(mode=mode, out=tmp_path / "c", progress=False, **TINY[mode])
    package = getattr(osmotic, mode)
    by_package = package.run(package.Config(**TINY[mode]), out=tmp_path / "d", progress=False)
    key = {"osml": "context_accuracy", "holonic": "mean_test_accuracy",
           "dssl": "linear_probe_accuracy"}[mode]
    values = {r.summary[key] for r in (by_object, by_file, by_keywords, by_package)}
    assert len(values) == 1 and by_object.metrics and by_object.run_dir == tmp_path / "a"
    # resume through the registry: an unfinished run (its summary gone) finishes the same
    (tmp_path / "a" / "summary.json").unlink()
    resumed = osmotic.resume(tmp_path / "a")
    assert resumed.summary[key] == by_object.summary[key]


def test_bad_mode_and_mode_mismatch_are_one_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("mode: fedprox\n")
    assert main(["run", str(path)]) == 2
    assert "mode: unknown 'fedprox'; choose from osml, holonic, dssl" in capsys.readouterr().err
    path.write_text("rounds: 3\n")
    assert main(["run", str(path)]) == 2
    assert "mode: missing" in capsys.readouterr().err
    with pytest.raises(ValueError, match="this file is for 'holonic', not 'osml'"):
        osmotic.osml.Config.from_yaml(config_file(tmp_path, "holonic"))


def _parsers(parser: argparse.ArgumentParser, path: str = "osmotic"
             ) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _parsers(sub, f"{path} {name}")
    return found


def _root_parser() -> argparse.ArgumentParser:
    captured: list[argparse.ArgumentParser] = []
    original = argparse.ArgumentParser.parse_args

    def capture(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        captured.append(self)
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = capture  # type: ignore[method-assign]
    try:
        with pytest.raises(SystemExit):
            main(["--version"])
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
    return captured[0]


def test_every_mode_run_command_is_generated_from_its_config() -> None:
    parsers = dict(_parsers(_root_parser()))
    for mode in modes.NAMES:
        kind = modes.get(mode).config
        options = {a.dest for a in parsers[f"osmotic {mode} run"]._actions}
        missing = set(kind.model_fields) - options - ({"data"} if mode == "osml" else set())
        assert not missing, (mode, missing)


def test_help_texts_speak_of_the_software_only() -> None:
    for path, parser in _parsers(_root_parser()):
        text = parser.format_help()
        assert not JARGON.search(text), (path, JARGON.search(text))
        for action in parser._actions:  # a default is said once
            assert (action.help or "").count("(default") <= 1, (path, action.help)
