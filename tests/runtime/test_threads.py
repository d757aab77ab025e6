"""The number of intra-op threads changes speed, never results; `auto` picks it on evidence."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from osmotic.engines import inprocess
from osmotic.engines.inprocess import PARALLEL_GRAIN, auto_threads, cpu_threads
from osmotic.models.cnn import MnistCNN
from osmotic.osml.agent import OsmoticAgent
from osmotic.runtime.population import Population


def _cnn_steps(threads: int) -> torch.Tensor:
    """Three SGD steps of 4 CNN agents on 16 images each (dropout on); final parameters."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 16, 1, 28, 28, generator=g), torch.randint(0, 10, (4, 16), generator=g)
    pop = Population(MnistCNN, list("abcd"), seed=0)
    opt = torch.optim.SGD(pop.params.values(), lr=0.1)
    with cpu_threads(threads):
        for _ in range(3):
            logits = pop(x, pop.rand(16, MnistCNN.NOISE_WIDTH))
            opt.zero_grad()
            F.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
            opt.step()
    return pop.flat()


def _gru_steps(threads: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 50, 10, 2, generator=g)
    pop = Population(lambda: OsmoticAgent(2), [str(i) for i in range(64)], seed=0)
    opt = torch.optim.Adam(pop.params.values(), lr=0.01)
    with cpu_threads(threads):
        for _ in range(3):
            e, p = pop(x, x.new_zeros(64, 1))
            opt.zero_grad()
            (e.square().mean((1, 2)) + p).sum().backward()
            opt.step()
    return pop.flat()


@pytest.mark.parametrize("steps", [_cnn_steps, _gru_steps])
def test_results_do_not_depend_on_the_thread_count(steps) -> None:
    torch.testing.assert_close(steps(1), steps(2), atol=1e-6, rtol=1e-6)


def test_auto_uses_idle_cores_for_large_steps_only(monkeypatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(inprocess, "busy_elsewhere", lambda _: 0.3)  # an idle machine
    assert auto_threads(PARALLEL_GRAIN) == 1
    assert auto_threads(None) == auto_threads(100 * PARALLEL_GRAIN) == cores
    monkeypatch.setattr(inprocess, "busy_elsewhere", lambda _: cores + 5.0)  # a busy one
    assert auto_threads(None) == 1
    monkeypatch.setattr(inprocess, "busy_elsewhere", lambda _: 0.3)
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # spinning threads: never more than one
    assert auto_threads(None) == 1
    before = torch.get_num_threads()
    with cpu_threads(3):
        assert torch.get_num_threads() == 3
    assert torch.get_num_threads() == before


def test_busy_elsewhere_leaves_out_this_process(monkeypatch) -> None:
    """Two cores, 0.2 s = 20 ticks each: 30 busy ticks are 1.5 cores; 0.1 s of this process's
    own CPU time in the window is half a core of them."""
    ticks = iter([(100, 400), (130, 440)])
    clock = iter([5.0, 5.1])
    monkeypatch.setattr(inprocess, "_cpu_jiffies", lambda _: next(ticks))
    monkeypatch.setattr(inprocess.time, "process_time", lambda: next(clock))
    monkeypatch.setattr(inprocess.time, "sleep", lambda _: None)
    assert inprocess.busy_elsewhere([0, 1], window=0.2) == pytest.approx(1.0)
    monkeypatch.setattr(inprocess, "_cpu_jiffies", lambda _: (_ for _ in ()).throw(OSError()))
    monkeypatch.setattr(os, "getloadavg", lambda: (1.7, 0.0, 0.0))  # no /proc/stat
    assert inprocess.busy_elsewhere([0, 1]) == 1.7


def test_busy_elsewhere_reads_this_machine() -> None:
    cores = sorted(os.sched_getaffinity(0))
    assert 0.0 <= inprocess.busy_elsewhere(cores, window=0.05) <= len(cores) + 0.5


def test_nested_blocks_keep_the_heap_until_the_outermost_exits(monkeypatch) -> None:
    """glibc has no getter: an inner block must not restore the defaults (or trim the heap)
    while an outer one still relies on them."""
    calls: list[dict[int, int]] = []
    monkeypatch.setattr(inprocess, "_mallopt", lambda settings: calls.append(settings) or True)
    monkeypatch.setattr(inprocess.ctypes, "CDLL", lambda _: type("C", (), {
        "malloc_trim": staticmethod(lambda _: calls.append({"trim": 0}))}))
    with cpu_threads(1):
        with cpu_threads(1), inprocess.heap_kept():
            pass
        assert {"trim": 0} not in calls
        assert calls[-1] == {inprocess.M_MMAP_MAX: inprocess.GLIBC_DEFAULTS[inprocess.M_MMAP_MAX]}
    restored = {inprocess.M_TRIM_THRESHOLD: inprocess.GLIBC_DEFAULTS[inprocess.M_TRIM_THRESHOLD]}
    assert calls[-2:] == [restored, {"trim": 0}]
    assert calls.count(restored) == 1
