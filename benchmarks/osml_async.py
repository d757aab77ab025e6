"""Asynchronous OSM-L: the paper's `complex` experiment with stragglers, the diffuser waiting for
every agent (sync) or answering each batch once all but the slowest have sent (buffered).

A `clock:` block gives a seeded 10 % of the agents (one of the five) a speed ten times lower;
the others compute one window per simulated second, with no link delay, so one batch of 50
windows lasts 50 simulated seconds, 500 for the straggler. `sync` waits for it at every batch;
`buffered` with B = agents − 1 answers each batch when the four others have sent, using the
straggler's embedding of the same steps from the previous epoch (in the first epoch, leaving it
out). For each seed it reports the sub-contexts found, the test context accuracy and rank
score, the simulated time per epoch and the share of late agent-batches (docs/osml.md,
"Asynchronous agents"). Writes `benchmarks/results/osml_async.md` (under a minute on a quiet
2-core machine).

    .venv/bin/python benchmarks/osml_async.py [--seeds 0 1 2] [--stragglers 0.1]
        [--factor 10] [--out F]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

from common import write_report

from osmotic.osml.experiments import EXPERIMENTS, PAPER_DATA, CsvSource, GeneratedSource
from osmotic.osml.trainer import batch_durations, train_osml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "osml_async.md"
EXPECTED = ["0 1", "2 3 4"]


def _groups(s: dict[str, Any]) -> list[str]:
    return sorted(" ".join(g["agents"]) for g in s["subcontexts"])


def _found(s: dict[str, Any]) -> str:
    groups = ", ".join("{" + ",".join(g["agents"]) + "}" for g in s["subcontexts"]) or "none"
    return groups + (f"; alone: {','.join(s['unclustered'])}" if s["unclustered"] else "")


def run(seed: int, settings: dict[str, Any], paper: bool) -> tuple[dict[str, Any], float]:
    exp = EXPERIMENTS["complex"]
    source = (CsvSource.paper(PAPER_DATA, exp.context) if paper
              else GeneratedSource(exp.context, seed))
    train, test = source.load(10)
    config = exp.config(seed=seed, **settings)
    c0 = time.process_time()
    summary = train_osml(config, train, test, progress=False).summary
    return summary, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--stragglers", type=float, default=0.1)
    ap.add_argument("--factor", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    paper = PAPER_DATA.is_dir()
    exp = EXPERIMENTS["complex"]
    agents = list(exp.agents)
    clock = {"stragglers": args.stragglers, "straggler_factor": args.factor}
    settings = {"sync": {"clock": clock},
                f"buffered, B = {len(agents) - 1}": {"clock": clock, "aggregation": "buffered",
                                                     "buffer": len(agents) - 1}}
    load_before, t0 = os.getloadavg(), time.perf_counter()
    rows: list[dict[str, Any]] = []
    batches = 0
    cpu = 0.0
    for seed in args.seeds:
        durations = batch_durations(exp.config(seed=seed, clock=clock), agents)
        slow = [a for a, d in zip(agents, durations) if d > min(durations)]
        for label, setting in settings.items():
            s, secs = run(seed, setting, paper)
            cpu += secs
            row = {"setting": label, "seed": seed, "slow": ",".join(slow) or "none",
                   "found": _found(s), "right": _groups(s) == EXPECTED,
                   "acc": s["context_accuracy"], "rank": s["rank_score"],
                   "epoch_time": s["sim_time"] / exp.config().epochs,
                   "late": s.get("late_share", 0.0), "cpu": secs}
            rows.append(row)
            if setting.get("aggregation", "sync") == "sync":
                batches = round(row["epoch_time"] / max(durations))
            print(f"{label} seed {seed} (slow: {row['slow']}): {row['found']} acc "
                  f"{row['acc']:.4f} rank {row['rank']:.4f} {row['epoch_time']:.0f} s/epoch "
                  f"late {row['late']:.2f}", flush=True)
    load_after, wall = os.getloadavg(), time.perf_counter() - t0

    means = [("| setting | sub-contexts {0,1}, {2,3,4} found | context accuracy | "
              "rank score | simulated s per epoch | late agent-batches |"), "|" + "---|" * 6]
    for label in settings:
        group = [r for r in rows if r["setting"] == label]
        means.append(f"| {label} | {sum(r['right'] for r in group)}/{len(group)} | "
                     f"{statistics.mean(r['acc'] for r in group):.4f} | "
                     f"{statistics.mean(r['rank'] for r in group):.4f} | "
                     f"{statistics.mean(r['epoch_time'] for r in group):.0f} | "
                     f"{statistics.mean(r['late'] for r in group):.2f} |")
    lines = [("| setting | seed | straggler | sub-contexts found | context accuracy | "
              "rank score | simulated s per epoch | late agent-batches | CPU s |"),
             "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['seed']} | {r['slow']} | {r['found']} | "
                     f"{r['acc']:.4f} | {r['rank']:.4f} | {r['epoch_time']:.0f} | "
                     f"{r['late']:.2f} | {r['cpu']:.1f} |")
    data = ("the paper's CSV files" if paper else
            "generated data (the paper's files were not found), the run's seed")
    text = (f"# Asynchronous OSM-L: the complex experiment with a straggler\n\n"
            f"Command: `.venv/bin/python benchmarks/osml_async.py`. Data: {data}. The "
            f"experiment's preset (agents {', '.join(agents)}, {exp.config().epochs} epochs, "
            f"batches of {exp.config().batch_size} windows, {batches} per epoch) with "
            f"`clock: {{stragglers: {args.stragglers:g}, straggler_factor: {args.factor:g}}}`: "
            f"speed 1 window per simulated second and no delay for every agent, a seeded "
            f"{args.stragglers:.0%} of them ({len(slow)} of {len(agents)}) "
            f"{args.factor:g} times slower. 'sync': the diffuser waits for every agent at "
            f"every batch (the numbers are those of the run without a clock, bit for bit). "
            f"'buffered': it answers each batch once {len(agents) - 1} agents have sent, "
            f"with the straggler's embedding of the same steps from the previous epoch "
            f"(left out in the first); every agent aligns to its row of that answer. "
            f"Simulated time counts the training batches only (not clusterings or "
            f"evaluation). Metrics on the test split.\n\n"
            f"Machine load (1, 5, 15 min) before {tuple(round(x, 2) for x in load_before)}, "
            f"after {tuple(round(x, 2) for x in load_after)}; {len(rows)} runs, {wall:.0f} s "
            f"wall, {cpu:.0f} s CPU of training.\n\n"
            f"## Mean over seeds {', '.join(map(str, args.seeds))}\n\n"
            + "\n".join(means) + "\n\n## Per seed\n\n" + "\n".join(lines) + "\n")
    write_report(args.out, text)


if __name__ == "__main__":
    main()
