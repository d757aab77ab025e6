"""What a finished OSM-L run says on the terminal; shared by the mode's commands and its
`MODE` record."""
from __future__ import annotations

from osmotic.report.result import RunResult

HELP = "Osmotic Learning (OSM-L)"


def describe(result: RunResult) -> str:
    """The sub-contexts found, the unclustered agents and the overall figures."""
    s = result.summary
    lines = [f"run directory: {result.run_dir}  (plots in {result.run_dir / 'plots'})"]
    lines += [f"  sub-context {{{', '.join(sc['agents'])}}}: accuracy "
              f"{fmt(sc['context_accuracy'])}, rank {fmt(sc['rank_score'])}"
              for sc in s["subcontexts"]]
    lines.append(f"  unclustered: {', '.join(s['unclustered']) or 'none'}")
    lines.append(f"  context accuracy {fmt(s['context_accuracy'])}, rank score "
                 f"{fmt(s['rank_score'])}, {s['epochs']} epochs in {s['train_seconds']:.1f} s "
                 "of training")
    return "\n".join(lines)


def fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"
