"""Cross-device holonic learning at scale: set-up, per-round time and memory against the number
of terminals, each run in a fresh process.

The setting (FedAvg over many small clients): IID terminals of 50 tabular rows each
(scikit-learn's make_classification: 20 features, 10 informative, 4 classes) and a 5,000-row
test set of the same draw, in .npz files the config reads; participation 0.1, one local epoch of
SGD (lr 0.05, batch 10), the built-in `mlp` (64, 64; 5,764 parameters), 30 rounds, the root's
and the terminals' test accuracy every round.

- 1,000 and 10,000 terminals under one root, 10 % per round: `osmotic holonic run --config`
  as a whole process (imports included), and the same run in a child that times its phases:
  set-up (settings, data, partition, schedule, terminals: everything before round 1's
  training), per-round time (the run's own training clock, and the wall time between rows,
  checkpoints and metrics included), evaluation, peak RSS;
- 100,000 terminals in a three-level holarchy (root -> 100 heads -> 1,000 terminals each),
  participation 0.01 (10 per head, 1,000 per round), `eval_terminals: 1000`: peak RSS.

Bytes per terminal: the growth of peak RSS from 1,000 to 10,000 terminals over the 9,000
terminals added (data rows included: 50 x 20 float32 = 4,000 bytes of them).

    .venv/bin/python benchmarks/bench_holonic_scale.py            # writes results/holonic_scale.md
    .venv/bin/python benchmarks/bench_holonic_scale.py --quick    # 1,000 terminals, 3 rounds
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml
from common import load, machine_line, write_report

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "holonic_scale.md"
ROWS, FEATURES, CLASSES, TEST_ROWS = 50, 20, 4, 5_000
SETTINGS = {"model": "mlp", "participation": 0.1, "local_epochs": 1, "lr": 0.05,
            "batch_size": 10, "rounds": 30, "seed": 0}


def write_data(folder: Path, terminals: int) -> dict[str, Any]:
    """The npz files of `terminals` x 50 training rows and the test set; their `data:` and
    `test:` entries."""
    import numpy as np
    from sklearn.datasets import make_classification

    x, y = make_classification(terminals * ROWS + TEST_ROWS, FEATURES, n_informative=10,
                               n_classes=CLASSES, random_state=0)
    x, y = x.astype(np.float32), y.astype(np.int64)
    train, test = folder / f"train{terminals}.npz", folder / f"test{terminals}.npz"
    np.savez(train, x=x[TEST_ROWS:], y=y[TEST_ROWS:])
    np.savez(test, x=x[:TEST_ROWS], y=y[:TEST_ROWS])
    return {"data": {"format": "npz", "path": str(train)},
            "test": {"format": "npz", "path": str(test)}}


def holarchy(terminals: int, heads: int) -> dict[str, Any]:
    """A root over the terminals (`heads` 0), or over `heads` heads of equal shares."""
    ids = list(range(terminals))
    if heads == 0:
        return {"holarchy": {"id": "R", "members": ids}}
    size = terminals // heads
    return {"holarchy": {"id": "R", "members": [
        {"id": f"H{h}", "members": ids[h * size:(h + 1) * size]} for h in range(heads)]}}


def config(folder: Path, terminals: int, heads: int = 0, **changes: Any) -> Path:
    path = folder / f"holonic-{terminals}-{heads}.yaml"
    path.write_text(yaml.safe_dump({"holarchy": holarchy(terminals, heads),
                                    **write_data(folder, terminals), **SETTINGS, **changes},
                                   default_flow_style=None, width=1_000_000))
    return path


# -- the child: one run, its phases timed ----------------------------------------------------
def child(config_path: str, out: str) -> None:
    """One run through the Python API in this fresh process; prints its timings as JSON."""
    start = time.perf_counter()
    from osmotic.holonic.api import run

    imported, cpu_imported = time.perf_counter(), time.process_time()
    arrivals: list[float] = []
    cpu: list[float] = []

    held: list[float] = []

    def arrived(row: dict[str, Any]) -> None:
        arrivals.append(time.perf_counter())
        cpu.append(time.process_time())
        held.append(int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf(
            "SC_PAGE_SIZE") / 2**20)

    result = run(config_path, out=out, progress=False, log=arrived)
    done = time.perf_counter()
    summary = result.summary
    per_round = summary["train_seconds"] / len(arrivals)
    between = sorted(b - a for a, b in pairwise(arrivals))
    cpu_between = sorted(b - a for a, b in pairwise(cpu))
    print(json.dumps({
        "imports": imported - start,
        # round 1's row arrives after its training, evaluation and checkpoint
        "setup": arrivals[0] - imported - (between[len(between) // 2] if between else 0.0),
        "cpu_setup": cpu[0] - cpu_imported - cpu_between[len(cpu_between) // 2],
        "cpu_per_round": cpu_between[len(cpu_between) // 2],
        "train_per_round": per_round, "wall_per_round": between[len(between) // 2],
        "eval_seconds": summary["eval_seconds"], "rss_last_round_mib": held[-1], "after_rounds": done - arrivals[-1],
        "accuracy": summary["mean_test_accuracy"], "root_accuracy":
        summary["root_test_accuracy"], "peak_rss_mib":
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(path: Path, out: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", str(path), str(out)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def whole_process(path: Path, out: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of `osmotic holonic run --config` in a fresh
    process."""
    def used() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    start, cpu = time.perf_counter(), used()
    subprocess.run([str(REPO / ".venv" / "bin" / "osmotic"), "holonic", "run", "--config",
                    str(path), "--out", str(out)], check=True, capture_output=True)
    return time.perf_counter() - start, used() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "OUT"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    rounds = {"rounds": 3} if args.quick else {}
    lines = [f"# Cross-device holonic learning at scale\n\n{machine_line()}\n",
             "`benchmarks/bench_holonic_scale.py`; " + __doc__.split("\n\n")[1].replace(
                 "\n", " ") + "\n"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = [(1_000, 0, {}), (10_000, 0, {})] if not args.quick else [(1_000, 0, {})]
        if not args.quick:
            cases.append((100_000, 100, {"participation": 0.01, "eval_terminals": 1_000}))
        results = []
        for terminals, heads, changes in cases:
            path = config(folder, terminals, heads, **changes, **rounds)
            before = load()
            got = measure(path, folder / f"run-{terminals}")
            got["whole"], got["whole_cpu"] = whole_process(path, folder / f"cli-{terminals}") \
                if terminals <= 10_000 else (None, None)
            got.update(terminals=terminals, heads=heads, load=before, **changes)
            results.append(got)
            print(json.dumps(got), flush=True)
    lines.append("| terminals | holarchy | per round | whole process (`osmotic holonic run`) "
                 "| set-up (CPU) | imports | train per round | wall per round (CPU) | "
                 "evaluation (all rounds) | peak RSS | accuracy (terminals / root) | load "
                 "before |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        shape = "root over all" if not r["heads"] else f"root → {r['heads']} heads"
        whole = "–" if r["whole"] is None else f"{r['whole']:.1f} s ({r['whole_cpu']:.1f} s)"
        lines.append(
            f"| {r['terminals']:,} | {shape} | {r.get('participation', 0.1):g} | {whole} | "
            f"{r['setup']:.2f} s ({r['cpu_setup']:.2f} s) | {r['imports']:.2f} s | "
            f"{r['train_per_round'] * 1e3:.1f} ms | {r['wall_per_round'] * 1e3:.1f} ms "
            f"({r['cpu_per_round'] * 1e3:.1f} ms) | {r['eval_seconds']:.2f} s | "
            f"{r['peak_rss_mib']:,.0f} MiB | {r['accuracy']:.3f} / {r['root_accuracy']:.3f} | "
            f"{r['load']} |")
    if len(results) > 1:
        a, b = results[0], results[1]
        per = (b["peak_rss_mib"] - a["peak_rss_mib"]) * 2**20 / (b["terminals"] -
                                                                 a["terminals"])
        kept = (b["rss_last_round_mib"] - a["rss_last_round_mib"]) * 2**20 / (
            b["terminals"] - a["terminals"])
        lines.append(f"\nBytes per terminal, from {a['terminals']:,} to {b['terminals']:,} "
                     f"terminals: {kept:,.0f} B of resident memory after the last round (RSS "
                     f"{a['rss_last_round_mib']:,.0f} and {b['rss_last_round_mib']:,.0f} MiB; of "
                     "each terminal's bytes, 4,400 are its 50 data rows and labels and about "
                     f"5,400 the two generators of a terminal that has trained), {per:,.0f} B of "
                     "peak RSS (the peak is the final `models/terminals.safetensors`, which "
                     "stacks every terminal's model: 23 kB each).")
    lines.append("\nColumns: *per round* is the participation; *train per round* the run's "
                 "own training clock (local training, exchange) per round; *wall per round* "
                 "the median time between rows (evaluation, checkpoint and metrics included); "
                 "*set-up* everything between the imports and round 1's training; *whole "
                 "process* a fresh `osmotic holonic run --config` from start to exit. In "
                 "brackets, the process's CPU time (user + system) for the same span: on a "
                 "machine whose load exceeds its cores a one-thread run waits for a core, and "
                 "CPU time is what the span costs when it does not.")
    write_report(RESULTS, "\n".join(lines) + "\n") if not args.quick else print(
        "\n".join(lines))


if __name__ == "__main__":
    main()
