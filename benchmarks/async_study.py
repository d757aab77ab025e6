"""Asynchronous rounds: synchronous FedAvg against buffered aggregation (FedBuff) when 10 % of
the terminals are stragglers, on a simulated clock.

Setting: a FedAvg holarchy (one aggregating root over 100 terminals), participation 0.1 (10
terminals drawn per synchronous round, so 10 in flight for the buffered head), sklearn's
digits split iid (about 14 training samples per terminal), the `mlp` model, E = 5 local epochs
of SGD (lr 0.1, batch 16). Clock: every terminal computes 1 sample per simulated second, 10 %
of them (a seeded draw) 10 times slower, no link delay. The buffered head aggregates every
B = 5 arrivals (half of those in flight), staleness exponent 0.5.

Measured, per seed: the synchronous run's final test accuracy of the root's model after
`--rounds` rounds and its total simulated time T_sync; the simulated time at which the
buffered run's root model first reaches 95 % of that accuracy; their ratio (target <= 0.5).
The buffered run goes on for `--buffered-rounds` aggregations (as many as it takes to cover
T_sync, here), so the figure shows both over the same simulated time.

    .venv/bin/python benchmarks/async_study.py   # writes results/async.md, docs/img/async.png
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from common import load, per_op_us

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "async.md"
FIGURE = REPO / "docs" / "img" / "async.png"
SHARE = 0.95


def config(seed: int, rounds: int, aggregation: str) -> Any:
    from osmotic.holarchy.builders import fedavg
    from osmotic.holonic.config import HolonicConfig

    return HolonicConfig(
        holarchy=fedavg(100).to_dict(), data="digits", model="mlp", distribution="iid",
        participation=0.1, local_epochs=5, lr=0.1, batch_size=16, rounds=rounds, threads=1,
        clock={"stragglers": 0.1, "straggler_factor": 10}, aggregation=aggregation,
        buffer=5 if aggregation == "buffered" else None, staleness_exponent=0.5, seed=seed)


def curve(run_dir: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{"round": r["round"], "sim_time": r["sim_time"], "accuracy": r["root_test_accuracy"],
             "staleness": r.get("staleness", 0.0)} for r in rows]


def one_seed(seed: int, rounds: int, buffered_rounds: int, out: Path) -> dict[str, Any]:
    from osmotic.engines.inprocess import cpu_threads
    from osmotic.holonic.runner import load_data, run

    with cpu_threads(1):
        data = load_data(config(seed, rounds, "sync"))
        start = time.perf_counter()
        run(config(seed, rounds, "sync"), out / f"sync-{seed}", data, progress=False)
        run(config(seed, buffered_rounds, "buffered"), out / f"buffered-{seed}", data,
            progress=False)
        wall = time.perf_counter() - start
    sync, buffered = curve(out / f"sync-{seed}"), curve(out / f"buffered-{seed}")
    final, total = sync[-1]["accuracy"], sync[-1]["sim_time"]
    target = SHARE * final
    reach = next((r for r in buffered if r["accuracy"] >= target), None)
    sync_reach = next(r for r in sync if r["accuracy"] >= target)
    within = [r for r in buffered if r["sim_time"] <= total]
    return {"seed": seed, "sync_final": final, "target": target, "sync_total": total,
            "sync_reach": sync_reach["sim_time"],
            "buffered_reach": None if reach is None else reach["sim_time"],
            "buffered_reach_round": None if reach is None else reach["round"],
            "ratio": None if reach is None else reach["sim_time"] / total,
            "buffered_at_total": within[-1]["accuracy"] if within else None,
            "buffered_covers": buffered[-1]["sim_time"] >= total,
            "staleness": sum(r["staleness"] for r in buffered) / len(buffered),
            "wall": wall, "sync": sync, "buffered": buffered}


def figure(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    styles = ["-", "--", ":"]
    for i, r in enumerate(results):
        style = styles[i % len(styles)]
        for kind, colour in (("sync", "tab:blue"), ("buffered", "tab:orange")):
            pts = [p for p in r[kind] if p["sim_time"] <= r["sync_total"]]
            ax.plot([p["sim_time"] / 1000 for p in pts], [p["accuracy"] for p in pts],
                    style, color=colour, lw=1.2,
                    label=f"{kind}, seed {r['seed']}")
    ax.set_xlabel("simulated time (thousand seconds)")
    ax.set_ylabel("test accuracy of the root's model")
    ax.set_title("FedAvg, 100 terminals, 10 drawn; 10 % stragglers 10x slower\n"
                 "synchronous rounds vs buffered aggregation (B = 5)", fontsize=10)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(results: list[dict[str, Any]], args: argparse.Namespace, cpu: float) -> str:
    import torch

    def t(x: float | None) -> str:
        return "not reached" if x is None else f"{x:,.0f}"

    lines = [
        "# Asynchronous rounds: synchronous FedAvg vs buffered aggregation",
        "",
        ("Written by `benchmarks/async_study.py`. FedAvg over 100 terminals, participation 0.1 "
         "(10 drawn per round, 10 in flight), digits iid, `mlp`, E = 5, lr 0.1, batch 16. "
         "Simulated clock: speed 1 sample/s, 10 % stragglers 10x slower, no delay. Buffered: "
         f"B = 5, staleness exponent 0.5. Sync: {args.rounds} rounds; buffered: "
         f"{args.buffered_rounds} aggregations. Accuracy: the root's model on the 359 held-out "
         "images."),
        "",
        (f"Machine: {len(os.sched_getaffinity(0))} cores, torch {torch.__version__}, Python "
         f"{platform.python_version()}, load average (1, 5, 15 min) before {args.load_before}, "
         f"after {load()}; one small op {per_op_us():.1f} µs; {cpu / 60:.1f} CPU-minutes."),
        "",
        ("| seed | sync final accuracy | target (95 %) | sync total sim. time (s) | sync reaches "
         "target (s) | buffered reaches target (s) | ratio to sync total | ratio to sync "
         "reaching target | buffered accuracy at sync's total time | mean staleness | wall (s) |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = "–" if r["ratio"] is None else f"{r['ratio']:.3f}"
        own = "–" if r["ratio"] is None else f"{r['buffered_reach'] / r['sync_reach']:.3f}"
        at_total = "–" if r["buffered_at_total"] is None else f"{r['buffered_at_total']:.3f}"
        lines.append(
            f"| {r['seed']} | {r['sync_final']:.3f} | {r['target']:.3f} | {t(r['sync_total'])} "
            f"| {t(r['sync_reach'])} | {t(r['buffered_reach'])} (aggregation "
            f"{r['buffered_reach_round']}) | {ratio} | {own} | {at_total}"
            f"{'' if r['buffered_covers'] else ' (ran shorter)'} | {r['staleness']:.2f} | "
            f"{r['wall']:.1f} |")
    ratios = [r["ratio"] for r in results if r["ratio"] is not None]
    own = [r["buffered_reach"] / r["sync_reach"] for r in results if r["ratio"] is not None]
    if ratios:
        lines += ["", (f"Ratio (buffered time to 95 % of sync's final accuracy / sync's total "
                   f"time): mean {sum(ratios) / len(ratios):.3f}, worst {max(ratios):.3f} over "
                   f"{len(ratios)} of {len(results)} seeds (target <= 0.5). Against the time "
                   f"the synchronous run itself first reaches that accuracy: mean "
                   f"{sum(own) / len(own):.3f}, worst {max(own):.3f}.")]
    lines += ["", "![accuracy against simulated time](../../docs/img/async.png)", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=60, help="synchronous rounds")
    parser.add_argument("--buffered-rounds", type=int, default=600, help="buffered aggregations")
    parser.add_argument("--print-only", action="store_true")
    args = parser.parse_args()
    args.load_before = load()
    start = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        results = [one_seed(s, args.rounds, args.buffered_rounds, Path(tmp))
                   for s in args.seeds]
    text = report(results, args, time.process_time() - start)
    print(text)
    if not args.print_only:
        RESULTS.write_text(text)
        figure(results, FIGURE)
        print(f"wrote {RESULTS} and {FIGURE}")


if __name__ == "__main__":
    main()
