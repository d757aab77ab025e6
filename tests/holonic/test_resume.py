"""A holonic run interrupted after round 2 and resumed ends with the uninterrupted run's numbers."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from osmotic.cli import main
from osmotic.holarchy.builders import hierarchical
from osmotic.holonic.config import HolonicConfig
from osmotic.holonic.runner import load_data, resume, run
from osmotic.runtime.checkpoint import checkpoint_meta

# Two heads over 5 terminals under a root: budgets, reports and neighbours all carry state.
SMALL = {"holarchy": hierarchical([[0, 1, 2], [3, 4]]).to_dict(), "distribution": "ueqniid",
         "rounds": 4, "local_epochs": 1, "batch_size": 16, "pool_size": 200, "holdout": 60,
         "budget": 2, "checkpoint_every": 1}
TIMES = ("train_seconds", "eval_seconds")


def small(**changes: Any) -> HolonicConfig:
    return HolonicConfig(**{**SMALL, **changes})


def models(run_dir: Path) -> dict[str, torch.Tensor]:
    out = load_file(run_dir / "models" / "terminals.safetensors")
    return {**out, **{f"holon.{k}": v for k, v in
                      load_file(run_dir / "models" / "holons.safetensors").items()}}


def same_numbers(a: dict[str, Any], b: dict[str, Any], atol: float = 0.0) -> None:
    """Summaries and final models equal (to `atol`), timings aside."""
    ra, rb = Path(a["run_dir"]), Path(b["run_dir"])
    for key in set(a) - {*TIMES, "run_dir"}:
        assert a[key] == pytest.approx(b[key], abs=atol), key
    ma, mb = models(ra), models(rb)
    assert ma.keys() == mb.keys()
    for k in ma:
        torch.testing.assert_close(ma[k], mb[k], atol=atol, rtol=0, msg=k)


def interrupted_then_resumed(tmp_path: Path, **engine: Any) -> tuple[dict, dict, Path]:
    """The straight run in-process (engines agree, tests/holonic/test_ray.py), the interrupted
    and resumed one on `engine`."""
    config = small(**engine)
    data = load_data(config)
    straight = run(config.with_overrides(engine="inprocess"), tmp_path / "straight", data)
    # An interruption after round 2 leaves exactly what a 2-round run leaves on disk.
    run(config.with_overrides(rounds=2), tmp_path / "cut", data)
    (tmp_path / "cut" / "summary.json").unlink()
    resumed = run(config, tmp_path / "cut", data, resume=True)
    return straight, resumed, tmp_path / "cut"


def test_resume_equals_uninterrupted_inprocess(tmp_path: Path) -> None:
    straight, resumed, cut = interrupted_then_resumed(tmp_path)
    same_numbers(straight, resumed)
    rows = [line for line in (cut / "metrics.jsonl").read_text().splitlines() if line]
    assert len(rows) == 4
    assert checkpoint_meta(cut / "checkpoint.safetensors")["round"] == 4


def test_osmotic_resume_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`osmotic resume` reads the run's own config.yaml (mode: holonic) and its data."""
    config = small(rounds=2)
    run(config.with_overrides(rounds=1), tmp_path / "cut")
    (tmp_path / "cut" / "summary.json").unlink()
    text = (tmp_path / "cut" / "config.yaml").read_text().replace("rounds: 1", "rounds: 2")
    (tmp_path / "cut" / "config.yaml").write_text(text)
    assert main(["resume", str(tmp_path / "cut")]) == 2  # edited since: refused ...
    assert main(["resume", str(tmp_path / "cut"), "--force"]) == 0  # ... unless forced
    assert "resumed and finished" in capsys.readouterr().out
    resumed = json.loads((tmp_path / "cut" / "summary.json").read_text())
    same_numbers(run(config, tmp_path / "straight"), resumed)


def test_resume_refuses_a_finished_run(tmp_path: Path) -> None:
    run(small(rounds=1), tmp_path / "done")
    with pytest.raises(ValueError, match="has finished"):
        resume(tmp_path / "done")


def test_checkpoints_every_k_rounds_by_default(tmp_path: Path) -> None:
    rounds: list[int] = []
    path = tmp_path / "r" / "checkpoint.safetensors"
    run(small(rounds=3, checkpoint_every=None, budget=2), tmp_path / "r",
        log=lambda row: rounds.append(checkpoint_meta(path)["round"]))
    assert rounds == [0, 2, 3]  # round 0, every K = 2, and the last


def test_resume_with_participation_draws_the_same_terminals(tmp_path: Path) -> None:
    straight, resumed, _ = interrupted_then_resumed(tmp_path, participation=0.4,
                                                    dropout_rate=0.2)
    same_numbers(straight, resumed)
