"""The shared run lifecycle on a toy job: rows, checkpoints, resume, rewind, loggers."""
from __future__ import annotations

from typing import Any

import pytest
import torch

from osmotic.engines import AgentsLost, RunInterrupted
from osmotic.report.rundir import RunDir
from osmotic.runtime.checkpoint import checkpoint_meta
from osmotic.runtime.lifecycle import Lifecycle


class Counter:
    """Adds the unit number to a tensor; loses its agents once at unit `fail_at`."""

    def __init__(self, fail_at: int | None = None):
        self.x = torch.zeros(1)
        self.fail_at = fail_at
        self.engine = self
        self.recovered = 0

    def step(self, unit: int, bar: Any) -> dict[str, Any]:
        if unit == self.fail_at:
            self.fail_at = None
            self.x += 100  # work lost with the agents must not survive the rewind
            raise AgentsLost("agent a7 lost")
        self.x += unit
        return {"round": unit, "x": float(self.x)}

    def state(self) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
        return {"counter": {"x": self.x.clone()}}, {"note": "toy"}

    def load_state(self, groups: dict[str, dict[str, torch.Tensor]], meta: dict[str, Any]) -> None:
        assert meta["note"] == "toy"
        self.x = groups["counter"]["x"].clone()

    def status(self, row: dict[str, Any]) -> str:
        return f"x {row['x']}"

    def recover(self) -> None:
        self.recovered += 1


def run(job: Counter, rd: RunDir | None, total: int = 5, **kw: Any) -> Lifecycle:
    life = Lifecycle(job, total=total, unit="round", run_dir=rd, **kw)
    life.run(progress=False)
    return life


def test_rows_checkpoints_and_loggers(tmp_path):
    seen: list[dict[str, Any]] = []
    rd = RunDir(tmp_path / "r")
    life = run(Counter(), rd, checkpoint_every=2, loggers=[seen.append])
    assert [r["x"] for r in life.metrics] == [1, 3, 6, 10, 15]
    assert seen == life.metrics == rd.read_metrics()
    assert checkpoint_meta(rd.file("checkpoint.safetensors"))["round"] == 5


def test_resume_equals_uninterrupted(tmp_path):
    straight = run(Counter(), None).metrics
    rd = RunDir(tmp_path / "r")
    run(Counter(), rd, total=3, checkpoint_every=1)
    resumed = Lifecycle(Counter(), total=5, unit="round", run_dir=RunDir(rd.path))
    assert resumed.run(resume=True, progress=False) == straight
    assert rd.read_metrics() == straight


def test_lost_agents_rewind_or_stop(tmp_path):
    job = Counter(fail_at=4)
    life = run(job, RunDir(tmp_path / "a"), checkpoint_every=2, restart_failed=True)
    assert job.recovered == 1
    assert life.metrics == run(Counter(), None).metrics  # units 3-4 redone, the +100 rewound
    with pytest.raises(RunInterrupted, match=r"a7 lost; last checkpoint: round 2; resume with"):
        run(Counter(fail_at=4), RunDir(tmp_path / "b"), checkpoint_every=2)
    with pytest.raises(RunInterrupted, match="no checkpoint was written"):
        run(Counter(fail_at=2), None)


def test_resume_without_checkpoint_is_one_line(tmp_path):
    life = Lifecycle(Counter(), total=2, unit="round", run_dir=RunDir(tmp_path / "empty"))
    with pytest.raises(ValueError, match="no checkpoint.safetensors to resume from"):
        life.run(resume=True, progress=False)


def test_checkpoint_from_before_the_lifecycle_resumes(tmp_path):
    """Older checkpoints kept the job's state at the top level of the meta, beside the units."""
    from osmotic.runtime.checkpoint import save_checkpoint

    rd = RunDir(tmp_path / "old")
    run(Counter(), rd, total=2)
    save_checkpoint(rd.file("checkpoint.safetensors"), {"counter": {"x": torch.tensor([3.0])}},
                    {"round": 2, "metrics": rd.read_metrics(), "note": "toy"})
    resumed = Lifecycle(Counter(), total=5, unit="round", run_dir=RunDir(rd.path))
    assert resumed.run(resume=True, progress=False) == run(Counter(), None).metrics
