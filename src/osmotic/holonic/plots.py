"""Learning curves of holonic runs (PNG, through `report.plots.save`)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from osmotic.report.plots import save


def plot_curves(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> None:
    """One run: mean terminal training loss and test accuracy (and the root's) per round."""
    root = [(r["round"], r["root_test_accuracy"]) for r in rows
            if r.get("root_test_accuracy") is not None]
    _plot({"terminals (mean)": rows}, path, title, "test accuracy", root)


def plot_comparison(curves: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path,
                    title: str) -> None:
    """Several runs (one line each): mean training loss and mean test accuracy per round, the
    layout of the paper's Figs. 6-8."""
    _plot(curves, path, title, "mean test accuracy")


def _plot(curves: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path, title: str,
          accuracy_label: str, root: Sequence[tuple[int, float]] = ()) -> None:
    """Training loss (left) and test accuracy on the tested rounds (right), a line per curve;
    `root`: (round, accuracy) of the root's model, dashed."""
    fig = Figure(figsize=(8, 3))
    a, b = fig.subplots(1, 2)
    for label, rows in curves.items():
        a.plot([r["round"] for r in rows], [r["mean_train_loss"] for r in rows], label=label)
        tested = [r for r in rows if r["mean_test_accuracy"] is not None]
        b.plot([r["round"] for r in tested], [r["mean_test_accuracy"] for r in tested],
               label=label)
    if root:
        b.plot(*zip(*root, strict=True), ls="--", label="root model")
    a.set(xlabel="round", ylabel="mean training loss", yscale="log")
    b.set(xlabel="round", ylabel=accuracy_label)
    b.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    save(fig, path)
