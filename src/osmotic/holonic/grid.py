"""`reproduce --grid`: the paper's 4 structures × 3 distributions, and their comparison.

Writes, beside one run directory per combination: `comparison.json` and `comparison.md` (final
mean test accuracy, rounds to reach 90 %, messages, bytes) and one plot per distribution with a
line per structure (the paper's Figs. 6-8: mean training loss and mean test accuracy).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from osmotic.holarchy.builders import STRUCTURES
from osmotic.holonic.config import HolonicConfig
from osmotic.holonic.plots import plot_comparison
from osmotic.holonic.runner import load_data, run
from osmotic.report import RunDir
from osmotic.report.rundir import find_run, write_json
from osmotic.runtime.lifecycle import Diverged

DISTRIBUTIONS = ("iid", "eqniid", "ueqniid")


def run_grid(base: HolonicConfig, out: str | Path, progress: bool | None = None,
             structures: tuple[str, ...] = STRUCTURES,
             distributions: tuple[str, ...] = DISTRIBUTIONS) -> list[dict[str, Any]]:
    """Run every combination (the data are loaded once) and write the comparison.

    A combination whose folder already holds a finished run of the same settings (engine
    settings aside) is read back, not re-run, and an interrupted one resumes from its
    checkpoint, so an interrupted grid goes on where it stopped.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(base)
    summaries = []
    for dist in distributions:
        for s in structures:
            cfg = base.with_overrides(structure=s, distribution=dist)
            cell, state = find_run(cfg, out / f"{s}-{dist}")
            if state == "finished":
                summaries.append(json.loads((cell / "summary.json").read_text()))
                continue
            if state != "diverged":
                try:
                    summaries.append(run(cfg, cell, data, progress,
                                         resume=state == "interrupted"))
                    continue
                except Diverged:  # its folder says so; the other cells go on
                    pass
            print(f"{cell}: diverged; left out of the comparison", file=sys.stderr)
    write_comparison(out, summaries)
    return summaries


def write_comparison(out: Path, summaries: list[dict[str, Any]]) -> None:
    """Table and per-distribution plots from finished runs' summaries and metrics."""
    write_json(out / "comparison.json", summaries)
    (out / "comparison.md").write_text(comparison_table(summaries))
    for dist in dict.fromkeys(s["distribution"] for s in summaries):
        curves = {s["structure"]: RunDir(s["run_dir"]).read_metrics()
                  for s in summaries if s["distribution"] == dist}
        plot_comparison(curves, out / f"grid-{dist}.png",
                        f"MNIST {dist}: mean over the 10 terminals")


def comparison_table(summaries: list[dict[str, Any]]) -> str:
    """Markdown: one row per run."""
    header = ("| distribution | structure | final mean test acc. | root test acc. | "
              "rounds to 90 % | messages (h / v) | MB (h / v) |")
    lines = [header, "|---|---|---|---|---|---|---|"]
    for s in summaries:
        root = "-" if s["root_test_accuracy"] is None else f"{s['root_test_accuracy']:.4f}"
        m, b = s["messages"], s["bytes"]
        lines.append(
            f"| {s['distribution']} | {s['structure']} | {s['mean_test_accuracy']:.4f} | {root} "
            f"| {s['rounds_to_90'] or 'never'} | {m['horizontal']} / {m['vertical']} "
            f"| {b['horizontal'] / 1e6:.1f} / {b['vertical'] / 1e6:.1f} |")
    return "\n".join(lines) + "\n"
