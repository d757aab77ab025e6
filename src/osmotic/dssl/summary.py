"""What a finished D-SSL run says on the terminal; shared by the mode's commands and its `MODE`
record."""
from __future__ import annotations

from osmotic.report.result import RunResult

HELP = "distributed self-supervised pre-training (SimSiam, MAE, MAR under FL and DecL)"


def describe(result: RunResult) -> str:
    """The probes of the pre-trained model against the random initialisation, and the files."""
    s = result.summary
    fw = "fl" if s["framework"] == "fl" else f"decl-d{s['degree']}"
    return (f"{s['method']}-{fw}: linear probe {s['linear_probe_accuracy']:.4f} (random init "
            f"{s['random_init_linear_probe_accuracy']:.4f}), kNN {s['knn_accuracy']:.4f}; "
            f"results in {result.run_dir}")
