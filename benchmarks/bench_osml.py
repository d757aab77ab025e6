"""OSM-L speed and scaling benchmark.

Two questions, one markdown report (`benchmarks/results/osml.md`) and one plot
(`docs/img/scaling.png`):

1. How fast is an epoch of `osmotic osml reproduce <name>` against a plain, unbatched PyTorch
   loop of the same model (one `torch.nn.GRU` per agent, agents one after another, own Adam
   each) timed in the same run, on the same machine? Ours: the trainer's own `train_seconds`
   per epoch (includes the clusterings), median over seeds 0, 1, 2. The published simulator
   cannot be run here (no licence to vendor it); measured side by side on a 2-core machine of
   this kind it took 1.63–1.81 s per epoch of *complex*, so *complex* is judged against ≤ 35 ms
   per epoch (≥ 50x).
2. How do time and memory grow with the number of agents? The simple context's generator
   replicated (4 agents per replica), each size in a fresh process so that its max RSS is its
   own: one training epoch and, up to `--discovery-max` agents, one more epoch with a
   sub-context discovery; the training step's FLOP rate against the machine's fp32 matmul rate
   measured in the same process; the log-log slope of time against agents from 4,096 up.
   Targets: an epoch with a discovery ≤ 12 s at 4,096 agents, ≤ 60 s at 16,384, ≤ 300 s and
   ≤ 8 GiB at 65,536; slope ≤ that of N log N.

Every report carries the machine's load and the cost of one small operation (µs): absolute
times from different machines compare only through them, ratios within one run directly.

    .venv/bin/python benchmarks/bench_osml.py            # full run, writes results/osml.md
    .venv/bin/python benchmarks/bench_osml.py --quick    # smoke run, prints only
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import machine_line, per_op_us

# isort: off
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch, as the osmotic command does
import torch
import torch.nn.functional as F
from torch import nn
# isort: on

from osmotic.data.synthetic import generate_context
from osmotic.data.timeseries import Series, load_pair
from osmotic.osml.config import OsmlConfig
from osmotic.osml.experiments import EXPERIMENTS
from osmotic.osml.trainer import train_osml

REPO = Path(__file__).resolve().parents[1]
PAPER_DATA = REPO / ".." / "shared" / "data" / "osml-paper"
RESULTS = REPO / "benchmarks" / "results" / "osml.md"

PUBLISHED_COMPLEX_S = (1.63, 1.81)
"""The published simulator's seconds per epoch of *complex*, run side by side with osmotic on a
2-core machine of this kind (external: it cannot be vendored)."""
COMPLEX_TARGET_S = 0.035  # ≥ 50x the published simulator
SCALING_TARGETS = {4096: (12.0, None), 16384: (60.0, None), 65536: (300.0, 8192)}
"""Agents: (seconds for an epoch with a discovery, max RSS MiB or None)."""
AGENTS_PER_REPLICA = 4  # 0, 1, M0, M1 of the simple context
PLAIN_EPOCHS = 2
IMG = REPO / "docs" / "img" / "scaling.png"


@dataclass
class Timing:
    """One experiment over several seeds: training seconds and what the whole run cost."""

    name: str
    data: str
    train_s: list[float]
    run_s: list[float]
    cpu_share: list[float]
    train_cpu_s: list[float] = field(default_factory=list)
    epochs: int = 0
    plain_s_per_epoch: float = 0.0
    plain_cpu_s_per_epoch: float = 0.0


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
    timing = Timing(name, "", [], [], [], epochs=exp.config().epochs)
    for seed in seeds:
        train, test, timing.data = load_context(exp.context, seed)
        wall, cpu = time.perf_counter(), cpu_seconds()
        result = train_osml(exp.config(seed=seed), train, test, progress=False)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        timing.train_s.append(result.summary["train_seconds"])
        timing.train_cpu_s.append(result.summary["train_cpu_seconds"])
        timing.run_s.append(wall)
        timing.cpu_share.append(cpu / wall)
        if seed == seeds[0]:
            timing.plain_s_per_epoch, timing.plain_cpu_s_per_epoch = plain_loop_s_per_epoch(
                exp.config(seed=seed), train)
    return timing


class PlainAgent(nn.Module):
    """The same model as `OsmoticAgent` with reconstruction, written as a PyTorch user would:
    `torch.nn.GRU`, a projection to the sphere, a private decoder."""

    def __init__(self, k: int, config: OsmlConfig):
        super().__init__()
        self.gru = nn.GRU(k, config.hidden, batch_first=True)
        self.project = nn.Linear(config.hidden, config.dim)
        self.decoder = nn.Sequential(nn.Linear(config.dim, 32), nn.Tanh(),
                                     nn.Linear(32, config.window * k))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.project(self.gru(x)[1][0])
        e = F.normalize(e, dim=-1) * e.shape[-1] ** 0.5
        return e, F.mse_loss(self.decoder(e), x.flatten(1))


def plain_loop_s_per_epoch(config: OsmlConfig, train: Series) -> tuple[float, float]:
    """Wall and CPU seconds per epoch of the in-run baseline (one thread, as a small model
    would be run): every agent its own model and Adam, trained one
    after another on each batch; the context is the mean of all agents' embeddings (no
    clustering: the baseline does less than a real run)."""
    from osmotic.osml.shard import windows

    torch.manual_seed(config.seed)
    ids = config.agents or list(train)
    xs = [windows((train[a] - train[a].mean(0)) / (train[a].std(0) + 1e-8), config.window)
          for a in ids]
    agents = [PlainAgent(x.shape[-1], config) for x in xs]
    opts = [torch.optim.Adam(m.parameters(), lr=config.lr) for m in agents]
    n = len(xs[0])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    start, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(PLAIN_EPOCHS):
        for s in range(0, n, config.batch_size):
            outs = [m(x[s : s + config.batch_size]) for m, x in zip(agents, xs)]
            context = torch.stack([e.detach() for e, _ in outs]).mean(0)
            for (e, rec), opt in zip(outs, opts):
                loss = config.alpha * F.mse_loss(e, context) + (1 - config.alpha) * rec
                opt.zero_grad()
                loss.backward()
                opt.step()
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    torch.set_num_threads(before)
    return wall / PLAIN_EPOCHS, cpu / PLAIN_EPOCHS


def replicated(replicas: int) -> tuple[Series, Series]:
    """`replicas` independent draws of the simple context, agent ids `s<seed>_<id>`."""
    train: Series = {}
    test: Series = {}
    for seed in range(replicas):
        tr, te = generate_context("simple", seed)
        train.update({f"s{seed}_{a}": v for a, v in tr.items()})
        test.update({f"s{seed}_{a}": v for a, v in te.items()})
    return train, test


class _NoBar:
    """The progress bar `OsmlJob.step` reports to, showing nothing."""

    def add_task(self, *_: Any, **__: Any) -> int:
        return 0

    def update(self, *_: Any, **__: Any) -> None: ...

    def advance(self, *_: Any, **__: Any) -> None: ...


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The machine's fp32 matmul rate now, with the threads set: best of `repeats` [n, n] @
    [n, n] products (2n³ FLOPs each)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def train_flops(config: OsmlConfig, k: int) -> float:
    """Multiply-add FLOPs (2 per product) of one agent's training step on one batch: the GRU's
    forward (input projection, recurrence) and backward (weight gradients, the recurrence back;
    no input gradient), the projection to d and the reconstruction decoder, forward and both
    gradients. Element-wise work is not counted."""
    B, T, H, d, w = config.batch_size, config.window, config.hidden, config.dim, config.window
    gru_forward = 2 * B * T * (3 * H * k + 3 * H * H)
    gru_backward = 2 * B * T * (3 * H * k + 2 * 3 * H * H)
    dense = 2 * B * (H * d + d * 32 + 32 * w * k)  # project, decoder's two layers
    return gru_forward + gru_backward + 3 * dense


def kept_bytes(job: Any) -> dict[str, float]:
    """What one agent keeps between batches, from the live engine (bytes per agent, fp32):
    parameters, Adam's two moments, its series (train and test), and the embeddings of its
    training windows that the next clustering needs."""
    shard = job.engine.shards[0]
    params = sum(v[0].numel() for v in shard.pop.params.values()) * 4
    series = sum(w.untyped_storage().nbytes() for w in shard.windows.values()) / len(shard.agent_ids)
    return {"parameters": params, "adam": 2 * params, "series": series,
            "clustering embeddings": job.n_train * job.config.dim * 4}


def scaling_worker(replicas: int, discovery: bool, shard_size: int | None,
                   sample: int = 0) -> dict[str, Any]:
    """Run in a fresh process: set up `replicas` x 4 agents, time one training epoch and, with
    `discovery`, one more epoch that clusters; report the max RSS, the training step's FLOP
    rate and the machine's matmul rate with the same threads. No test evaluation (it is no
    part of an epoch's training). With `sample` > 0 (and no discovery) only the epoch's first
    `sample` batches run, and the epoch's seconds are theirs scaled to all batches.

    With 0 replicas it only reports the RSS of a process that imported the package: the
    baseline the other sizes' growth is measured against."""
    out: dict[str, Any] = {"agents": replicas * AGENTS_PER_REPLICA, "discovery": discovery,
                           "shard_size": shard_size}
    if replicas:
        from osmotic.engines.inprocess import cpu_threads
        from osmotic.osml.trainer import OsmlJob, make_engine

        train, test = replicated(replicas)
        config = OsmlConfig(epochs=3, eval_every=3, cluster_every=2 if discovery else 3,
                            shard_size=shard_size)
        work = len(train) * config.batch_size * 3 * config.hidden
        with cpu_threads(config.threads, work):
            out["threads"] = torch.get_num_threads()
            out["matmul_gflops"] = matmul_gflops()
            start, cpu = time.perf_counter(), cpu_seconds()
            job = OsmlJob(config, make_engine(config, train, test), train, test)
            out["setup_s"] = time.perf_counter() - start
            batches = len(job.batches)
            if sample and not discovery:
                job.batches = job.batches[:sample]
            scale = batches / len(job.batches)
            done, done_cpu, epochs, epochs_cpu, clustering = 0.0, 0.0, [], [], []
            for epoch in (1, 2) if discovery else (1,):
                row = job.step(epoch, _NoBar())
                epochs.append((row["train_seconds"] - done) * scale)
                epochs_cpu.append((job.train_cpu_seconds - done_cpu) * scale)
                clustering.append(row["cluster_seconds"])
                done, done_cpu = row["train_seconds"], job.train_cpu_seconds
            wall = time.perf_counter() - start
            out.update(epoch_s=epochs, epoch_cpu_s=epochs_cpu, cluster_s=clustering,
                       cpu_share=(cpu_seconds() - cpu) / wall, kept=kept_bytes(job),
                       batches=batches, sampled=len(job.batches))
            out["gflops"] = train_flops(config, 1) * len(train) * batches / epochs[0] / 1e9
            out["recomputed"] = shard_size is not None and shard_size < len(train)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.update(maxrss_mib=usage.ru_maxrss / 1024, system_s=usage.ru_stime,  # KiB on Linux
               per_op_us=per_op_us(), load=os.getloadavg()[0])
    return out


