"""What every benchmark records next to its times, so figures from different machines compare:
the machine's load and the cost of one small tensor operation (µs)."""
from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import time
from pathlib import Path


def per_op_us(repeats: int = 2000) -> float:
    """Median µs of one `torch.tanh` on a [50, 20] tensor, one thread: the dispatch cost that
    dominates small-model training, as this machine pays it now."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    x = torch.randn(50, 20)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.tanh(x)
        times.append(time.perf_counter() - start)
    torch.set_num_threads(before)
    return statistics.median(times) * 1e6


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_line() -> str:
    """Date, cores, torch, Python, load average and per-op cost, as one line."""
    import torch

    return (f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC · {len(os.sched_getaffinity(0))} "
            f"cores · torch {torch.__version__} · Python {platform.python_version()} · load "
            f"average (1, 5, 15 min) {load()} · one small op (tanh [50, 20]) "
            f"{per_op_us():.1f} µs")


def write_report(path: Path, text: str, *also: Path) -> None:
    """Write a study's results file (its folder made), print it, and say what was written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)
    print("wrote " + " and ".join(str(p) for p in (path, *also)))
