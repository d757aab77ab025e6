"""What a finished holonic run says on the terminal; shared by the mode's commands and its
`MODE` record."""
from __future__ import annotations

from osmotic.report.result import RunResult

HELP = "Holonic Learning (holarchies, HoAL averaging; FedAvg, hierarchical FL and P2P)"


def describe(result: RunResult) -> str:
    """Structure, distribution, accuracy, rounds and where the files are."""
    s = result.summary
    return (f"{s['structure']}/{s['distribution']}: mean test accuracy "
            f"{s['mean_test_accuracy']:.4f} after {s['rounds']} rounds; results in "
            f"{result.run_dir}")
