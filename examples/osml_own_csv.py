"""OSM-L on your own CSV files, from Python.

The CSV layout: one column per agent feature, named `Agent<id>[<feature index>]`, one row per
time step, train and test in separate files. Without --train/--test this script first writes a
small pair: agents 0 and 1 observe one hidden signal through different sensors, agent 2 is
noise. It then trains OSM-L on the pair and prints the sub-contexts it found.

    python examples/osml_own_csv.py                        # ~20 s on 2 cores
    python examples/osml_own_csv.py --toy                  # a few seconds (the test suite)
    python examples/osml_own_csv.py --train my/train.csv --test my/test.csv
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import osmotic.osml
from osmotic.data.timeseries import write_csv


def demo_pair(folder: Path, steps: int, seed: int = 0) -> tuple[Path, Path]:
    """Two agents seeing one signal (agent 0: 2 sensors, agent 1: 1), one agent of noise."""
    rng = np.random.default_rng(seed)
    paths = []
    for split, n in (("train", steps), ("test", steps // 3)):
        t = np.arange(n)
        signal = np.sin(t / 9) + 0.5 * np.sign(np.sin(t / 31))
        series = {"0": np.stack([signal, 0.5 * signal**2], 1) + 0.05 * rng.normal(size=(n, 2)),
                  "1": (2 * signal + 1)[:, None] + 0.05 * rng.normal(size=(n, 1)),
                  "2": rng.normal(size=(n, 1))}
        paths.append(folder / f"{split}.csv")
        write_csv(paths[-1], series)
    return paths[0], paths[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=Path, help="training CSV (default: write a demo pair)")
    p.add_argument("--test", type=Path, help="test CSV with the same agents")
    p.add_argument("--out", type=Path, default=Path("runs/examples/osml-csv"))
    p.add_argument("--toy", action="store_true", help="tiny run, for tests")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.train is None:
        args.train, args.test = demo_pair(args.out, 150 if args.toy else 900)
    settings = {"epochs": 2, "hidden": 4, "cluster_every": 1, "batch_size": 20} if args.toy \
        else {"epochs": 10}
    result = osmotic.osml.run(train=args.train, test=args.test, out=args.out / "run",
                              progress=not args.toy, **settings)
    s = result.summary
    for sc in s["subcontexts"]:
        print(f"sub-context {{{', '.join(sc['agents'])}}}: context accuracy "
              f"{sc['context_accuracy']:.3f}, rank score {sc['rank_score']:.3f}")
    print(f"in no sub-context: {', '.join(s['unclustered']) or 'none'}")
    print(f"{len(result.metrics)} epochs; files and plots in {result.run_dir}")


if __name__ == "__main__":
    main()
