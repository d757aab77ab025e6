"""Figure helpers every mode's plots share.

Figures are built on `matplotlib.figure.Figure` with an Agg canvas, never through `pyplot`: no
global figure registry to leak memory across the many runs of a benchmark or a test session, and
no dependency on a display or on the process-wide backend setting.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

Curves = Mapping[str, Sequence[float | None]]
"""Named series of values over the x axis; None (a JSON null) is a gap."""


def draw_curves(ax: Axes, x: Sequence[float], curves: Curves, **style: object) -> None:
    """One line per named series, gaps where a value is None, integer x ticks, a legend."""
    for label, values in curves.items():
        y = [math.nan if v is None else float(v) for v in values]
        ax.plot(x, y, **{"marker": "o" if len(x) <= 30 else None, "markersize": 3, **style},
                label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small")


def panel_grid(n: int) -> tuple[int, int]:
    """(rows, columns) of a near-square grid for `n` panels."""
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def row_of_panels(n: int, title: str | None) -> tuple[Figure, list[Axes]]:
    """A figure of `n` panels side by side, with an optional title over them."""
    fig = Figure(figsize=(5.0 * n, 3.8), layout="constrained")
    axes = list(fig.subplots(1, n, squeeze=False).flat)
    if title:
        fig.suptitle(title)
    return fig, axes


def save(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as a PNG at `path` and return the path (laid out tightly unless the figure
    has a layout engine of its own)."""
    FigureCanvasAgg(fig)  # an explicit Agg canvas: no pyplot, no global backend
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)
