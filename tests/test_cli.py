"""The command line end to end on tiny data: files written, stable JSON, one-line errors."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from safetensors.numpy import load_file

from osmotic.cli import main
from osmotic.data.timeseries import read_csv, write_csv
from osmotic.osml import experiments
from osmotic.osml.config import OsmlConfig

Capsys = pytest.CaptureFixture[str]
Csvs = tuple[Path, Path]

TINY_OPTIONS = ["--epochs", "2", "--hidden", "4", "--batch-size", "20", "--cluster-every", "1",
                "--cluster-samples", "20"]
SUMMARY_KEYS = {"subcontexts", "unclustered", "context_accuracy", "rank_score", "spread",
                "context_loss", "epochs", "train_seconds", "seed", "engine"}


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs in its own empty folder (default run directories land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def csvs(cwd: Path, tiny_context: Callable) -> Csvs:
    """A tiny train/test pair in the paper's layout."""
    train, test = tiny_context()
    write_csv(cwd / "train.csv", train)
    write_csv(cwd / "test.csv", test)
    return cwd / "train.csv", cwd / "test.csv"


def _osml(capsys: Capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["osml", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _run(capsys: Capsys, csvs: Csvs, *extra: str) -> tuple[int, str, str]:
    train, test = map(str, csvs)
    return _osml(capsys, "run", "--train", train, "--test", test, *TINY_OPTIONS, *extra)


def _last_json(stdout: str) -> dict[str, Any]:
    return json.loads(stdout.strip().splitlines()[-1])


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err


def test_run_writes_every_file_and_prints_the_summary_last(capsys: Capsys, csvs: Csvs) -> None:
    agents = ["0", "1", "M0"]
    code, out, _ = _run(capsys, csvs, "--agents", *agents, "--out", "r", "--json")
    assert code == 0
    summary = _last_json(out)
    assert summary == json.loads(Path("r/summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert set(summary["spread"]) == set(agents)
    assert set(summary["context_loss"]) == {"train", "test"}
    assert (summary["epochs"], summary["seed"], summary["engine"]) == (2, 0, "inprocess")
    for sc in summary["subcontexts"]:
        assert set(sc) == {"agents", "context_accuracy", "rank_score"}
        assert sc["agents"] == sorted(sc["agents"])
    rows = Path("r/metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in rows] == [1, 2]
    clusterings = json.loads(Path("r/clusterings.json").read_text())
    assert clusterings["agents"] == agents and len(clusterings["clusterings"]) == 2
    embeddings = load_file("r/embeddings.safetensors")
    d = OsmlConfig()
    assert {a: e.shape for a, e in embeddings.items()} == {
        a: (40 - d.window + 1, d.dim) for a in agents}
    assert sorted(p.name for p in Path("r/plots").iterdir()) == [
        "similarity.png", "subcontexts.png", "training.png"]


def test_a_run_config_repeats_the_run(capsys: Capsys, csvs: Csvs) -> None:
    """config.yaml records settings and data, so it repeats the run elsewhere; given the same
    folder, the finished run is read back, not run again or overwritten. The file may be given
    as `--config` or as the first argument, not both."""
    _, out, _ = _run(capsys, csvs, "--agents", "0", "1", "--seed", "3", "--out", "r", "--json")
    first, before = _last_json(out), Path("r/summary.json").read_text()
    code, out, err = _osml(capsys, "run", "--config", "r/config.yaml", "--out", "r", "--json")
    assert code == 0 and "already holds this run" in err
    assert Path("r/summary.json").read_text() == before and _last_json(out) == first
    code, _, err = _osml(capsys, "run", "r/config.yaml", "--config", "r/config.yaml")
    assert code == 2 and err.count("\n") == 1 and "not both" in err
    code, out, _ = _osml(capsys, "run", "r/config.yaml", "--out", "r2", "--json")  # positional
    again = json.loads(Path("r2/summary.json").read_text())
    assert code == 0 and _last_json(out) == again
    timing = {"train_seconds": 0, "train_cpu_seconds": 0}
    assert {**again, **timing} == {**first, **timing}


def test_options_override_the_config_file(capsys: Capsys, csvs: Csvs) -> None:
    """A hand-written config: settings, and data paths relative to the file's folder."""
    Path("cfg").mkdir()
    Path("cfg/c.yaml").write_text("alpha: 0.7\nstrategy: trimmed_mean\nstrategy_params: {trim: 0.1}"
                                  "\ndata: {train: ../train.csv, test: ../test.csv}\n")
    code, out, _ = _osml(capsys, "run", "--config", "cfg/c.yaml", *TINY_OPTIONS, "--alpha", "0.6",
                         "--agents", "0", "1", "--epochs", "1", "--no-sphere")
    assert code == 0
    assert "runs/osml/run-seed0" in out and "rank score" in out  # the human report
    written = Path("runs/osml/run-seed0/config.yaml").read_text()
    for line in ("alpha: 0.6", "strategy: trimmed_mean", "trim: 0.1", "sphere: false", "epochs: 1"):
        assert line in written


def test_bad_csv_is_one_line_naming_the_file(capsys: Capsys, csvs: Csvs) -> None:
    bad = csvs[0].parent / "bad.csv"
    bad.write_text("Agent0[0],Speed\n1,2\n")
    code, _, err = _osml(capsys, "run", "--train", str(bad), "--test", str(csvs[1]))
    _one_line_error(code, err, str(bad), "Speed")
    code, _, err = _osml(capsys, "run", "--train", "missing.csv", "--test", str(csvs[1]))
    _one_line_error(code, err, "missing.csv")
    assert not Path("runs").exists()  # nothing written for a run that could not start


def test_unknown_agent_is_one_line(capsys: Capsys, csvs: Csvs) -> None:
    code, _, err = _run(capsys, csvs, "--agents", "0", "X7")
    _one_line_error(code, err, "X7")


@pytest.mark.parametrize(("text", "needles"), [
    ("alpha: 0.7\nstrategy_parms: {}\n", ["strategy_parms"]),
    ("alpha: 2\n", ["alpha", "1"]),
    ("strategy: median\n", ["median"]),
    ("alpha: [0.5\n", ["line"]),
    ("- alpha\n", ["mapping"]),
])
def test_bad_config_file_is_one_line_naming_file_and_field(
        capsys: Capsys, csvs: Csvs, text: str, needles: list[str]) -> None:
    Path("c.yaml").write_text(text)
    code, _, err = _run(capsys, csvs, "--config", "c.yaml")
    _one_line_error(code, err, "c.yaml", *needles)


@pytest.mark.parametrize(("options", "needles"), [
    (["--alpha", "1.5"], ["alpha", "1.5"]),
    (["--strategy", "median"], ["unknown 'median'"]),
    (["--strategy", "trimmed_mean", "--strategy-params", "tirm=0.1"], ["takes ['trim']", "tirm"]),
    (["--strategy", "trimmed_mean", "--strategy-params", "trim=0.7"], ["trim", "0.7"]),
])
def test_bad_option_value_is_one_line_and_writes_nothing(
        capsys: Capsys, csvs: Csvs, options: list[str], needles: list[str]) -> None:
    code, _, err = _run(capsys, csvs, *options)
    _one_line_error(code, err, *needles)
    assert not Path("runs").exists()


def test_generate_writes_the_paper_layout(capsys: Capsys, cwd: Path) -> None:
    code, _, _ = _osml(capsys, "generate", "complex", "--out", "d/complex-context", "--seed", "2")
    assert code == 0
    train = read_csv("d/complex-context/train_data.csv")
    test = read_csv("d/complex-context/test_data.csv")
    assert list(train) == ["0", "1", "2", "3", "4"]
    assert (train["4"].shape, test["4"].shape) == ((900, 2), (191, 2))
    code, _, err = _osml(capsys, "generate", "complex", "--out", "d/complex-context")
    _one_line_error(code, err, "already exists")


def test_reproduce_reads_the_paper_layout(capsys: Capsys, cwd: Path,
                                          tiny_context: Callable) -> None:
    Path("d/simple-context").mkdir(parents=True)
    for name, series in zip(("train", "test"), tiny_context("simple")):
        write_csv(f"d/simple-context/{name}_data.csv", series)
    code, out, _ = _osml(capsys, "reproduce", "robust", "--data", "d", "--epochs", "1", "--json")
    assert code == 0
    summary = _last_json(out)
    assert summary["epochs"] == 1 and set(summary["spread"]) == {"0", "1", "M0", "M1"}
    written = Path("runs/osml/robust-epochs1-seed0/config.yaml").read_text()
    assert "simple-context/train_data.csv" in written
    code, _, err = _osml(capsys, "reproduce", "complex", "--data", "d")
    _one_line_error(code, err, "complex-context/train_data.csv")


def test_demo_runs_the_three_presets(capsys: Capsys, cwd: Path, tiny_context: Callable,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """No paper files to be found: generated (here: tiny) data only."""
    monkeypatch.setattr(experiments, "PAPER_DATA", cwd / "no-paper-data")
    monkeypatch.setattr(experiments, "generate_context", tiny_context)
    assert main(["demo", "--out", "demo", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    for name in ("simple", "robust", "complex"):
        assert Path(f"demo/generated/{name}-seed0/plots/similarity.png").is_file()
        assert name in out
    assert "on paper data" not in out
