"""Inputs are checked, never guessed, from the command line: a config names code only where a
model is meant, and finds a model module beside it; bad data, holarchies and score files are one
line (exit 2); the demo says which data it used."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from osmotic.cli import main
from osmotic.data.timeseries import write_csv
from osmotic.osml import experiments

Capsys = pytest.CaptureFixture[str]
NETS = '''from torch import nn


class Net(nn.Module):
    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.body = nn.Linear(in_features, num_classes)

    def forward(self, x):
        return self.body(x)
'''
HOLONIC = {"mode": "holonic", "holarchy": {"holarchy": {"id": "R", "members": ["a", "b"]}},
           "rounds": 2, "local_epochs": 1, "checkpoint_every": 1, "threads": 1}


def error_line(code: int, capsys: Capsys) -> str:
    """The one line a failed command printed (exit 2: bad input)."""
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err, err
    assert err.startswith("osmotic: error: ") and len(err) <= 300
    return err


def table(folder: Path, classes: int = 3) -> Path:
    rng = np.random.default_rng(0)
    y = np.arange(90) % classes
    np.savez(folder / "table.npz", x=rng.normal(size=(90, 4)) + y[:, None], y=y)
    return folder / "table.npz"


@pytest.fixture
def beside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder holding run.yaml, its data and the model module it names (`beside_nets`, on
    no Python path); the command runs from another folder."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "beside_nets.py").write_text(NETS)
    table(folder)
    (folder / "run.yaml").write_text(yaml.safe_dump({
        **HOLONIC, "data": {"format": "npz", "path": "table.npz"}, "model": "beside_nets:Net"}))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    yield folder
    sys.modules.pop("beside_nets", None)


# -- code from configs only where it is meant -------------------------------------------------


def test_a_model_beside_the_config_file_runs_and_resumes_from_anywhere(beside: Path) -> None:
    config = beside / "run.yaml"
    assert main(["holonic", "run", "--config", str(config), "--out", "a"]) == 0
    assert main(["run", str(config), "--out", "b"]) == 0
    recorded = yaml.safe_load(Path("b/config.yaml").read_text())["model"]
    assert recorded == f"{(beside / 'beside_nets.py').resolve()}:Net"
    Path("b/summary.json").unlink()  # unfinished; resumed from another folder, module unloaded
    sys.modules.pop("beside_nets")
    run_dir = Path("b").resolve()
    with pytest.MonkeyPatch.context() as m:
        m.chdir(beside.parent)
        assert main(["resume", str(run_dir)]) == 0
    assert json.loads((run_dir / "summary.json").read_text())["model"] == recorded


def test_a_model_option_finds_its_module_in_the_working_directory(
        beside: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = beside.parent / "configs"
    other.mkdir()
    (other / "run.yaml").write_text(yaml.safe_dump(
        {**HOLONIC, "data": {"format": "npz", "path": str(beside / "table.npz")}}))
    monkeypatch.chdir(beside)
    assert main(["holonic", "run", "--config", str(other / "run.yaml"), "--model",
                 "beside_nets:Net", "--out", str(other / "r")]) == 0
    recorded = yaml.safe_load((other / "r" / "config.yaml").read_text())["model"]
    assert recorded == f"{(beside / 'beside_nets.py').resolve()}:Net"


def test_a_missing_model_module_says_where_it_was_looked_for(beside: Path,
                                                             capsys: Capsys) -> None:
    config = beside / "run.yaml"
    config.write_text(config.read_text().replace("beside_nets:Net", "nowhere_nets:Net"))
    err = error_line(main(["run", str(config), "--out", "r"]), capsys)
    assert f"{config}: model nowhere_nets:Net: cannot import 'nowhere_nets'" in err
    assert f"not on the Python path, beside the settings file or in {Path.cwd()}" in err
    assert not Path("r").exists()


@pytest.mark.parametrize("name", ["subprocess:getoutput", "os:system", "builtins:print"])
def test_code_that_is_no_model_is_refused_before_anything_runs(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capsys) -> None:
    monkeypatch.chdir(tmp_path)
    for argv in (["holonic", "run", "--structure", "2L", "--model", name],
                 ["osml", "run", "--encoder", name],
                 ["dssl", "run", "--backbone", name]):
        err = error_line(main([*argv, "--out", "r"]), capsys)
        assert f"{name}: refused, " in err and "model factory" in err
        assert not Path("r").exists()


# -- inputs checked, never guessed ------------------------------------------------------------


def test_bad_holonic_inputs_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: Capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "no-idx").mkdir()
    err = error_line(main(["holonic", "run", "--structure", "2L", "--mnist-dir", "no-idx",
                           "--rounds", "1", "--out", "r1"]), capsys)
    assert "mnist_dir: no-idx holds no MNIST IDX files" in err
    np.savez(tmp_path / "one.npz", x=np.ones((40, 3)), y=np.zeros(40, dtype=int))
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(
        {**HOLONIC, "data": {"format": "npz", "path": "one.npz"}}))
    err = error_line(main(["run", "one.yaml", "--out", "r2"]), capsys)
    assert f"{tmp_path / 'one.npz'}: field y: every label is 0" in err
    (tmp_path / "empty.yaml").write_text("holarchy: {id: R, members: []}\n")
    table(tmp_path)
    err = error_line(main(["holonic", "run", "--holarchy", "empty.yaml", "--data",
                           "digits", "--out", "r3"]), capsys)
    assert "empty.yaml: holon R: `members: []` lists no member" in err


def test_one_osml_agent_is_one_line_not_a_numpy_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capsys,
        tiny_context: Callable, recwarn: pytest.WarningsRecorder) -> None:
    monkeypatch.chdir(tmp_path)
    train, test = tiny_context()
    for name, series in (("train", train), ("test", test)):
        write_csv(tmp_path / f"{name}.csv", series)
        write_csv(tmp_path / f"one-{name}.csv", {"0": series["0"]})
    err = error_line(main(["osml", "run", "--train", "one-train.csv", "--test", "one-test.csv",
                           "--out", "r"]), capsys)
    assert "one-train.csv: 1 agent (0); OSM-L needs at least two agents" in err
    err = error_line(main(["osml", "run", "--train", "train.csv", "--test", "test.csv",
                           "--agents", "0", "--out", "r"]), capsys)
    assert "agents: 1 agent (0)" in err
    assert not [w for w in recwarn if "empty slice" in str(w.message)]


# -- osmotic osml score -----------------------------------------------------------------------

SUMMARY = {"subcontexts": [{"agents": ["0", "1"]}], "agents": ["0", "1", "2"],
           "train_seconds": 1.5}
TRUTH = {"agents": ["0", "1", "2"], "groups": [["0", "1"]], "loners": ["2"], "noise": []}


def score(tmp_path: Path, summary: object, truth: object) -> list[str]:
    (tmp_path / "run").mkdir(exist_ok=True)
    (tmp_path / "run" / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    return ["osml", "score", str(tmp_path / "run"), "--truth", str(tmp_path / "truth.json")]


@pytest.mark.parametrize(("summary", "truth", "message"), [
    (SUMMARY, {k: v for k, v in TRUTH.items() if k != "noise"}, "truth.json: noise: missing"),
    (SUMMARY, [["0", "1"]], "truth.json: the file: expected a mapping with keys agents"),
    (SUMMARY, {**TRUTH, "groups": "0,1"}, "truth.json: groups: expected list, got '0,1'"),
    ({"agents": ["0"]}, TRUTH, "summary.json: subcontexts: missing"),
    ({**SUMMARY, "subcontexts": [{"found": ["0"]}]}, TRUTH,
     "summary.json: subcontexts[0].agents: missing"),
    ({**SUMMARY, "train_seconds": None}, TRUTH,
     "summary.json: train_seconds: expected int or float"),
], ids=["truth-key", "truth-not-mapping", "truth-type", "summary-key", "subcontext-key",
        "summary-type"])
def test_score_files_missing_keys_are_one_line(summary: object, truth: object, message: str,
                                               tmp_path: Path, capsys: Capsys) -> None:
    err = error_line(main(score(tmp_path, summary, truth)), capsys)
    assert f"{tmp_path}" in err and message in err


def test_score_of_good_files(tmp_path: Path, capsys: Capsys) -> None:
    assert main(score(tmp_path, SUMMARY, TRUTH)) == 0
    assert "ARI 1.000  exact yes" in capsys.readouterr().out


# -- the demo says which data it used ---------------------------------------------------------


def test_demo_says_which_data_it_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: Capsys, tiny_context: Callable) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(experiments, "generate_context", tiny_context)
    monkeypatch.setattr(experiments, "EXPERIMENTS", {"simple": experiments.EXPERIMENTS["simple"]})
    monkeypatch.setattr(experiments, "PAPER_DATA", tmp_path / "paper")
    assert main(["demo", "--out", "d1", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    looked = f"{tmp_path / 'paper'}, {tmp_path.parent / 'shared' / 'data' / 'osml-paper'}"
    assert f"paper data not found (looked in {looked}); generated data only" in out
    assert "simple on generated data" in out and "on paper data" not in out
    for context in ("simple", "complex"):
        folder = tmp_path / "paper" / f"{context}-context"
        folder.mkdir(parents=True)
        for name, series in zip(("train", "test"), tiny_context(context), strict=True):
            write_csv(folder / f"{name}_data.csv", series)
    assert main(["demo", "--out", "d2", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert f"paper data: {tmp_path / 'paper'}\n" in out and "simple on paper data" in out


def test_paper_data_are_found_from_the_project_wherever_the_command_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Path(experiments.__file__).resolve().parents[3]
    assert experiments.PAPER_DATA == repo.parent / "shared" / "data" / "osml-paper"
    monkeypatch.chdir(tmp_path)
    found, looked = experiments.paper_data()
    assert looked[0] == experiments.PAPER_DATA.resolve()
    assert found == (looked[0] if (looked[0] / "simple-context" / "train_data.csv").is_file()
                     else None)
