"""PNG figures of an OSM-L run: the paper's Figs. 4–8 (helpers in `report.plots`)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations, cycle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from osmotic.osml.metrics import sim
from osmotic.report.plots import draw_curves, panel_grid, row_of_panels, save

UNCLUSTERED_COLOUR = "#d9d9d9"
MAX_NAMED_SUBCONTEXTS = 10
"""Sub-contexts named in a legend (and drawn as accuracy lines): with hundreds of agents the
rest would only bury the figure."""
_PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#393b79",
]


def similarity_matrices(path: str | Path, embeddings: np.ndarray, ids: Sequence[str], *,
                        beta: float = 2.0, max_agents: int = 6) -> Path:
    """sim(e_i^(t), e_j^(s)) over all test steps t, s for every pair of agents (paper Figs. 4–6).

    A pair that shares a context shows a bright diagonal (same step, same meaning); a collapsed
    pair shows a uniform square. Only the first `max_agents` agents are drawn: the number of
    panels grows quadratically.
    """
    E = F.normalize(torch.as_tensor(np.asarray(embeddings, dtype=np.float32))[:max_agents], dim=-1)
    pairs = list(combinations(range(len(E)), 2)) or [(0, 0)]
    rows, cols = panel_grid(len(pairs))
    fig = Figure(figsize=(3.1 * cols + 1.0, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (i, j) in zip(axes.flat, pairs):
        image = ax.imshow(sim(E[i] @ E[j].T, beta).numpy(), cmap="RdBu_r", vmin=-1, vmax=1,
                          origin="lower", interpolation="nearest")
        ax.set_title(f"agent {ids[i]} vs agent {ids[j]}", fontsize="medium")
        ax.set_xlabel(f"test step s of {ids[j]}")
        ax.set_ylabel(f"test step t of {ids[i]}")
    for ax in axes.flat[len(pairs):]:
        ax.set_axis_off()
    fig.colorbar(image, ax=axes, shrink=0.8, label=f"sim = sign(cos)·|cos|^{beta:g}")
    return save(fig, path)


CHANGE_MARKERS = {"join": ("^", "joined"), "leave": ("v", "left"),
                  "probation": ("o", "probation starts"), "rejected": ("x", "probation failed")}
"""How `subcontext_membership` marks each kind of membership change of `clusterings.json`."""


def subcontext_membership(path: str | Path, epochs: Sequence[int],
                          groups_per_epoch: Sequence[Sequence[Sequence[str]]],
                          ids: Sequence[str],
                          changes: Sequence[Mapping[str, object]] = ()) -> Path:
    """Which sub-context every agent is in after each epoch (paper Fig. 7).

    Each distinct member set gets its own colour, so a sub-context that gains or loses a member
    visibly changes colour; agents in no sub-context are grey. `changes` ({epoch, agent,
    change} each, as recorded in `clusterings.json`) are marked in the cell of that agent and
    epoch: joined ▲, left ▼, probation starts ○, probation failed ×.
    """
    row = {a: r for r, a in enumerate(ids)}
    colour_of: dict[frozenset[str], int] = {}  # member set -> colour index, by first appearance
    grid = np.zeros((len(ids), len(epochs)), dtype=int)
    for col, groups in enumerate(groups_per_epoch):
        for g in groups:
            k = colour_of.setdefault(frozenset(g), len(colour_of) + 1)
            grid[[row[a] for a in g], col] = k
    colours = [UNCLUSTERED_COLOUR] + [_PALETTE[k % len(_PALETTE)] for k in range(len(colour_of))]
    fig = Figure(figsize=(min(2.5 + 0.3 * len(epochs), 14), min(1.5 + 0.35 * len(ids), 12)),
                 layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid, cmap=ListedColormap(colours), vmin=-0.5, vmax=len(colours) - 0.5,
              aspect="auto", interpolation="nearest",
              extent=(epochs[0] - 0.5, epochs[-1] + 0.5, len(ids) - 0.5, -0.5))
    if len(ids) <= 40:  # beyond, names and separators would be all the figure shows
        ax.set_yticks(range(len(ids)), [str(a) for a in ids])
        ax.set_yticks(np.arange(len(ids) - 1) + 0.5, minor=True)
        ax.grid(which="minor", axis="y", color="white", linewidth=1.5)
        ax.tick_params(which="minor", length=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="agent", title="sub-contexts over epochs")
    marks = []
    for kind, (marker, label) in CHANGE_MARKERS.items():
        at = [(c["epoch"], row[c["agent"]]) for c in changes if c["change"] == kind]
        if at:
            x, y = zip(*at)
            paint = ({"facecolors": "none", "edgecolors": "black"} if marker == "o"
                     else {"color": "black"})
            ax.scatter(x, y, marker=marker, s=36, linewidths=1.2, zorder=3, **paint)
            marks.append(Line2D([], [], linestyle="", marker=marker, color="black",
                                markerfacecolor="none" if marker == "o" else "black", label=label))
    legend = [Patch(color=UNCLUSTERED_COLOUR, label="no sub-context")] + [
        Patch(color=colours[k], label=_members(g))
        for g, k in list(colour_of.items())[:MAX_NAMED_SUBCONTEXTS]] + marks
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    return save(fig, path)


def osml_training(path: str | Path, metrics: Sequence[Mapping[str, object]]) -> Path:
    """Losses, context accuracy and rank score over epochs, with each sub-context's accuracy
    dashed in its colour of `subcontext_membership` (paper Fig. 8). `metrics` are the rows of
    metrics.jsonl."""
    x = [int(r["epoch"]) for r in metrics]
    fig, (loss_ax, acc_ax) = row_of_panels(2, None)
    draw_curves(loss_ax, x, {"train": [r["train_loss"] for r in metrics],
                       "test": [r["test_loss"] for r in metrics]})
    loss_ax.set(title="context loss", xlabel="epoch")
    draw_curves(acc_ax, x, {"context accuracy": [r["context_accuracy"] for r in metrics]}, color="black")
    draw_curves(acc_ax, x, {"rank score": [r["rank_score"] for r in metrics]}, color="black",
          linestyle=":", marker="s")
    named = list(_per_subcontext(metrics).items())[:MAX_NAMED_SUBCONTEXTS]
    for (label, values), colour in zip(named, cycle(_PALETTE)):
        draw_curves(acc_ax, x, {label: values}, color=colour, linestyle="--", linewidth=1)
    acc_ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":", label="rank chance")
    acc_ax.set(title="test agreement", xlabel="epoch", ylim=(0, 1.02))
    acc_ax.legend(fontsize="small", loc="lower right")
    return save(fig, path)


def _per_subcontext(metrics: Sequence[Mapping[str, object]]) -> dict[str, list[float | None]]:
    """Each sub-context's accuracy over epochs, None in the epochs it did not exist; in order of
    first appearance, as `subcontext_membership` assigns its colours."""
    out: dict[str, list[float | None]] = {}
    for e, r in enumerate(metrics):
        for sc in r["subcontexts"]:
            curve = out.setdefault(f"acc {_members(sc['agents'])}", [None] * len(metrics))
            curve[e] = sc["context_accuracy"]
    return out


def _members(agents: Sequence[str] | frozenset[str], shown: int = 6) -> str:
    """`{0, 1, 2}`, numeric ids in numeric order; a long list ends in `… (n agents)`."""
    names = sorted(agents, key=lambda a: (len(a), a))
    more = f", … ({len(names)} agents)" if len(names) > shown else ""
    return "{" + ", ".join(names[:shown]) + more + "}"