def run_worker(replicas: int, discovery: bool = False, shard_size: int | None = None,
               timeout: float | None = None, sample: int = 0) -> dict[str, Any]:
    """`scaling_worker` in a fresh interpreter, so max RSS belongs to that size alone. A size
    that fails (out of memory, say) or runs past `timeout` seconds is reported as such, not
    raised: the other sizes stand."""
    cmd = [sys.executable, __file__, "--worker", str(replicas),
           "--shard-size", str(shard_size or 0), "--discovery-max", str(int(discovery)),
           "--sample-batches", str(sample)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"agents": replicas * AGENTS_PER_REPLICA, "failed": f"over {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return {"agents": replicas * AGENTS_PER_REPLICA, "failed": tail,
                "returncode": proc.returncode}
    line = proc.stdout.strip().splitlines()[-1]
    print(line, flush=True)  # each size as it finishes: a later failure loses nothing
    return json.loads(line)


def loglog_slope(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log(value) against log(agents); None for fewer than two."""
    if len(points) < 2:
        return None
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(v) for _, v in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return (sum((x - mx) * (y - my) for x, y in zip(xs, ys))
            / sum((x - mx) ** 2 for x in xs))


def plot_scaling(sizes: list[dict[str, Any]], path: Path) -> None:
    """Seconds per epoch (training; with a discovery) and max RSS against agents, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in sizes if "failed" not in r]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    n = [r["agents"] for r in ok]
    left.loglog(n, [r["epoch_s"][0] for r in ok], "o-", label="training epoch")
    disc = [r for r in ok if r["discovery"]]
    if disc:
        left.loglog([r["agents"] for r in disc], [r["epoch_s"][1] for r in disc], "s-",
                    label="epoch with a discovery")
    ref = ok[0]
    left.loglog(n, [ref["epoch_s"][0] * x / ref["agents"] for x in n], ":", color="grey",
                label="∝ agents")
    left.set(xlabel="agents", ylabel="seconds per epoch (wall)", title="Time")
    left.legend(fontsize=8)
    right.loglog(n, [r["maxrss_mib"] for r in ok], "o-", color="C2")
    right.set(xlabel="agents", ylabel="max RSS, MiB", title="Memory (whole process)")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table: cells are already formatted, so each table decides its own precision."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def experiments_table(timings: list[Timing]) -> str:
    """Seconds per epoch, wall and CPU: ours and the plain per-agent loop (same run). On a
    shared machine CPU seconds are the fairer comparison: they leave out the wait for a core."""
    header = ["experiment", "data", "epochs", "ours: train s/epoch, wall (CPU), median",
              "runs: train s", "CPU/wall", "plain per-agent loop: s/epoch, wall (CPU)",
              "vs plain loop: wall (CPU)", "target"]
    rows = []
    for t in timings:
        wall = statistics.median(t.train_s) / t.epochs
        cpu = statistics.median(t.train_cpu_s) / t.epochs
        target = ""
        if t.name == "complex":
            ok = cpu <= COMPLEX_TARGET_S
            target = (f"≤ {COMPLEX_TARGET_S * 1000:.0f} ms (CPU): {'pass' if ok else 'FAIL'}; "
                      f"published simulator side by side "
                      f"{PUBLISHED_COMPLEX_S[0]}–{PUBLISHED_COMPLEX_S[1]} s "
                      f"= {PUBLISHED_COMPLEX_S[0] / cpu:.0f}–{PUBLISHED_COMPLEX_S[1] / cpu:.0f}x")
        rows.append([t.name, t.data, str(t.epochs), f"{wall:.3f} ({cpu:.3f})",
                     ", ".join(f"{s:.2f}" for s in t.train_s),
                     f"{min(t.cpu_share):.2f}–{max(t.cpu_share):.2f}",
                     f"{t.plain_s_per_epoch:.3f} ({t.plain_cpu_s_per_epoch:.3f})",
                     f"{t.plain_s_per_epoch / wall:.1f}x ({t.plain_cpu_s_per_epoch / cpu:.1f}x)",
                     target])
    return table(header, rows)


