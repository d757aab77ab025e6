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
from osmotic.osmosis import experiments

TINY_OPTIONS = ["--epochs", "2", "--hidden", "4", "--batch-size", "20", "--cluster-every", "1",
                "--cluster-samples", "20"]
SUMMARY_KEYS = {"subcontexts", "unclustered", "context_accuracy", "rank_score", "spread",
                "context_loss", "epochs", "train_seconds", "seed", "engine"}


@pytest.fixture
def csvs(tmp_path: Path, tiny_context: Callable, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A tiny train/test pair in the paper's layout; the working directory is tmp_path."""
    monkeypatch.chdir(tmp_path)
    train, test = tiny_context()
    write_csv(tmp_path / "train.csv", train)
    write_csv(tmp_path / "test.csv", test)
    return tmp_path / "train.csv", tmp_path / "test.csv"


def _osml(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["osml", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _last_json(stdout: str) -> dict[str, Any]:
    return json.loads(stdout.strip().splitlines()[-1])


def _run(capsys: pytest.CaptureFixture, csvs: tuple[Path, Path], *extra: str) -> tuple[int, str, str]:
    return _osml(capsys, "run", "--train", str(csvs[0]), "--test", str(csvs[1]), *TINY_OPTIONS, *extra)


def test_run_writes_every_file_and_prints_the_summary_last(
        capsys: pytest.CaptureFixture, csvs: tuple[Path, Path]) -> None:
    code, out, _ = _run(capsys, csvs, "--agents", "0", "1", "M0", "--out", "r", "--json")
    assert code == 0
    summary = _last_json(out)
    assert summary == json.loads(Path("r/summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert set(summary["spread"]) == {"0", "1", "M0"}
    assert set(summary["context_loss"]) == {"train", "test"}
    assert (summary["epochs"], summary["seed"], summary["engine"]) == (2, 0, "inprocess")
    for sc in summary["subcontexts"]:
        assert set(sc) == {"agents", "context_accuracy", "rank_score"}
        assert sc["agents"] == sorted(sc["agents"])
    assert [json.loads(line)["epoch"] for line in Path("r/metrics.jsonl").read_text().splitlines()] == [1, 2]
    clusterings = json.loads(Path("r/clusterings.json").read_text())
    assert clusterings["agents"] == ["0", "1", "M0"] and len(clusterings["clusterings"]) == 2
    embeddings = load_file("r/embeddings.safetensors")
    assert {a: e.shape for a, e in embeddings.items()} == {a: (40 - 10 + 1, 5) for a in ("0", "1", "M0")}
    assert sorted(p.name for p in Path("r/plots").iterdir()) == [
        "similarity.png", "subcontexts.png", "training.png"]


def test_a_run_config_repeats_the_run_beside_it(capsys: pytest.CaptureFixture, csvs: tuple[Path, Path]) -> None:
    """config.yaml records settings and data, so it repeats the run; the first is kept intact."""
    first = _last_json(_run(capsys, csvs, "--agents", "0", "1", "--seed", "3", "--out", "r", "--json")[1])
    before = Path("r/summary.json").read_text()
    code, out, err = _osml(capsys, "run", "--config", "r/config.yaml", "--out", "r", "--json")
    assert code == 0 and "r-1" in err
    assert Path("r/summary.json").read_text() == before
    again = json.loads(Path("r-1/summary.json").read_text())
    assert _last_json(out) == again
    assert {**again, "train_seconds": 0} == {**first, "train_seconds": 0}


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err


def test_bad_csv_is_one_line_naming_the_file(capsys: pytest.CaptureFixture, csvs: tuple[Path, Path]) -> None:
    bad = csvs[0].parent / "bad.csv"
    bad.write_text("Agent0[0],Speed\n1,2\n")
    code, _, err = _osml(capsys, "run", "--train", str(bad), "--test", str(csvs[1]))
    _one_line_error(code, err, str(bad), "Speed")
    code, _, err = _osml(capsys, "run", "--train", "missing.csv", "--test", str(csvs[1]))
    _one_line_error(code, err, "missing.csv")
    assert not Path("runs").exists()  # nothing written for a run that could not start


def test_unknown_agent_is_one_line(capsys: pytest.CaptureFixture, csvs: tuple[Path, Path]) -> None:
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
        capsys: pytest.CaptureFixture, csvs: tuple[Path, Path], text: str, needles: list[str]) -> None:
    Path("c.yaml").write_text(text)
    code, _, err = _osml(capsys, "run", "--train", str(csvs[0]), "--test", str(csvs[1]),
                         "--config", "c.yaml")
    _one_line_error(code, err, "c.yaml", *needles)


def test_bad_option_value_is_one_line(capsys: pytest.CaptureFixture, csvs: tuple[Path, Path]) -> None:
    code, _, err = _run(capsys, csvs, "--alpha", "1.5")
    _one_line_error(code, err, "alpha")


def test_options_override_the_config_file(capsys: pytest.CaptureFixture, csvs: tuple[Path, Path]) -> None:
    Path("c.yaml").write_text("alpha: 0.7\nstrategy: trimmed_mean\nstrategy_params: {trim: 0.1}\n")
    code, out, _ = _run(capsys, csvs, "--config", "c.yaml", "--alpha", "0.6", "--agents", "0", "1",
                        "--epochs", "1", "--no-sphere")
    assert code == 0
    assert "runs/osml/run-seed0" in out and "rank score" in out  # the human report
    written = Path("runs/osml/run-seed0/config.yaml").read_text()
    for line in ("alpha: 0.6", "strategy: trimmed_mean", "trim: 0.1", "sphere: false", "epochs: 1"):
        assert line in written


def test_generate_writes_the_paper_layout(capsys: pytest.CaptureFixture, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, _ = _osml(capsys, "generate", "complex", "--out", "d/complex-context", "--seed", "2")
    assert code == 0
    train, test = read_csv("d/complex-context/train_data.csv"), read_csv("d/complex-context/test_data.csv")
    assert list(train) == ["0", "1", "2", "3", "4"]
    assert (train["4"].shape, test["4"].shape) == ((900, 2), (191, 2))
    code, _, err = _osml(capsys, "generate", "complex", "--out", "d/complex-context")
    _one_line_error(code, err, "already exists")


def test_reproduce_reads_the_paper_layout(capsys: pytest.CaptureFixture, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, tiny_context: Callable) -> None:
    monkeypatch.chdir(tmp_path)
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


def test_demo_runs_the_three_presets(capsys: pytest.CaptureFixture, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch, tiny_context: Callable) -> None:
    monkeypatch.chdir(tmp_path)  # no ../shared/data/osml-paper here: generated data only
    monkeypatch.setattr(experiments, "generate_context", lambda kind, seed: tiny_context(kind, seed))
    assert main(["demo", "--out", "demo", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    for name in ("simple", "robust", "complex"):
        assert Path(f"demo/generated/{name}-seed0/plots/similarity.png").is_file()
        assert name in out
    assert "paper" not in out.split("experiment")[-1]
