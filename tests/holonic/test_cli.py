"""`osmotic holonic` end to end on tiny pools: files, stable JSON, edge cases, one-line errors."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from safetensors.torch import load_file

from osmotic.cli import main
from osmotic.holonic.config import HolonicConfig
from osmotic.holonic.runner import run
from osmotic.report.result import RunResult

KEYS = {"structure", "distribution", "rounds", "mean_test_accuracy", "mean_train_loss",
        "root_test_accuracy", "messages", "bytes", "train_seconds", "seed", "engine"}
TINY = {"rounds": 1, "local_epochs": 1, "holdout": 100}


def holonic(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["holonic", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def config_file(tmp_path: Path, **settings: Any) -> Path:
    f = tmp_path / "run.yaml"
    f.write_text(yaml.safe_dump({**TINY, **settings}))
    return f


def test_run_writes_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = config_file(tmp_path, structure="3L", distribution="ueqniid", pool_size=300, rounds=2,
                      eval_every=2)
    code, out, _ = holonic(capsys, "run", "--config", str(cfg), "--out", str(tmp_path / "r"),
                           "--json")
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert KEYS <= set(summary) and summary["engine"] == "inprocess"
    assert summary["messages"]["vertical"] > 0 and summary["bytes"]["horizontal"] > 0
    r = tmp_path / "r"
    rows = [json.loads(line) for line in (r / "metrics.jsonl").read_text().splitlines()]
    assert [row["mean_test_accuracy"] is None for row in rows] == [True, False]  # eval_every 2
    assert yaml.safe_load((r / "config.yaml").read_text())["resolved_holarchy"]["holarchy"]
    for png in ("curves", "holarchy", "partition"):
        assert (r / "plots" / f"{png}.png").exists()
    assert load_file(r / "models" / "terminals.safetensors")["param.fc2.bias"].shape == (10, 10)
    assert set(load_file(r / "models" / "holons.safetensors")) == {"R", *(f"H{i}" for i in
                                                                        range(1, 7))}


def test_reproduce_uses_the_papers_settings(tmp_path: Path, capsys: pytest.CaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The wiring only (real runs are tested above): paper settings, flags passed through."""
    seen: list[HolonicConfig] = []

    def fake_run(config: HolonicConfig, *, out: Path, **_: Any) -> RunResult:
        seen.append(config)
        return RunResult({"structure": config.structure, "distribution": config.distribution,
                          "rounds": config.rounds, "mean_test_accuracy": 0.5}, [], Path(out))

    monkeypatch.setattr("osmotic.holonic.api.run", fake_run)
    code, out, _ = holonic(capsys, "reproduce", "--structure", "1P", "--distribution",
                           "eqniid", "--rounds", "7", "--out", str(tmp_path / "r"), "--json")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["rounds"] == 7
    c = seen[0]
    assert (c.structure, c.distribution, c.local_epochs, c.lr, c.batch_size, c.budget) == \
        ("1P", "eqniid", 5, 0.01, 32, 2)
    assert (c.engine, c.restart_failed, c.checkpoint_every) == ("inprocess", False, None)

    holonic(capsys, "reproduce", "--structure", "2L", "--distribution", "iid", "--engine",
            "ray", "--actors", "3", "--ray-address", "auto", "--restart-failed",
            "--checkpoint-every", "4", "--out", str(tmp_path / "r2"))
    c = seen[1]
    assert (c.engine, c.actors, c.ray_address, c.restart_failed, c.checkpoint_every) == \
        ("ray", 3, "auto", True, 4)


def test_p2p_run_has_no_root_accuracy(tmp_path: Path) -> None:
    summary = run(HolonicConfig(structure="1P", pool_size=100, **TINY), tmp_path / "r",
                  progress=False)
    assert summary["root_test_accuracy"] is None and summary["messages"]["vertical"] == 0


def test_custom_holarchy_with_one_terminal(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "solo.yaml").write_text("holarchy: {id: R, members: [only]}\n")
    cfg = config_file(tmp_path, holarchy="solo.yaml", pool_size=50)
    code, out, err = holonic(capsys, "run", "--config", str(cfg), "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert "solo/iid" in out


def test_lone_terminal_without_head(tmp_path: Path) -> None:
    cfg = HolonicConfig(holarchy={"holarchy": {"id": "solo"}}, pool_size=30, **TINY)
    summary = run(cfg, tmp_path / "r", progress=False)
    assert summary["root_test_accuracy"] is None and summary["messages"]["vertical"] == 0


def test_terminal_with_one_sample(tmp_path: Path) -> None:
    """11 samples over 10 terminals: nine terminals hold a single sample."""
    cfg = HolonicConfig(structure="2L", pool_size=11, **TINY)
    summary = run(cfg, tmp_path / "r", progress=False)
    rows = json.loads((tmp_path / "r" / "partition.json").read_text())
    assert sorted(r["samples"] for r in rows)[:9] == [1] * 9
    assert summary["mean_train_loss"] > 0


def test_more_terminals_than_samples_per_class(tmp_path: Path) -> None:
    cfg = HolonicConfig(structure="4L", distribution="eqniid", pool_size=20, **TINY)
    assert run(cfg, tmp_path / "r", progress=False)["rounds"] == 1


def test_more_terminals_than_samples_is_one_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    cfg = config_file(tmp_path, structure="2L", pool_size=5)
    code, _, err = holonic(capsys, "run", "--config", str(cfg), "--out", str(tmp_path / "r"))
    assert code == 2 and err.count("\n") == 1
    assert "5 training samples for 10 terminals; each needs at least one" in err


@pytest.mark.parametrize("settings,message", [
    ({"structure": "2L", "epochs": 3}, "run.yaml: epochs: Extra inputs are not permitted"),
    ({"structure": "5L"}, "run.yaml: structure:"),
    ({}, "give exactly one of `structure`"),
    ({"structure": "2L", "lr": 0}, "run.yaml: lr: Input should be greater than 0"),
])
def test_config_errors_are_one_line(settings: dict[str, Any], message: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    code, _, err = holonic(capsys, "run", "--config", str(config_file(tmp_path, **settings)))
    assert code == 2 and err.count("\n") == 1 and message in err


def test_reproduce_needs_a_cell_or_grid(capsys: pytest.CaptureFixture) -> None:
    code, _, err = holonic(capsys, "reproduce", "--structure", "2L")
    assert code == 2 and "--structure and --distribution (or --grid)" in err


def test_draw(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    f = tmp_path / "h.yaml"
    f.write_text("holarchy: {id: R, members: [{id: A, members: [0, 1]}, 2]}\nedges: [[0, 1]]\n")
    code, out, _ = holonic(capsys, "draw", str(f))
    assert code == 0 and (tmp_path / "h.png").exists() and "3 terminals" in out
    f.write_text("holarchy: {id: R, members: [{id: A, members: [0, 1]}, 2]}\nedges: [[0, 2]]\n")
    code, _, err = holonic(capsys, "draw", str(f))
    assert code == 2 and err.count("\n") == 1 and "same super-holon" in err
