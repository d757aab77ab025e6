"""Plots are written as PNG files from plain inputs, edge cases included, with no pyplot state."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from osmotic.osml import plots

PNG = b"\x89PNG"


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:4] == PNG


def test_similarity_matrices_any_number_of_agents(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for n in (1, 5):  # one agent: its own matrix; more than max_agents: the first ones
        path = plots.similarity_matrices(tmp_path / f"s{n}.png", rng.standard_normal((n, 15, 4)),
                                         [f"A{i}" for i in range(n)], max_agents=3)
        assert _is_png(path)


def test_membership_with_changing_and_missing_sub_contexts(tmp_path: Path) -> None:
    groups = [[["0", "1", "2"]], [], [["0", "1"]], [["0", "1"], ["2", "M0"]]]
    ids = ["0", "1", "2", "M0"]
    path = plots.subcontext_membership(tmp_path / "m.png", [1, 2, 3, 4], groups, ids)
    assert _is_png(path)


def test_osml_training_from_metric_rows(tmp_path: Path) -> None:
    found = [{"agents": ["0", "1"], "context_accuracy": 0.9, "rank_score": 0.8}]
    rows = [{"epoch": e, "train_loss": 2.0 / e, "test_loss": 2.2 / e,
             "context_accuracy": 0.5 + e / 10, "rank_score": 0.6,
             "subcontexts": found if e > 1 else []} for e in (1, 2, 3)]
    assert _is_png(plots.osml_training(tmp_path / "t.png", rows))


def test_no_pyplot_figures_are_left_open(tmp_path: Path) -> None:
    rows = [{"epoch": 1, "train_loss": 1.0, "test_loss": 1.1, "context_accuracy": 0.5,
             "rank_score": 0.6, "subcontexts": []}]
    plots.osml_training(tmp_path / "t.png", rows)
    assert plt.get_fignums() == []