def _verdict(r: dict[str, Any]) -> str:
    """The size's target, judged on its epoch with a discovery (without one: not judged)."""
    limit = SCALING_TARGETS.get(r["agents"])
    if limit is None:
        return ""
    seconds, mib = limit
    text = f"≤ {seconds:.0f} s" + (f", ≤ {mib / 1024:.0f} GiB" if mib else "")
    if not r["discovery"]:
        return text + ": not judged (no discovery run)"
    ok = r["epoch_s"][1] <= seconds and (mib is None or r["maxrss_mib"] <= mib)
    return f"{text}: {'pass' if ok else 'FAIL'}"


def scaling_table(sizes: list[dict[str, Any]], baseline_mib: float) -> str:
    """One row per size."""
    header = ["agents", "threads", "parts of", "set-up s", "training epoch s, wall (CPU)",
              "epoch with discovery s, wall (CPU); of which discovery, wall", "CPU/wall", "max RSS MiB",
              "growth over baseline, per agent", "kept, per agent",
              "training GFLOP/s (matmul peak)", "target", "per-op µs, load (at end)"]
    rows = []
    for r in sizes:
        if "failed" in r:
            rows.append([str(r["agents"]), *[""] * 10, f"failed: {r['failed']}", ""])
            continue
        disc = (f"{r['epoch_s'][1]:.2f} ({r['epoch_cpu_s'][1]:.2f}); {r['cluster_s'][1]:.2f}"
                if r["discovery"] else "not run")
        first = f"{r['epoch_s'][0]:.2f} ({r['epoch_cpu_s'][0]:.2f})" + (
            f", from {r['sampled']} of {r['batches']} batches" if r["sampled"] < r["batches"]
            else "")
        kept = r["kept"]
        rows.append([str(r["agents"]), str(r["threads"]),
                     str(r["shard_size"]) if r["recomputed"] else "all",
                     f"{r['setup_s']:.1f}", first, disc,
                     f"{r['cpu_share']:.2f}", f"{r['maxrss_mib']:.0f}",
                     f"{(r['maxrss_mib'] - baseline_mib) * 2**20 / r['agents'] / 1024:.0f} KiB",
                     f"{sum(kept.values()) / 1024:.0f} KiB",
                     (f"{r['gflops']:.1f} ({r['matmul_gflops']:.0f}, "
                      f"{100 * r['gflops'] / r['matmul_gflops']:.0f} %)"),
                     _verdict(r), f"{r['per_op_us']:.1f}, {r['load']:.1f}"])
    return table(header, rows)


