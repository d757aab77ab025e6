"""D-SSL figures (Agg canvas, no pyplot): a run's curves, and the grid's comparisons."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from osmotic.report.plots import save

Lines = Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]]
"""Named lines: x values, means, standard deviations."""


def plot_run(history: Sequence[dict[str, Any]], path: str | Path, title: str) -> Path:
    """Mean local loss and representation drift per round."""
    fig = Figure(figsize=(8, 3))
    rounds = [r["round"] for r in history]
    for ax, key, label in zip(fig.subplots(1, 2), ("mean_train_loss", "drift"),
                              ("mean local loss", "drift (1 - mean pairwise CKA)"), strict=True):
        ax.plot(rounds, [r[key] for r in history], marker=".")
        ax.set_xlabel("round")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return save(fig, path)


def plot_lines(lines: Lines, path: str | Path, *, xlabel: str, ylabel: str, title: str,
               baselines: Mapping[str, float] = {}, log_x: bool = False) -> Path:
    """One line per name with ±sd error bars; dashed horizontal baselines."""
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    for name, (x, mean, sd) in lines.items():
        ax.errorbar(x, mean, yerr=sd, marker="o", capsize=3, label=name)
    for k, (name, y) in enumerate(baselines.items()):
        ax.axhline(y, ls="--", lw=1, color=f"C{k + len(lines)}", label=name)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)


def plot_scatter(points: Sequence[tuple[float, float, str]], path: str | Path, *, xlabel: str,
                 ylabel: str, title: str) -> Path:
    """Labelled points against the diagonal y = x (above it: y wins)."""
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    lo, hi = min(xs + ys) - 0.01, max(xs + ys) + 0.01
    ax.plot([lo, hi], [lo, hi], ls="--", color="grey", lw=1)
    ax.scatter(xs, ys)
    for x, y, name in points:
        ax.annotate(name, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return save(fig, path)


def plot_drift(curves: Mapping[str, Sequence[float]], path: str | Path, title: str) -> Path:
    """Representation drift per round, one line per run."""
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    for name, ys in curves.items():
        ax.plot(range(1, len(ys) + 1), ys, label=name)
    ax.set_xlabel("round")
    ax.set_ylabel("drift (1 - mean pairwise CKA)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)


def plot_embedding(panels: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """2-D pictures (PCA of features) coloured by label, one panel per run."""
    fig = Figure(figsize=(4.2 * len(panels), 4), layout="constrained")  # room for the colour bar
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (name, (xy, labels)) in zip(axes, panels.items(), strict=True):
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=3, vmin=-0.5, vmax=9.5)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(sc, ax=axes.tolist(), ticks=range(10), label="label")
    return save(fig, path)
