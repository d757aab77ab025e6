"""OSM-L on the Ray engine vs in-process: time, memory and exchange overhead (issue 4, §3).

Two questions, one markdown report (`benchmarks/results/ray.md`):

1. What does an epoch cost on each engine? 64, 512 and 4,096 agents (the simple context's
   generator replicated with different seeds, as in `bench_osml.py`), in-process and on a local
   Ray instance with 2 CPUs and 2 actors. Every (agents, engine) case runs in a fresh process so
   that peak memory is its own; the Ray actors' peaks are read from /proc, since with Ray most of
   the agents' memory lives in the actor processes, not in the driver.
2. What does one batch exchange cost on Ray? Per batch the driver gathers every actor's
   embeddings and sends back the contexts (`embed`, then `step`). Both engines are timed over
   stub shards that answer at once with arrays of the real shapes, so the difference is the
   exchange alone, without any agent's compute.

    .venv/bin/python benchmarks/bench_ray.py            # full run, writes results/ray.md
    .venv/bin/python benchmarks/bench_ray.py --quick    # smoke run (64 agents), prints only
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

import torch
from bench_osml import AGENTS_PER_REPLICA, cpu_seconds, epoch_breakdown, replicated, table
from common import machine_line as machine
from torch import Tensor

from osmotic.engines.inprocess import cpu_threads
from osmotic.osml.config import OsmlConfig
from osmotic.osml.engine import InProcessEngine
from osmotic.osml.trainer import train_osml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "ray.md"
ANALYSIS = "## When Ray pays off"
"""Heading of the hand-written analysis in results/ray.md: a rerun keeps that section."""

RAY_CPUS = ACTORS = 2
EPOCHS = {64: 2, 512: 2, 4096: 1}
"""Epochs per size: 4,096 agents get one, so no clustering (see the report)."""
CASE_TIMEOUT_S = 480
MESSAGE_CHARS = 100  # of a failed case's last error line (lost actors list every agent)
EXCHANGE_AGENTS = (2, 64, 512, 4096)
EXCHANGE_ROUNDS, EXCHANGE_WARMUP = 100, 5
SAMPLE_PERIOD_S = 0.5
CLK_TCK = os.sysconf("SC_CLK_TCK")


def start_ray() -> float:
    """Start the local Ray instance ourselves (2 CPUs, no dashboard); returns seconds taken."""
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False)
    return time.perf_counter() - start


# -- processes: peak memory and CPU from /proc (psutil is not a dependency) -------------------
@dataclass
class Proc:
    """One process as last sampled: VmHWM is its own peak RSS, so the last sample is enough."""

    name: str  # first word of the command line: 'ray::Host' for an actor
    peak_mib: float
    cpu_s: float


def read_proc(pid: int) -> Proc | None:
    """The process `pid`, or None if it has gone (or is a kernel thread without memory)."""
    base = Path(f"/proc/{pid}")
    try:
        name = (base / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        hwm = [line for line in (base / "status").read_text().splitlines() if line.startswith("VmHWM:")]
        fields = (base / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if not hwm:
        return None
    return Proc(name, int(hwm[0].split()[1]) / 1024, (int(fields[11]) + int(fields[12])) / CLK_TCK)


def descendants(root: int) -> list[int]:
    """Processes started, directly or not, by `root`. The local Ray instance's GCS, raylet and
    workers descend from the driver that started it, so other jobs' Ray processes stay out."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


class Watcher:
    """Samples this process's descendants in the background: Ray kills its actors when a run
    ends, and a process's peak memory disappears with it."""

    def __init__(self) -> None:
        self.seen: dict[int, Proc] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        for pid in descendants(os.getpid()):
            if (proc := read_proc(pid)) is not None:
                self.seen[pid] = proc

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_PERIOD_S):
            self.sample()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def actors(self) -> list[Proc]:
        return [p for p in self.seen.values() if p.name.startswith("ray::Host")]

    def others(self) -> list[Proc]:
        """Ray's own processes (GCS, raylet, agents, idle workers)."""
        return [p for p in self.seen.values() if not p.name.startswith("ray::Host")]


