"""The three scripts in examples/ run at toy size (`--toy`) and print what they promise."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, out: Path, capsys: pytest.CaptureFixture,
                monkeypatch: pytest.MonkeyPatch) -> str:
    """Run examples/<name>.py as `python examples/<name>.py --toy --out OUT` would."""
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / f"{name}.py"), "--toy", "--out", str(out)])
    monkeypatch.syspath_prepend(str(EXAMPLES))  # as python puts the script's folder first
    runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
    return capsys.readouterr().out


def test_osml_on_your_own_csv(tmp_path: Path, capsys: pytest.CaptureFixture,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = run_example("osml_own_csv", tmp_path, capsys, monkeypatch)
    assert "2 epochs; files and plots in" in out
    assert (tmp_path / "train.csv").exists() and (tmp_path / "run" / "summary.json").exists()


def test_hoal_on_a_tabular_npz_with_your_own_model(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = run_example("hoal_tabular_npz", tmp_path, capsys, monkeypatch)
    assert "FedAvg, 5 terminals, Dirichlet(0.5): test accuracy" in out and "gap" in out
    summary = (tmp_path / "fedavg" / "summary.json").read_text()
    assert '"model": "my_models:TabularNet"' in summary


def test_client_edge_cloud_with_30_percent_participation(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    out = run_example("client_edge_cloud", tmp_path, capsys, monkeypatch)
    assert "round 2: 9 clients trained" in out and "cloud model: test accuracy" in out
    assert any((tmp_path / "tensorboard").iterdir())
