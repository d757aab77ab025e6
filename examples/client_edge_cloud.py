"""Client-edge-cloud federated learning with 30 % participation, from Python.

30 clients under 3 edge servers under a cloud (`hierarchical`): each round every edge draws 30 %
of its clients (3 of 10), they train locally, 10 % of them fail to report (drop-outs), the edge
averages whoever reported and, every K = 2 of its aggregations, reports to the cloud. Data:
scikit-learn's digits (8x8 images, 10 classes), split over the clients by Dirichlet(0.5). The
metrics also go to TensorBoard: `tensorboard --logdir <run dir>/tensorboard`.

    python examples/client_edge_cloud.py            # ~1 min on 2 cores
    python examples/client_edge_cloud.py --toy      # a few seconds (the test suite)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import osmotic.holonic
from osmotic.holarchy.builders import hierarchical


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/examples/client-edge-cloud"))
    p.add_argument("--toy", action="store_true", help="tiny run, for tests")
    args = p.parse_args()
    edges = [list(range(e * 10, e * 10 + 10)) for e in range(3)]  # clients 0-9, 10-19, 20-29
    result = osmotic.holonic.run(
        holarchy=hierarchical(edges).to_dict(), data="digits", model="mlp",
        model_params={"hidden": [64]}, distribution="dirichlet", alpha=0.5,
        participation=0.3, dropout_rate=0.1, budget=2, rounds=2 if args.toy else 40,
        local_epochs=1 if args.toy else 2, lr=0.05, log=["tensorboard"], out=args.out,
        progress=not args.toy)
    for row in result.metrics[-3:]:
        acc = row["mean_test_accuracy"]
        print(f"round {row['round']}: {row['trained']} clients trained, {row['reported']} "
              f"reported, mean test accuracy " + ("-" if acc is None else f"{acc:.3f}"))
    s = result.summary
    print(f"cloud model: test accuracy {s['root_test_accuracy']:.4f}; "
          f"{s['messages']['vertical']} vertical messages; run directory {result.run_dir}")


if __name__ == "__main__":
    main()