# -- one (agents, engine) case, in its own process --------------------------------------------
def case_worker(agents: int, engine: str, epochs: int) -> dict[str, Any]:
    """Train `agents` agents for `epochs` epochs on `engine`; time, CPU and peak memory.

    Evaluation runs only after the last epoch (`eval_every` beyond it). Actors are sampled once
    more after that evaluation, while they still live, so their peaks and CPU are complete."""
    load = os.getloadavg()[0]
    ray_start_s = start_ray() if engine == "ray" else 0.0
    train, test = replicated(agents // AGENTS_PER_REPLICA)
    config = OsmlConfig(epochs=epochs, eval_every=epochs + 1, engine=engine, actors=ACTORS)
    marks: list[tuple[float, float]] = []
    with Watcher() as watch:
        def log(row: dict[str, Any]) -> None:
            marks.append((time.perf_counter(), row["train_seconds"]))
            if row["epoch"] == epochs:
                watch.sample()

        start, cpu = time.perf_counter(), cpu_seconds()
        train_osml(config, train, test, progress=False, log=log)
        wall, driver_cpu = time.perf_counter() - start, cpu_seconds() - cpu
    steps = next(iter(train.values())).shape[0] - config.window + 1
    return {"agents": agents, "engine": engine, "epochs": epochs, "load": load,
            "batches": math.ceil(steps / config.batch_size), **epoch_breakdown(start, marks),
            "wall_s": wall, "ray_start_s": ray_start_s, "driver_cpu_s": driver_cpu,
            "driver_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "actors": [asdict(p) for p in watch.actors()],
            "ray_other_mib": sum(p.peak_mib for p in watch.others())}


def run_case(agents: int, engine: str, epochs: int) -> dict[str, Any]:
    """`case_worker` in a fresh interpreter, tried twice: other jobs' tests on this machine kill
    Ray actors by name, and one such kill should not cost the case. A retry is reported."""
    first = attempt_case(agents, engine, epochs)
    if "failed" not in first:
        return first
    second = attempt_case(agents, engine, epochs)
    return {**second, "retried": first["failed"]}


def attempt_case(agents: int, engine: str, epochs: int) -> dict[str, Any]:
    """One try in its own session, so that a case that runs too long can be stopped together
    with the Ray processes it started."""
    cmd = [sys.executable, __file__, "--case", str(agents), engine, str(epochs)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    failed = {"agents": agents, "engine": engine, "epochs": epochs}
    try:
        out, err = proc.communicate(timeout=CASE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {**failed, "failed": f"stopped after {CASE_TIMEOUT_S} s"}
    if proc.returncode != 0:
        last = (err.strip().splitlines() or [""])[-1]
        return {**failed, "failed": f"exit {proc.returncode}: {last[:MESSAGE_CHARS]}"}
    return json.loads(out.strip().splitlines()[-1])


# -- batch exchange: engines over stub shards -------------------------------------------------
class StubShard:
    """Stands in for an `OsmoticShard`: answers `embed` and `step` at once with arrays of the
    real shapes, so an engine over stubs costs only its exchange."""

    def __init__(self, agent_ids: list[str], batch: int, dim: int):
        self.agent_ids = agent_ids
        self._embeddings = torch.zeros(len(agent_ids), batch, dim)
        self._losses = torch.zeros(len(agent_ids))

    def embed(self, split: str, start: int, stop: int, train: bool = False) -> tuple[Tensor, Tensor]:
        return self._embeddings, self._losses

    def step(self, context: Tensor) -> Tensor:
        return self._losses


def stub_builder(batch: int, dim: int) -> Callable[[list[str]], Callable[[], InProcessEngine]]:
    """What `make_engine` builds per shard of agents, with stubs in place of the agents."""
    def build(chunk: list[str]) -> Callable[[], InProcessEngine]:
        return lambda: InProcessEngine([StubShard(chunk, batch, dim)], chunk)
    return build


def exchange_ms(engines: dict[str, Any], batch: int) -> dict[str, float]:
    """Median milliseconds of one batch exchange (embeddings in, contexts out) per engine. The
    engines take turns, so a burst of load from other jobs hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(EXCHANGE_WARMUP + EXCHANGE_ROUNDS):
        for name, engine in engines.items():
            start = time.perf_counter()
            E, _ = engine.embed("train", 0, batch, train=True)
            engine.step(E)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t[EXCHANGE_WARMUP:]) * 1000 for name, t in times.items()}


def exchange_worker() -> list[dict[str, Any]]:
    """Per size: exchange time in-process and on Ray with 2 actors, and the bytes that travel.
    One intra-op thread, as in training: with two, the in-process engine's gather synchronised
    its threads and took 16 ms instead of 0.02 on this loaded machine."""
    from osmotic.osml.engine import RayEngine

    start_ray()
    config = OsmlConfig()
    build = stub_builder(config.batch_size, config.dim)
    rows = []
    with cpu_threads(1):
        for n in EXCHANGE_AGENTS:
            ids = [f"a{i}" for i in range(n)]
            engines = {"inprocess": build(ids)(), "ray": RayEngine(ids, build, actors=ACTORS)}
            ms = exchange_ms(engines, config.batch_size)
            engines["ray"].shutdown()
            floats = n * (2 * config.batch_size * config.dim + 2)  # embeddings, contexts, losses
            rows.append({"agents": n, "kib": floats * 4 / 1024, "ray_ms": ms["ray"],
                         "inprocess_ms": ms["inprocess"]})
    return rows


def run_exchange() -> list[dict[str, Any]]:
    proc = subprocess.run([sys.executable, __file__, "--exchange"], capture_output=True,
                          text=True, check=False, timeout=CASE_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"exchange benchmark failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- report ------------------------------------------------------------------------------------
def per_epoch(case: dict[str, Any]) -> float:
    return sum(case["train_s"]) / case["epochs"]


def cases_table(cases: list[dict[str, Any]]) -> str:
    """One row per case; a case that failed or ran too long says so in place of its numbers."""
    header = ["agents", "engine", "epochs", "train s/epoch", "train s by epoch", "ms/batch",
              "Ray vs in-process",
              "set-up + eval s", "whole run s", "CPU/wall", "driver peak MiB",
              "actor peaks MiB", "Ray's other processes MiB", "load (1 min) at start"]
    inprocess = {c["agents"]: c for c in cases if c["engine"] == "inprocess" and "failed" not in c}
    rows = []
    for c in cases:
        if "failed" in c:
            rows.append([str(c["agents"]), c["engine"], str(c["epochs"]), c["failed"]]
                        + [""] * (len(header) - 4))
            continue
        base = inprocess.get(c["agents"])
        speed = f"{per_epoch(base) / per_epoch(c):.2f}x" if base and c is not base else ""
        cpu = c["driver_cpu_s"] + sum(a["cpu_s"] for a in c["actors"])
        actors = " + ".join(f"{a['peak_mib']:.0f}" for a in c["actors"]) or "–"
        rows.append([str(c["agents"]), c["engine"], str(c["epochs"]), f"{per_epoch(c):.2f}",
                     " / ".join(f"{t:.2f}" for t in c["train_s"]),
                     f"{per_epoch(c) / c['batches'] * 1000:.0f}", speed,
                     f"{sum(c['other_s']):.1f}", f"{c['wall_s'] + c['ray_start_s']:.1f}",
                     f"{cpu / c['wall_s']:.2f}", f"{c['driver_mib']:.0f}", actors,
                     f"{c['ray_other_mib']:.0f}" if c["engine"] == "ray" else "–",
                     f"{c['load']:.2f}"])
    return table(header, rows) + "".join(
        f"\n\n{c['agents']} agents, {c['engine']}: first try failed ({c['retried']}); "
        "this row is the second." for c in cases if "retried" in c)


def exchange_table(rows: list[dict[str, Any]], cases: list[dict[str, Any]]) -> str:
    """Ray's overhead per exchange, next to what one batch of training costs in-process."""
    compute = {c["agents"]: per_epoch(c) / c["batches"] * 1000 for c in cases
               if c["engine"] == "inprocess" and "failed" not in c}
    header = ["agents", "KiB per exchange", "in-process ms", "Ray ms", "Ray overhead ms",
              "in-process training ms/batch", "overhead / training"]
    out = []
    for r in rows:
        overhead = r["ray_ms"] - r["inprocess_ms"]
        train = compute.get(r["agents"])
        out.append([str(r["agents"]), f"{r['kib']:.1f}", f"{r['inprocess_ms']:.2f}",
                    f"{r['ray_ms']:.2f}", f"{overhead:.2f}", f"{train:.0f}" if train else "–",
                    f"{overhead / train:.1%}" if train else "–"])
    return table(header, out)


def kept_analysis() -> str:
    """The hand-written analysis of an earlier run, if any: numbers change, reasons rarely."""
    if not RESULTS.is_file():
        return ""
    text = RESULTS.read_text()
    return text[text.index(ANALYSIS):] if ANALYSIS in text else ""


def report(header: str, cases: list[dict[str, Any]], exchange: list[dict[str, Any]],
           seconds: float) -> str:
    """The markdown written to results/ray.md: settings and caveats next to the numbers."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    batch, dim = OsmlConfig().batch_size, OsmlConfig().dim
    return f"""# OSM-L on Ray vs in-process

{header}; at end: {load}. Benchmark took {seconds:.0f} s.
Command: `.venv/bin/python benchmarks/bench_ray.py`. One intra-op thread per process (the
default); Ray: a local instance started with `ray.init(num_cpus={RAY_CPUS})` and `--actors {ACTORS}`.

## Time and memory per epoch

The simple context's generator replicated with seeds 0, 1, … (agents `s<seed>_0`, `s<seed>_1`,
`s<seed>_M0`, `s<seed>_M1`), default config, every case in a fresh process, epochs as in the
table (one for 4,096 agents: clustering them would rank 16.7 M pairs and dominate the run). The
test evaluation runs once, after the last epoch (`eval_every` beyond it); clustering happens at
epoch 2 only. "train s/epoch" is the trainer's own training time
(embed, diffuser, step, and clustering in epoch 2, all in the driver); "ms/batch" divides it by
the batches of an epoch. "set-up + eval s" is the rest of the run (building agents or starting actors, the final
evaluation); "whole run s" adds starting Ray. CPU/wall counts the driver and the actors (up to
2.0 on 2 cores). Peaks are VmHWM: the driver's, each actor's, and the sum over Ray's GCS, raylet,
agents and idle workers; every Python process that imports torch holds about 370 MiB of it
(`bench_osml.py`'s baseline), much of it shared library pages counted once per process.

{cases_table(cases)}

## Batch exchange

Per batch the driver gathers every actor's embeddings (float32 [agents, {batch}, {dim}] and one
loss each), then sends each actor its contexts (same shape) and gathers the losses: two round
trips to every actor. Timed over stub shards that answer at once
(the engines' real code around them), median of {EXCHANGE_ROUNDS} exchanges after
{EXCHANGE_WARMUP} warm-up ones; "in-process training ms/batch" is from the table above.

{exchange_table(exchange, cases)}

"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 agents, prints the "
                        "report without writing it")
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)  # agents engine epochs
    parser.add_argument("--exchange", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(case_worker(int(args.case[0]), args.case[1], int(args.case[2]))))
        return
    if args.exchange:
        print(json.dumps(exchange_worker()))
        return
    started, header = time.perf_counter(), machine()
    sizes = {64: 1} if args.quick else EPOCHS
    cases = [run_case(n, engine, epochs) for n, epochs in sizes.items()
             for engine in ("inprocess", "ray")]
    text = report(header, cases, run_exchange(), time.perf_counter() - started)
    if args.quick:
        print(text)
        return
    text += kept_analysis()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    print(f"written to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
