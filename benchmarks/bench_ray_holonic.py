"""Holonic Learning on Ray vs in-process (issue 4, section 3): seconds per round, peak memory.

100 terminals (Dirichlet alpha = 0.5 over the 5,000-image pool less a 1,000-image hold-out;
10 edge groups of 10 under a cloud, K = 2), E local epochs per round (SGD, batch 32), through
`osmotic.holonic.runner.run`, the code the CLI runs. Engines: in-process, and Ray with 2 actors
(50 terminals each; the driver keeps the schedule and sends parameters down every round).

Each engine runs in a fresh process, so its peak RSS is its own. Round 1 is a warm-up; the
table gives the mean wall seconds of rounds 2..R-1 (round R is evaluated, the others are not).
For Ray, the actors' peak RSS (VmHWM, summed) is read while they run. The machine's load
average is recorded before and after: on a shared machine wall times move with it.

    .venv/bin/python benchmarks/bench_ray_holonic.py            # writes results/ray_holonic.md
    .venv/bin/python benchmarks/bench_ray_holonic.py --epochs 5 --rounds 4
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_ray import descendants, read_proc

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "ray_holonic.md"
ENGINES = ("inprocess", "ray")


def _actor_peak_mib() -> float:
    """Summed peak RSS (VmHWM) of this run's Ray actor processes (0 when there are none)."""
    procs = (read_proc(pid) for pid in descendants(os.getpid()))
    return sum(p.peak_mib for p in procs if p is not None and p.name.startswith("ray::Host"))


def case(engine: str, rounds: int, epochs: int) -> dict[str, Any]:
    """Runs in the child process: one run, a timestamp per round."""
    import torch

    torch.set_num_threads(1)
    from osmotic.holarchy.builders import hierarchical
    from osmotic.holonic.config import HolonicConfig
    from osmotic.holonic.runner import load_data, run

    if engine == "ray":
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    holarchy = hierarchical([list(range(g, g + 10)) for g in range(0, 100, 10)])
    config = HolonicConfig(holarchy=holarchy.to_dict(), distribution="dirichlet", alpha=0.5,
                           rounds=rounds, local_epochs=epochs, eval_every=rounds, engine=engine,
                           actors=2)
    data = load_data(config)
    stamps: list[float] = []
    actors: list[float] = []

    def log(row: dict[str, Any]) -> None:
        stamps.append(time.perf_counter())
        actors.append(_actor_peak_mib())

    with tempfile.TemporaryDirectory() as out:
        summary = run(config, Path(out) / "run", data, progress=False, log=log)
    timed = stamps[-2] - stamps[0]  # rounds 2 .. R-1: no warm-up, no evaluation
    return {"engine": engine, "seconds_per_round": timed / (rounds - 2),
            "driver_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "actors_peak_mib": max(actors), "accuracy": summary["mean_test_accuracy"]}


def measure(engine: str, rounds: int, epochs: int) -> dict[str, Any]:
    """`case` in a fresh interpreter."""
    out = subprocess.run([sys.executable, __file__, "--case", engine, "--rounds", str(rounds),
                          "--epochs", str(epochs)], check=True, capture_output=True, text=True,
                         cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict[str, Any]], rounds: int, epochs: int, load: tuple[str, str]) -> str:
    base = rows[0]["seconds_per_round"]
    title = (f"# Holonic Learning on Ray: seconds per round ({dt.date.today()}, "
             f"{platform.machine()}, {os.cpu_count()} CPUs)")
    setup = (f"100 terminals, Dirichlet alpha = 0.5, 10 groups of 10, E = {epochs}, "
             f"{rounds} rounds (mean of rounds 2 to {rounds - 1}); one thread per process; "
             "Ray: 2 actors on a local instance with 2 CPUs.")
    header = ("| engine | wall s / round | vs in-process | driver peak RSS (MiB) | "
              "actors' peak RSS, summed (MiB) | final mean test acc. |")
    lines = [title, "", setup, "",
             f"Load average (1, 5, 15 min) before: {load[0]}; after: {load[1]}.", "",
             header, "|---|---|---|---|---|---|"]
    for r in rows:
        actors = f"{r['actors_peak_mib']:.0f}" if r["actors_peak_mib"] else "-"
        lines.append(f"| {r['engine']} | {r['seconds_per_round']:.2f} | "
                     f"{base / r['seconds_per_round']:.2f}x | {r['driver_peak_mib']:.0f} | "
                     f"{actors} | {r['accuracy']:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", choices=ENGINES, help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=4, help="rounds per run (>= 3)")
    p.add_argument("--epochs", type=int, default=1, help="local epochs E per round")
    args = p.parse_args()
    if args.rounds < 3:
        p.error("--rounds must be >= 3 (a warm-up round and an evaluated last round)")
    if args.case:
        print(json.dumps(case(args.case, args.rounds, args.epochs)))
        return
    before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = [measure(e, args.rounds, args.epochs) for e in ENGINES]
    after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = table(rows, args.rounds, args.epochs, (before, after))
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