def slopes(sizes: list[dict[str, Any]], start: int = 4096) -> str:
    """The log-log slopes of epoch time against agents from `start` up, against N log N's."""
    ok = [r for r in sizes if "failed" not in r and r["agents"] >= start]
    lines = []
    for label, pick in (
            ("training epoch, wall", lambda r: r["epoch_s"][0]),
            ("training epoch, CPU", lambda r: r["epoch_cpu_s"][0]),
            ("epoch with a discovery, wall", lambda r: r["epoch_s"][1] if r["discovery"] else None),
            ("epoch with a discovery, CPU",
             lambda r: r["epoch_cpu_s"][1] if r["discovery"] else None)):
        points = [(r["agents"], pick(r)) for r in ok if pick(r) is not None]
        slope = loglog_slope(points)
        if slope is None:
            lines.append(f"- {label}: fewer than two sizes from {start:,} agents up")
            continue
        nlogn = loglog_slope([(n, n * math.log(n)) for n, _ in points])
        verdict = "within" if slope <= nlogn + 0.05 else "ABOVE"
        lines.append(f"- {label}: slope {slope:.2f} over {', '.join(f'{n:,}' for n, _ in points)}"
                     f" agents; N log N over the same sizes: {nlogn:.2f} ({verdict})")
    return "\n".join(lines)


