"""Generated contexts with the structure of the OSM-L paper's data (section V-C).

The paper ships fixed CSV files; the demo must run without them and experiments need more than
one draw, so this module rebuilds contexts with the same structure, levels and correlations from
a seed. What the paper's files contain, and what is reproduced here:

* agent ``0``: a noisy sine wave between -1 and 1, interrupted about every 150 steps by a
  stationary phase of about 50 steps at level 1 (small noise), with jumps at the phase edges;
* agent ``1``: agent 0 plus a constant offset (+1 in the simple context, -3 in the complex one),
  oscillating around it (amplitude 0.5, period 20) during agent 0's stationary phases;
* agents ``M0``, ``M1`` (simple context): N(0, 1) noise, the misleading agents;
* agents ``2`` and ``3`` (complex context): one triangle wave seen mirrored, 2 between 4 and 16,
  3 between -18 and -8, each with its own bursts of strong noise (about a quarter of the time);
* agent ``4`` (complex context): feature 0 is 10 while agent 3 is below -12 and 2 otherwise;
  feature 1 follows agent 3 inversely (hence agent 2 directly) plus a period-20 sinusoid and
  strong noise.

The test split is a second, independent run of the same process, of the paper's test length.
The paper's test files restart their series too (for the correlated agents they repeat the first
training rows), so each holds one stationary phase; a continuation of the training series would
hold one or two depending on where the cut falls, and with them the share of steps that no
encoder can tell apart (agent 0 is flat there). An independent run keeps the paper's layout and
is still held out: no test value is a training value.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from osmotic.data.timeseries import Series

SIZES = {"simple": (925, 200), "complex": (900, 191)}
"""Train and test steps of the paper's files."""

OFFSETS = {"simple": 1.0, "complex": -3.0}
"""Agent 1 minus agent 0 outside the oscillation phases, as in the paper's files."""

_STATIONARY_LEVEL = 1.0
_OSCILLATION_AMPLITUDE, _OSCILLATION_PERIOD = 0.5, 20.0


def generate_context(kind: Literal["simple", "complex"], seed: int) -> tuple[Series, Series]:
    """A (train, test) pair of the ``simple`` or ``complex`` context, deterministic per seed."""
    if kind not in SIZES:
        raise ValueError(f"unknown context {kind!r}; expected 'simple' or 'complex'")
    train_rng, test_rng = np.random.default_rng(seed).spawn(2)
    return tuple(_draw(kind, rng, steps) for rng, steps in zip((train_rng, test_rng), SIZES[kind]))


def _draw(kind: str, rng: np.random.Generator, steps: int) -> Series:
    """One run of the context's process, `steps` long, every agent as a [steps, k] array."""
    agent0, stationary = _wave_with_stationary_phases(rng, steps)
    agents = {"0": agent0, "1": agent0 + OFFSETS[kind] + _oscillation(stationary)}
    if kind == "simple":
        agents["M0"] = rng.standard_normal(steps)
        agents["M1"] = rng.standard_normal(steps)
    else:
        agents.update(_mirrored_pair_and_mixture(rng, steps))
    return {a: np.asarray(v, dtype=np.float32).reshape(steps, -1) for a, v in agents.items()}


def _wave_with_stationary_phases(
    rng: np.random.Generator, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Agent 0 and the mask of its stationary phases.

    The sine keeps running under a stationary phase, which is why the paper's series jumps at
    both edges of every phase.
    """
    # The period drifts: a new one every 90 steps, so no two cycles are alike.
    periods = rng.uniform(90.0, 130.0, size=steps // 90 + 1)
    phase_step = 2 * np.pi / np.repeat(periods, 90)[:steps]
    wave = np.sin(rng.uniform(0, 2 * np.pi) + np.cumsum(phase_step))
    stationary = phases(rng, steps, first=(40, 70), length=(45, 58), gap=(90, 112))
    noise = np.where(stationary, 0.05, 0.11) * rng.standard_normal(steps)
    return np.where(stationary, _STATIONARY_LEVEL, wave) + noise, stationary


def _oscillation(stationary: np.ndarray) -> np.ndarray:
    """Agent 1's swing around agent 0 during each stationary phase (zero elsewhere)."""
    steps = np.arange(stationary.size)
    starts = stationary & ~np.concatenate([[False], stationary[:-1]])
    since_start = steps - np.maximum.accumulate(np.where(starts, steps, 0))
    swing = _OSCILLATION_AMPLITUDE * np.sin(2 * np.pi * (since_start - 4) / _OSCILLATION_PERIOD)
    return np.where(stationary, swing, 0.0)


def _mirrored_pair_and_mixture(rng: np.random.Generator, steps: int) -> dict[str, np.ndarray]:
    """Agents 2, 3 (one triangle wave, mirrored, with noise bursts) and 4 (two features)."""
    level = triangle_wave(rng, steps)
    bursts = noise_bursts(rng, steps)
    agent2 = np.clip(4 + 12 * level + switching_noise(rng, bursts, 0.35, 2.6), 4.0, 16.0)
    agent3 = np.clip(-8 - 10 * level + switching_noise(rng, bursts, 0.3, 2.4), -18.0, -8.0)
    discretised = np.where(agent3 < -12, 10.0, 2.0)
    sinusoid = 0.9 * np.sin(2 * np.pi * np.arange(steps) / 20.0 + rng.uniform(0, 2 * np.pi))
    mixed = -1.35 * agent3 - 22.0 + sinusoid + 2.8 * rng.standard_normal(steps)
    return {"2": agent2, "3": agent3, "4": np.stack([discretised, mixed], axis=1)}


def triangle_wave(rng: np.random.Generator, steps: int) -> np.ndarray:
    """Rising and falling ramps between 0 and 1, each cycle with its own length and apex."""
    pieces, total = [], 0
    while total < steps:
        rise, fall = rng.integers(40, 110, size=2)
        low, high = rng.uniform(0.0, 0.1), rng.uniform(0.8, 0.95)
        pieces += [np.linspace(low, high, rise, endpoint=False), np.linspace(high, low, fall)]
        total += rise + fall
    return np.concatenate(pieces)[:steps]


def noise_bursts(rng: np.random.Generator, steps: int) -> np.ndarray:
    """Mask of phases, about a quarter of the time, of much stronger noise (agents 2 and 3 of
    the complex context; any agent of a scenario)."""
    return phases(rng, steps, first=(0, 60), length=(25, 50), gap=(60, 130))


def phases(rng: np.random.Generator, steps: int, first: tuple[int, int],
           length: tuple[int, int], gap: tuple[int, int]) -> np.ndarray:
    """Mask of recurring phases: the first starts in `first`, each lasts a draw from `length`
    and the next starts a draw from `gap` after it ends (draws are half-open ranges)."""
    mask = np.zeros(steps, dtype=bool)
    start = int(rng.integers(*first))
    while start < steps:
        n = int(rng.integers(*length))
        mask[start : start + n] = True
        start += n + int(rng.integers(*gap))
    return mask


def switching_noise(rng: np.random.Generator, bursts: np.ndarray, calm: float,
                    loud: float) -> np.ndarray:
    """Gaussian noise whose standard deviation switches from ``calm`` to ``loud`` in bursts."""
    return np.where(bursts, loud, calm) * rng.standard_normal(bursts.size)
