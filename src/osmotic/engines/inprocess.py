"""The default engine: every shard in this process, arrays passed by reference."""
from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

PARALLEL_GRAIN = 32_768
"""torch's grain size (at::internal::GRAIN_SIZE): element-wise kernels over fewer elements never
use a second thread, so a run whose per-step tensors are all smaller gains nothing from more."""


def auto_threads(work: int | None = None) -> int:
    """The `threads: 0` (auto) choice: the cores this process may use that other processes
    leave idle (`busy_elsewhere`; at least one) when a step's largest tensor (`work` elements;
    None: large) spans several grains and idle OpenMP threads sleep (`OMP_WAIT_POLICY=PASSIVE`,
    which the `osmotic` command sets before torch loads); else one thread. With spinning threads, a busy
    2-core machine ran two threads 7-20x slower than one; with sleeping ones, no faster than
    one (each step waits for the slower thread's core)."""
    passive = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    if not passive or (work is not None and work < 4 * PARALLEL_GRAIN):
        return 1
    cores = usable_cores()
    return max(1, min(len(cores), len(cores) - round(busy_elsewhere(cores))))


def usable_cores() -> list[int]:
    """The cores this process may run on (its CPU affinity on Linux, else all of them)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return sorted(affinity(0)) if affinity else list(range(os.cpu_count() or 1))


def _cpu_jiffies(cores: Sequence[int]) -> tuple[int, int]:
    """(busy, total) clock ticks so far of `cores`, from /proc/stat (Linux)."""
    wanted = {f"cpu{c}" for c in cores}
    busy = total = 0
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            name, *ticks = line.split()
            if name in wanted:  # user nice system idle iowait irq softirq steal (guest: in user)
                t = [int(x) for x in ticks[:8]]
                busy, total = busy + sum(t) - t[3] - t[4], total + sum(t)
    return busy, total


def busy_elsewhere(cores: Sequence[int], window: float = 0.1) -> float:
    """How many of `cores` other processes keep busy: their busy ticks over `window` seconds
    less this process's own CPU time (Linux), else the 1-minute load average. The load average
    counts this process's own recent work too, so a second run in one Python session (or a
    benchmark's next size) saw its own first run as another job and took one thread."""
    try:
        busy0, total0 = _cpu_jiffies(cores)
        own0 = time.process_time()
        time.sleep(window)
        busy1, total1 = _cpu_jiffies(cores)
        own = time.process_time() - own0
    except (OSError, ValueError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0  # not on Windows
    if total1 <= total0:
        return 0.0
    ticks_per_core = (total1 - total0) / len(cores)
    return max(0.0, (busy1 - busy0) / ticks_per_core - own / window)


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc mallopt parameters
GLIBC_DEFAULTS = {M_TRIM_THRESHOLD: 128 * 1024, M_MMAP_MAX: 65_536}
_malloc_depth = dict.fromkeys(GLIBC_DEFAULTS, 0)  # open `_malloc_set` blocks per parameter


def _glibc(function: str) -> Any:
    """The C library's `function`, or None where there is none (not glibc)."""
    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):  # Windows: no process-wide C library to open
        return None
    return getattr(libc, function, None)


def _mallopt(settings: dict[int, int]) -> bool:
    """Set glibc malloc parameters; False where the C library has no `mallopt` (not glibc)."""
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    for param, value in settings.items():
        mallopt(param, value)
    return True


def trim_heap() -> None:
    """Give the heap's free pages back to the system now (glibc; elsewhere nothing).

    Inside `cpu_threads` the heap keeps what training steps freed, for the next step. Work that
    follows the last step of an epoch (evaluation, clustering) takes its large temporaries from
    fresh mappings, which then come on top of that kept heap: a process's peak was training's
    plus clustering's (at 4,096 agents, several n × n matrices on top of ~1.5 GB). Trimming in
    between makes it the larger of the two, for one round of page faults per epoch."""
    trim = _glibc("malloc_trim")
    if trim is not None:
        trim(0)


@contextmanager
def _malloc_set(param: int, value: int) -> Iterator[bool]:
    """Set one glibc malloc parameter for the block (yields False where there is no glibc).
    Nested blocks keep it until the outermost one exits, which restores glibc's default: glibc
    has no getter, so a value set outside osmotic is not restored."""
    _malloc_depth[param] += 1
    try:
        yield _mallopt({param: value})
    finally:
        _malloc_depth[param] -= 1
        if _malloc_depth[param] == 0:
            _mallopt({param: GLIBC_DEFAULTS[param]})


@contextmanager
def heap_kept() -> Iterator[None]:
    """Large blocks from the heap instead of one fresh mmap each, inside (training steps).

    glibc serves every allocation over 32 MiB with a fresh mmap and unmaps it when freed, so a
    step that allocates such tensors (a thousand agents' GRU states) has the kernel map and zero
    them again every time: at 1,024 agents that system time exceeded the arithmetic (0.58 s of
    1.0 s CPU per batch; 0.03 s from the heap, 18x fewer page faults). Training steps allocate
    the same sizes every time, so the heap (kept by `cpu_threads`) serves them without growing;
    evaluation and clustering, whose temporaries vary in size, stay on mmap (on the heap they
    fragmented it: the 1,024-agent run's peak RSS doubled)."""
    with _malloc_set(M_MMAP_MAX, 0):
        yield


@contextmanager
def cpu_threads(n: int, work: int | None = None) -> Iterator[None]:
    """Run with `n` intra-op threads (0: `auto_threads(work)`), freed heap memory kept for the
    next step (`heap_kept`), then restore both and, when the outermost such block exits, return
    the heap to the system. Results do not depend on the thread count
    (tests/runtime/test_threads.py)."""
    before, kept = torch.get_num_threads(), False
    torch.set_num_threads(n or auto_threads(work))
    try:
        with _malloc_set(M_TRIM_THRESHOLD, 2**31 - 1) as kept:
            yield
    finally:
        torch.set_num_threads(before)
        if kept and _malloc_depth[M_TRIM_THRESHOLD] == 0:
            trim_heap()
