"""`reproduce`'s grid: cells in priority order, finished cells read back, table and figures."""
from __future__ import annotations

from pathlib import Path

from osmotic.dssl.grid import aggregate, cells, run_grid, table
from osmotic.report.rundir import run_state
from tests.dssl.conftest import tiny


def test_cells_cover_the_study_in_priority_order() -> None:
    grid = cells(tiny(clients=20, local_steps=3))
    assert len(grid) == 3 * 3 * 4 + 3
    assert [c.name for c in grid[:3]] == ["simsiam-fl-iid", "mae-fl-iid", "mar-fl-iid"]
    central = grid[3]
    assert central.clients == 1 and central.local_steps == 60  # the same images processed
    assert len({c.model_dump_json() for c in grid}) == len(grid)


def test_grid_skips_finished_cells_and_writes_the_report(tmp_path: Path) -> None:
    base = tiny(rounds=1)
    first = run_grid(base, tmp_path, seeds=[0], limit=2, log=lambda _: None)
    summary = tmp_path / "seed0" / "mae-fl-iid" / "summary.json"
    stamp = summary.stat().st_mtime_ns
    again = run_grid(base, tmp_path, seeds=[0], limit=2, log=lambda _: None)
    assert summary.stat().st_mtime_ns == stamp  # read back, not re-run
    assert len(run_grid(base, tmp_path, seeds=[0], report_only=True)) == 2
    assert [s["linear_probe_accuracy"] for s in again] == \
        [s["linear_probe_accuracy"] for s in first]
    for name in ("comparison.md", "probe-vs-alpha.png", "drift.png", "features-2d.png"):
        assert (tmp_path / name).is_file(), name
    rows = aggregate(first)
    assert all(r["robustness"][0] == 1.0 for r in rows)  # IID against itself
    assert "| mae | fl | iid |" in table(rows)


def test_a_grid_started_elsewhere_recognises_its_cells(tmp_path: Path, monkeypatch) -> None:
    """The test-set folder is recorded as an absolute path, so the same folder given relative to
    another working directory is the same experiment."""
    (tmp_path / "idx").mkdir()
    monkeypatch.chdir(tmp_path)
    here = tiny(mnist_dir="idx")
    monkeypatch.chdir(tmp_path / "idx")
    assert here.mnist_dir == str(tmp_path / "idx")
    assert tiny(mnist_dir=".").same_experiment(here)


def test_an_interrupted_cell_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    base = tiny(rounds=2, checkpoint_every=1)
    first = run_grid(base, tmp_path, seeds=[0], limit=1, log=lambda _: None)
    cell = tmp_path / "seed0" / "simsiam-fl-iid"
    cfg = cells(base)[0].with_overrides(seed=0)
    assert run_state(cfg, cell) == "finished"
    (cell / "summary.json").unlink()  # as if stopped after its last checkpoint
    assert run_state(cfg, cell) == "interrupted"
    assert run_state(cfg.with_overrides(lr=0.5), cell) == "new"
    said: list[str] = []
    again = run_grid(base, tmp_path, seeds=[0], limit=1, log=said.append)
    assert any("resuming" in line for line in said)
    assert again[0]["linear_probe_accuracy"] == first[0]["linear_probe_accuracy"]


def test_cells_run_in_worker_processes_give_the_same_numbers(tmp_path: Path) -> None:
    base = tiny(rounds=1)
    one = run_grid(base, tmp_path / "one", seeds=[0, 1], limit=1, log=lambda _: None)
    two = run_grid(base, tmp_path / "two", seeds=[0, 1], limit=1, log=lambda _: None,
                   workers=2)
    assert [(s["seed"], s["linear_probe_accuracy"]) for s in two] == \
        [(s["seed"], s["linear_probe_accuracy"]) for s in one]
