"""A picture of a holarchy (PNG, through `report.plots.save`): tree edges and neighbour edges."""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from osmotic.holarchy.holarchy import Holarchy
from osmotic.report.plots import save


def _layout(h: Holarchy) -> dict[str, tuple[float, float]]:
    """Terminals evenly spaced left to right in holarchy order, each head centred over its
    members, levels top to bottom by depth (like the paper's Fig. 5)."""
    pos: dict[str, tuple[float, float]] = {}
    for i, t in enumerate(h.terminals()):
        pos[t] = (float(i), 0.0)
    for hid in h.nonterminals():  # bottom-up: members placed first
        xs = [pos[m][0] for m in h.holons[hid].members]
        pos[hid] = (sum(xs) / len(xs), 0.0)
    return {k: (x, -float(h.depth(k))) for k, (x, _) in pos.items()}


def draw_holarchy(h: Holarchy, path: str | Path, title: str = "") -> None:
    """Tree edges solid grey, neighbour edges dashed orange; heads that do not aggregate hollow."""
    pos = _layout(h)
    width = max(4.0, 0.6 * len(h.terminals()) + 1.5)
    height = 1.2 + 0.9 * max(-y for _, y in pos.values())
    fig = Figure(figsize=(width, height))
    ax = fig.subplots()
    for hid, holon in h.holons.items():
        for m in holon.members:
            ax.plot(*zip(pos[hid], pos[m], strict=True), color="0.6", lw=1.2, zorder=1)
    for a, b in h.edges:
        (xa, ya), (xb, yb) = pos[a], pos[b]
        bend = 0.25 * min(1.0, abs(xb - xa) / 3)  # arcs, so edges along one level stay visible
        ax.annotate("", (xb, yb), (xa, ya), zorder=2, arrowprops={
            "arrowstyle": "-", "color": "tab:orange", "lw": 1.5, "ls": "--",
            "connectionstyle": f"arc3,rad={-bend if ya == 0 else bend}"})
    for hid, (x, y) in pos.items():
        holon = h.holons[hid]
        face = "tab:blue" if holon.terminal else ("white" if not holon.aggregates else "tab:green")
        ax.scatter([x], [y], s=420, c=face, edgecolors="black", zorder=3)
        ax.text(x, y, hid, ha="center", va="center", fontsize=8, zorder=4,
                color="white" if face != "white" else "black")
    ax.plot([], [], color="0.6", label="tree (superior / member)")
    ax.plot([], [], color="tab:orange", ls="--", label="neighbours")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=7, frameon=False)
    ax.set_title(title, fontsize=9, pad=18)
    ax.margins(0.12, 0.25)
    ax.axis("off")
    save(fig, path)
