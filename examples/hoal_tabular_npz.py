"""HoAL (FedAvg) on a tabular .npz file with a model of your own, given by import path.

Makes `table.npz` (2,000 rows, 20 features, 4 classes; scikit-learn's make_classification) unless
you pass your own with --npz, splits it over 5 terminals by Dirichlet(0.5) and trains
`my_models:TabularNet` with FedAvg; then trains the same model centrally (one terminal holding
all the data, the same optimiser and number of epochs) and prints both test accuracies.

    python examples/hoal_tabular_npz.py                 # about a minute on 2 cores
    python examples/hoal_tabular_npz.py --toy           # a few seconds (the test suite)
    python examples/hoal_tabular_npz.py --npz my.npz --x features --y label
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification

import osmotic.holonic


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--npz", type=Path, help="your data (default: make table.npz in --out)")
    p.add_argument("--x", default="x", help="key of the inputs [n, features]")
    p.add_argument("--y", default="y", help="key of the integer labels [n]")
    p.add_argument("--out", type=Path, default=Path("runs/examples/hoal-npz"))
    p.add_argument("--toy", action="store_true", help="tiny run, for tests")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.npz is None:
        args.npz = args.out / "table.npz"
        x, y = make_classification(2000, 20, n_informative=10, n_classes=4, random_state=0)
        np.savez(args.npz, x=x, y=y)
    rounds, epochs = (2, 1) if args.toy else (30, 2)
    settings = {
        "data": {"format": "npz", "path": str(args.npz), "x": args.x, "y": args.y},
        "model": "my_models:TabularNet", "model_params": {"width": 64},
        "distribution": "dirichlet", "alpha": 0.5, "rounds": rounds, "local_epochs": epochs,
        "lr": 0.05, "eval_every": rounds, "progress": not args.toy,  # an argument of run
    }
    fedavg = osmotic.holonic.run(holarchy={"holarchy": {"id": "server", "members":
                                                        [f"t{i}" for i in range(5)]}},
                                 out=args.out / "fedavg", **settings)
    central = osmotic.holonic.run(holarchy={"holarchy": {"id": "server",
                                                         "members": ["all"]}},
                                  out=args.out / "central", **settings)
    a, c = (r.summary["mean_test_accuracy"] for r in (fedavg, central))
    print(f"FedAvg, 5 terminals, Dirichlet(0.5): test accuracy {a:.4f}")
    print(f"central, same model and epochs:      test accuracy {c:.4f}  (gap {c - a:+.4f})")
    print(f"run directories: {fedavg.run_dir}, {central.run_dir}")


if __name__ == "__main__":
    main()
