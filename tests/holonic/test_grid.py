"""The grid: runs, comparison files, and resuming instead of re-running finished cells."""
from __future__ import annotations

from pathlib import Path

import pytest

from osmotic.holonic import grid
from osmotic.holonic.config import HolonicConfig


def test_grid_writes_comparison_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = HolonicConfig(structure="2L", rounds=1, local_epochs=1, holdout=100, pool_size=60)
    first = grid.run_grid(base, tmp_path, False, ("2L", "1P"), ("eqniid",))
    assert [s["structure"] for s in first] == ["2L", "1P"]
    table = (tmp_path / "comparison.md").read_text()
    assert "| eqniid | 1P |" in table and table.count("\n") == 4
    assert (tmp_path / "grid-eqniid.png").exists()

    def no_rerun(*args: object) -> None:
        raise AssertionError("a finished cell was run again")

    monkeypatch.setattr(grid, "run", no_rerun)
    assert grid.run_grid(base, tmp_path, False, ("2L", "1P"), ("eqniid",)) == first


def test_grid_reruns_a_cell_whose_settings_changed(tmp_path: Path, monkeypatch) -> None:
    base = HolonicConfig(structure="1P", rounds=1, local_epochs=1, holdout=100, pool_size=60)
    grid.run_grid(base, tmp_path, False, ("1P",), ("eqniid",))
    changed = base.with_overrides(lr=0.05)
    again = grid.run_grid(changed, tmp_path, False, ("1P",), ("eqniid",))
    assert again[0]["run_dir"] == str(tmp_path / "1P-eqniid-1")  # written beside, not reused
    monkeypatch.setattr(grid, "run", lambda *a, **k: pytest.fail("the run beside was re-run"))
    assert grid.run_grid(changed, tmp_path, False, ("1P",), ("eqniid",)) == again
    assert grid.run_grid(base, tmp_path, False, ("1P",), ("eqniid",))[0]["run_dir"] == \
        str(tmp_path / "1P-eqniid")