def report(header: str, seeds: list[int], timings: list[Timing], scaling: list[dict[str, Any]],
           baseline_mib: float, seconds: float) -> str:
    """The markdown written to results/osml.md: settings and caveats next to the numbers."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    kept = next((r["kept"] for r in scaling if "kept" in r), {})
    parts = ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in kept.items())
    return f"""# OSM-L benchmark

{header}; load at end: {load}. Benchmark took {seconds:.0f} s.
Command: `.venv/bin/python benchmarks/bench_osml.py`. Threads: the default (auto: one for
these small experiments; at scale the cores other jobs leave idle, see the threads column).

## The paper's experiments: seconds per training epoch

Seeds {", ".join(map(str, seeds))}, default config (`reproduce <name>`'s settings). Ours: the
trainer's training seconds (clusterings included, set-up and test evaluation excluded) per
epoch. The plain per-agent loop (seed {seeds[0]}, {PLAIN_EPOCHS} epochs, same run, same machine):
every agent its own `torch.nn.GRU` model and Adam, one agent after another, no clustering. The
published simulator cannot be vendored; side by side on a 2-core machine of this kind it took
{PUBLISHED_COMPLEX_S[0]}–{PUBLISHED_COMPLEX_S[1]} s per epoch of *complex* (an external figure,
not from this run), so ≥ 50x is ≤ {COMPLEX_TARGET_S * 1000:.0f} ms per epoch. Judged on CPU
seconds (these runs use one thread): on a shared machine wall seconds include the wait for a core.

{experiments_table(timings)}

## Scaling with the number of agents

The simple context's generator replicated with seeds 0, 1, … (agents `s<seed>_0`, `s<seed>_1`,
`s<seed>_M0`, `s<seed>_M1`), default config, each size in a fresh process, no test evaluation:
set-up (building the agents), one training epoch, and where the discovery column has a number
one more epoch whose training seconds include a sub-context discovery (the agents embed their
training windows once more and the diffuser groups them; after the semicolon that part alone).
CPU seconds (this process, all its threads) beside wall seconds: on a shared machine wall
seconds include the wait for a core. Where a size says "from k of n batches", only the
epoch's first k training batches ran and the epoch's seconds are theirs scaled by n / k. "parts
of": agents trained at a time (`shard_size`; the forward pass then runs twice, once for the
contexts and once with the graph for each part's backward). Baseline: a process that only
imported the package, max RSS {baseline_mib:.0f} MiB; memory targets judge the whole process's
max RSS. "kept": what an agent holds between batches ({parts}); the rest of the growth is the
activations of the agents trained at a time, the clustering's and the allocator's.
GFLOP/s: the training step's matrix products (GRU forward and backward, projection, decoder;
{train_flops(OsmlConfig(), 1) / 1e6:.2f} MFLOP per agent and batch; the repeated forward of
parts not counted) over the training epoch's seconds, against `torch.mm` of [2048, 2048]
matrices with the same threads in the same process.

