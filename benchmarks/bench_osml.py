"""OSM-L speed and scaling benchmark (issue 2, section 6 and acceptance point 5).

Two questions, one markdown report (`benchmarks/results/osml.md`):

1. Is `osmotic osml reproduce complex` at least 50x faster than the paper's published simulator
   (381 s of training on these 2-core machines), i.e. under 8 s of training? `simple` and
   `robust` are timed too. Training seconds are the trainer's own `train_seconds` (no set-up, no
   evaluation), median over seeds 0, 1, 2, on the paper's CSV files when they are present.
2. How do time and memory grow with the number of agents? 8, 64 and 512 agents (the simple
   context's generator replicated with different seeds, 4 agents per replica), 2 epochs each,
   every size in a fresh process so that its max RSS is its own, compared with a process that
   only imported the package.

Wall times on a shared machine depend on what else runs, so every row also reports CPU/wall:
near 1.0 the run had a core to itself, near 0.5 it shared one.

    .venv/bin/python benchmarks/bench_osml.py            # full run, writes results/osml.md
    .venv/bin/python benchmarks/bench_osml.py --quick    # smoke run (< 60 s), prints only
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from osmotic.data.synthetic import generate_context
from osmotic.data.timeseries import Series, load_pair
from osmotic.osmosis.config import OsmlConfig
from osmotic.osmosis.experiments import EXPERIMENTS
from osmotic.osmosis.trainer import train_osml

REPO = Path(__file__).resolve().parents[1]
PAPER_DATA = REPO / ".." / "shared" / "data" / "osml-paper"
RESULTS = REPO / "benchmarks" / "results" / "osml.md"

PUBLISHED_S = {"simple": "15–23", "robust": "48", "complex": "381"}
"""Training seconds of the paper's published simulator on these machines (issue 2, §7)."""
COMPLEX_PUBLISHED_S = 381.0
TARGET_S = 8.0
MEMORY_LIMIT_MIB = 4096
AGENTS_PER_REPLICA = 4  # 0, 1, M0, M1 of the simple context
SCALING_EPOCHS = 2


@dataclass
class Timing:
    """One experiment over several seeds: training seconds and what the whole run cost."""

    name: str
    data: str
    train_s: list[float]
    run_s: list[float]
    cpu_share: list[float]


def load_context(context: str, seed: int) -> tuple[Series, Series, str]:
    """The paper's CSV pair for `context` if present, else a generated one; says which."""
    folder = PAPER_DATA / f"{context}-context"
    train_csv, test_csv = folder / "train_data.csv", folder / "test_data.csv"
    if train_csv.is_file() and test_csv.is_file():
        train, test = load_pair(train_csv, test_csv, OsmlConfig().window)
        return train, test, "paper CSV"
    train, test = generate_context(context, seed)
    return train, test, "generated (paper CSV not found)"


def cpu_seconds() -> float:
    """User + system CPU time of this process: unlike wall time, it ignores other jobs' load."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def time_experiment(name: str, seeds: list[int]) -> Timing:
    """`reproduce <name>`'s training, minus its run directory (files and plots are not training)."""
    exp = EXPERIMENTS[name]
    timing = Timing(name, "", [], [], [])
    for seed in seeds:
        train, test, timing.data = load_context(exp.context, seed)
        wall, cpu = time.perf_counter(), cpu_seconds()
        result = train_osml(exp.config(seed=seed), train, test, show_progress=False)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        timing.train_s.append(result.summary["train_seconds"])
        timing.run_s.append(wall)
        timing.cpu_share.append(cpu / wall)
    return timing


def replicated(replicas: int) -> tuple[Series, Series]:
    """`replicas` independent draws of the simple context, agent ids `s<seed>_<id>`."""
    train: Series = {}
    test: Series = {}
    for seed in range(replicas):
        tr, te = generate_context("simple", seed)
        train.update({f"s{seed}_{a}": v for a, v in tr.items()})
        test.update({f"s{seed}_{a}": v for a, v in te.items()})
    return train, test