{scaling_table(scaling, baseline_mib)}

Log-log slopes of seconds per epoch against agents:

{slopes(scaling)}

![Seconds per epoch and MiB against agents](../../docs/img/scaling.png)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: one seed, 8 and 64 "
                        "agents; prints the report without writing it")
    parser.add_argument("--agents", type=int, nargs="+", default=[1024, 4096, 16384, 65536],
                        help="scaling sizes (multiples of 4)")
    parser.add_argument("--discovery-max", type=int, default=4096,
                        help="run the epoch with a discovery up to this many agents")
    parser.add_argument("--shard-size", type=int, default=8192,
                        help="agents trained at a time (`shard_size`) in sizes above "
                        "--shard-above (0: all at once)")
    parser.add_argument("--shard-above", type=int, default=16384,
                        help="train in parts only above this many agents (default 16384: "
                        "a part's forward runs twice, for ≈ 40 %% more CPU per epoch)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="give up on a size after this many seconds (default: never)")
    parser.add_argument("--sample-batches", type=int, default=0,
                        help="above --discovery-max, time only this many batches of the "
                        "training epoch and scale to the epoch (0: the whole epoch)")
    parser.add_argument("--skip-experiments", action="store_true",
                        help="scaling only (the report then has no experiments table)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # replicas, internal
    args = parser.parse_args()
    shard = args.shard_size or None
    if args.worker is not None:
        print(json.dumps(scaling_worker(args.worker, args.discovery_max > 0, shard,
                                        args.sample_batches)))
        return
    started, header = time.perf_counter(), machine_line()
    seeds = [0] if args.quick else [0, 1, 2]
    names = [] if args.skip_experiments else ["complex", "simple", "robust"]
    timings = [time_experiment(name, seeds) for name in names]
    if timings:
        print(experiments_table(timings), flush=True)
    sizes = [8, 64] if args.quick else args.agents
    baseline = run_worker(0)["maxrss_mib"]
    scaling = [run_worker(n // AGENTS_PER_REPLICA, n <= args.discovery_max,
                          shard if shard and n > args.shard_above else None, args.timeout,
                          args.sample_batches) for n in sizes]
    text = report(header, seeds, timings, scaling, baseline, time.perf_counter() - started)
    print(text)
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
        plot_scaling(scaling, IMG)
        print(f"written to {RESULTS.relative_to(REPO)} and {IMG.relative_to(REPO)}")


if __name__ == "__main__":
    main()