def scaling_worker(replicas: int, epochs: int) -> dict[str, Any]:
    """Run in a fresh process: train `replicas` x 4 agents, report times per epoch and max RSS.

    With 0 replicas it only reports the RSS of a process that imported the package: the
    baseline the other sizes' growth is measured against."""
    out: dict[str, Any] = {"agents": replicas * AGENTS_PER_REPLICA}
    if replicas:
        train, test = replicated(replicas)
        marks: list[tuple[float, float]] = []  # (wall clock, cumulative train seconds) per epoch
        start, cpu = time.perf_counter(), cpu_seconds()
        train_osml(OsmlConfig(epochs=epochs), train, test, show_progress=False,
                   log=lambda row: marks.append((time.perf_counter(), row["train_seconds"])))
        wall = time.perf_counter() - start
        out.update(epoch_breakdown(start, marks), wall_s=wall, cpu_share=(cpu_seconds() - cpu) / wall)
    out["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return out


def epoch_breakdown(start: float, marks: list[tuple[float, float]]) -> dict[str, list[float]]:
    """Per epoch: training seconds, and everything else (evaluation; set-up too in epoch 1)."""
    train, other, clock, done = [], [], start, 0.0
    for when, cumulative in marks:
        train.append(cumulative - done)
        other.append(when - clock - train[-1])
        clock, done = when, cumulative
    return {"train_s": train, "other_s": other}


def run_worker(replicas: int, epochs: int) -> dict[str, Any]:
    """`scaling_worker` in a fresh interpreter, so max RSS belongs to that size alone."""
    cmd = [sys.executable, __file__, "--worker", str(replicas), "--epochs", str(epochs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"scaling worker ({replicas} replicas) failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table: cells are already formatted, so each table decides its own precision."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def experiments_table(timings: list[Timing]) -> str:
    """Wall-clock verdicts, plus train s x CPU/wall: roughly what an idle core would take."""
    header = ["experiment", "data", "train s (median)", "runs (train s)", "≈ idle-core train s",
              "whole run s", "CPU/wall", "published s", "speed-up", "< 8 s"]
    rows = []
    for t in timings:
        med = statistics.median(t.train_s)
        idle = statistics.median(s * c for s, c in zip(t.train_s, t.cpu_share))
        speedup, target = "", ""
        if t.name == "complex":
            speedup = f"{COMPLEX_PUBLISHED_S / med:.0f}x"
            target = "pass" if med < TARGET_S else "FAIL"
        rows.append([t.name, t.data, f"{med:.2f}", ", ".join(f"{s:.2f}" for s in t.train_s),
                     f"{idle:.2f}", f"{statistics.median(t.run_s):.1f}",
                     f"{min(t.cpu_share):.2f}–{max(t.cpu_share):.2f}", PUBLISHED_S[t.name],
                     speedup, target])
    return table(header, rows)


def scaling_table(sizes: list[dict[str, Any]], baseline_mib: float) -> str:
    """One row per size; evaluation that takes a minute or more is flagged, not hidden."""
    header = ["agents", "train s/epoch", "wall s/epoch", "eval s: epoch 1 (+ set-up) / epoch 2",
              "CPU/wall", "max RSS MiB", "growth over baseline MiB", "fits 4 GiB"]
    rows = []
    for r in sizes:
        epochs = len(r["train_s"])
        ev1, ev2 = r["other_s"][0], r["other_s"][-1]
        note = " (minutes)" if max(ev1, ev2) >= 60 else ""
        rows.append([str(r["agents"]), f"{sum(r['train_s']) / epochs:.2f}",
                     f"{r['wall_s'] / epochs:.2f}", f"{ev1:.1f} / {ev2:.1f}{note}",
                     f"{r['cpu_share']:.2f}", f"{r['maxrss_mib']:.0f}",
                     f"{r['maxrss_mib'] - baseline_mib:.0f}",
                     "pass" if r["maxrss_mib"] <= MEMORY_LIMIT_MIB else "FAIL"])
    return table(header, rows)


def machine() -> str:
    """What the numbers depend on: cores, torch, and how busy the machine was."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC · {len(os.sched_getaffinity(0))} "
            f"cores (nproc) · torch {torch.__version__} · Python {platform.python_version()} · "
            f"load average (1, 5, 15 min) at start: {load}")


def report(header: str, seeds: list[int], timings: list[Timing], scaling: list[dict[str, Any]],
           baseline_mib: float, seconds: float) -> str:
    """The markdown written to results/osml.md: settings and caveats next to the numbers."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"""# OSM-L benchmark

{header}; at end: {load}. Benchmark took {seconds:.0f} s.
Command: `.venv/bin/python benchmarks/bench_osml.py`. One intra-op thread per run (the default).

## The paper's experiments: training time

Seeds {", ".join(map(str, seeds))}, default config (`reproduce <name>`'s settings). Training
seconds exclude set-up and the per-epoch evaluation on test data; "whole run s" includes both.
The verdict uses wall-clock training seconds as measured; "≈ idle-core train s" scales them by
the run's CPU/wall share, an estimate of what the same run takes without competing jobs.
Speed-up is over the published simulator's {COMPLEX_PUBLISHED_S:.0f} s for *complex*; the
target is under {TARGET_S:.0f} s.

{experiments_table(timings)}

## Scaling with the number of agents

The simple context's generator replicated with seeds 0, 1, … (agents `s<seed>_0`, `s<seed>_1`,
`s<seed>_M0`, `s<seed>_M1`), {SCALING_EPOCHS} epochs, default config, each size in a fresh
process. "eval s" is wall time per epoch outside training: the test evaluation (all-pairs rank
score, O(agents² · steps²) within each sub-context) and, in epoch 1, set-up. Before the first
clustering (epoch {OsmlConfig().cluster_every}) all agents form one context, so epoch 1's
evaluation scores every pair; epoch 2's only the sub-contexts found. Training seconds include
that clustering (the trainer counts it as training). Baseline: a process that only imported the
package, max RSS {baseline_mib:.0f} MiB; "fits 4 GiB" judges the whole process's max RSS.

{scaling_table(scaling, baseline_mib)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: one seed, 8 and 64 "
                        "agents; prints the report without writing it")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # replicas, internal
    parser.add_argument("--epochs", type=int, default=SCALING_EPOCHS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(scaling_worker(args.worker, args.epochs)))
        return
    started, header = time.perf_counter(), machine()
    seeds = [0] if args.quick else [0, 1, 2]
    timings = [time_experiment(name, seeds) for name in ("complex", "simple", "robust")]
    replicas = [2, 16] if args.quick else [2, 16, 128]
    baseline = run_worker(0, 0)["maxrss_mib"]
    scaling = [run_worker(r, SCALING_EPOCHS) for r in replicas]
    text = report(header, seeds, timings, scaling, baseline, time.perf_counter() - started)
    print(text)
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
        print(f"written to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
