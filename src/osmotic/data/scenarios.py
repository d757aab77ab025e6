"""Generated OSM-L contexts with a known answer, for measuring how well sub-contexts are found.

A scenario has k *groups*: the agents of a group observe one latent process, each through a
transform of its own, so the group is one sub-context. *Loners* observe a latent process of
their own (informative, but shared with nobody) and *noise agents* see only noise; neither
belongs in any sub-context. `truth.json` records who is what and every transform.

Latent processes switch regimes: ramps (the triangle wave of `synthetic`), stationary phases
that hold the level, oscillation phases with a period of the latent's own, small noise. A
transform is a chain drawn per agent feature: a lag of 0–3 steps, a moving average, a monotone
(possibly saturating) nonlinearity, an affine map with either sign, and added noise whose level
varies (some agents have bursts of stronger noise). Some agents observe their latent through
two features. As in `synthetic`, the test split is a fresh run of the same latent processes,
seen through the same transforms: an agent's sensor does not change between the splits.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from osmotic.data.synthetic import noise_bursts, phases, switching_noise, triangle_wave
from osmotic.data.timeseries import Series

STEPS = (900, 200)
"""Train and test steps: the length of the paper's complex context."""
MAX_LAG, MAX_SMOOTH = 3, 6
SHAPES = ("linear", "tanh", "exp", "cube")
SUITE = {"groups": (2, 4), "group_size": (2, 4), "loners": (0, 2), "noise": (0, 3)}
"""The benchmark suite's ranges (inclusive): 2–4 groups of 2–4 agents, 0–2 loners, 0–3 noise
agents."""


@dataclass(frozen=True)
class Transform:
    """How one feature of an agent sees its latent process."""

    lag: int  # steps behind the latent
    smooth: int  # length of the causal moving average (1: none)
    shape: str  # monotone nonlinearity, one of SHAPES
    gain: float  # its steepness
    scale: float  # affine map after it, either sign
    offset: float
    noise: float  # noise standard deviation relative to the clean feature's
    bursts: bool  # phases of four times that noise

    def apply(self, latent: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The feature over `len(latent) - MAX_LAG - MAX_SMOOTH` steps; `latent` carries that
        many steps of history before the first one."""
        steps = len(latent) - MAX_LAG - MAX_SMOOTH
        smoothed = np.convolve(latent, np.full(self.smooth, 1 / self.smooth))[: len(latent)]
        start = MAX_LAG + MAX_SMOOTH - self.lag
        x = self.gain * smoothed[start : start + steps]
        clean = {"linear": x, "tanh": np.tanh(x), "exp": np.exp(x), "cube": x**3}[self.shape]
        clean = self.scale * clean / max(float(clean.std()), 1e-8) + self.offset
        calm = self.noise * abs(self.scale)
        mask = noise_bursts(rng, steps) if self.bursts else np.zeros(steps, dtype=bool)
        return clean + switching_noise(rng, mask, calm, 4 * calm)


def draw_transform(rng: np.random.Generator) -> Transform:
    shape = str(rng.choice(SHAPES))
    gain = {"linear": 1.0, "tanh": rng.uniform(1.0, 2.5), "exp": rng.uniform(0.5, 1.5),
            "cube": 1.0}[shape]
    return Transform(lag=int(rng.integers(0, MAX_LAG + 1)),
                     smooth=int(rng.choice([1, 1, rng.integers(2, MAX_SMOOTH + 1)])),
                     shape=shape, gain=float(gain),
                     scale=float(rng.choice([-1, 1]) * rng.uniform(0.5, 5.0)),
                     offset=float(rng.uniform(-10, 10)), noise=float(rng.uniform(0.05, 0.4)),
                     bursts=bool(rng.random() < 0.3))


def latent_process(rng: np.random.Generator, steps: int) -> np.ndarray:
    """A regime-switching series of `steps` steps, about zero mean and unit range."""
    level = 2 * triangle_wave(rng, steps) - 1
    t = np.arange(steps)
    stationary = phases(rng, steps, first=(0, 120), length=(30, 70), gap=(60, 160))
    starts = stationary & ~np.concatenate([[False], stationary[:-1]])
    held = level[np.maximum.accumulate(np.where(starts, t, 0))]
    level = np.where(stationary, held, level)
    oscillating = phases(rng, steps, first=(20, 160), length=(30, 80), gap=(60, 160))
    swing = rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * t / rng.uniform(8, 40)
                                           + rng.uniform(0, 2 * np.pi))
    return level + np.where(oscillating, swing, 0.0) + 0.02 * rng.standard_normal(steps)


@dataclass(frozen=True)
class Agent:
    """An agent of a scenario: its role, which latent it observes (None: noise) and how."""

    id: str
    role: str  # "group", "loner" or "noise"
    latent: int | None
    transforms: tuple[Transform, ...]  # one per feature; empty for a noise agent
    noise_features: int = 0


def generate_scenario(groups: list[int], loners: int, noise: int, seed: int,
                      steps: tuple[int, int] = STEPS) -> tuple[Series, Series, dict[str, Any]]:
    """(train, test, truth) of a scenario with groups of the given sizes, deterministic per seed.

    Agent ids are 0 … n−1 in a random order of roles, so nothing about the answer can be read
    from the ids or the column order."""
    if not groups and not loners and not noise:
        raise ValueError("a scenario needs at least one agent")
    if any(g < 2 for g in groups):
        raise ValueError(f"groups: every group needs at least two agents, got {groups}")
    if loners < 0 or noise < 0:
        raise ValueError(f"loners and noise must be >= 0, got {loners} and {noise}")
    layout_rng, train_rng, test_rng = np.random.default_rng(seed).spawn(3)
    roles = ([("group", k) for k, size in enumerate(groups) for _ in range(size)]
             + [("loner", len(groups) + k) for k in range(loners)] + [("noise", None)] * noise)
    agents = []
    for i, r in enumerate(layout_rng.permutation(len(roles))):
        role, latent = roles[r]
        if role == "noise":
            agents.append(Agent(str(i), role, None, (), int(layout_rng.integers(1, 3))))
        else:
            features = 2 if layout_rng.random() < 0.3 else 1
            agents.append(Agent(str(i), role, latent,
                                tuple(draw_transform(layout_rng) for _ in range(features))))
    n_latents = len(groups) + loners
    train = _observe(agents, n_latents, train_rng, steps[0])
    test = _observe(agents, n_latents, test_rng, steps[1])
    return train, test, _truth(agents, groups, loners, noise, seed, steps)


def _observe(agents: list[Agent], n_latents: int, rng: np.random.Generator, steps: int) -> Series:
    """One run of every latent process, seen by every agent: [steps, features] per agent."""
    history = steps + MAX_LAG + MAX_SMOOTH
    latents = [latent_process(rng, history) for _ in range(n_latents)]
    out = {}
    for a in agents:
        if a.role == "noise":
            x = rng.uniform(-5, 5) + rng.uniform(0.5, 3) * rng.standard_normal((steps, a.noise_features))
        else:
            x = np.stack([t.apply(latents[a.latent], rng) for t in a.transforms], axis=1)
        out[a.id] = x.astype(np.float32)
    return out


def _truth(agents: list[Agent], groups: list[int], loners: int, noise: int, seed: int,
           steps: tuple[int, int]) -> dict[str, Any]:
    members = [[a.id for a in agents if a.role == "group" and a.latent == k]
               for k in range(len(groups))]
    return {
        "seed": seed,
        "spec": {"groups": list(groups), "loners": loners, "noise": noise},
        "steps": {"train": steps[0], "test": steps[1]},
        "groups": members,
        "loners": [a.id for a in agents if a.role == "loner"],
        "noise": [a.id for a in agents if a.role == "noise"],
        "agents": {a.id: {"role": a.role, "latent": a.latent,
                          "features": [asdict(t) for t in a.transforms]
                          or [{"noise": True}] * a.noise_features}
                   for a in agents},
    }


def suite_spec(index: int) -> dict[str, Any]:
    """Scenario `index` of the benchmark suite: group sizes, loners, noise agents and seed,
    drawn from SUITE's ranges with the index as the seed."""
    rng = np.random.default_rng([20260, index])
    lo, hi = SUITE["group_size"]
    n_groups = int(rng.integers(SUITE["groups"][0], SUITE["groups"][1] + 1))
    return {"groups": [int(g) for g in rng.integers(lo, hi + 1, size=n_groups)],
            "loners": int(rng.integers(SUITE["loners"][0], SUITE["loners"][1] + 1)),
            "noise": int(rng.integers(SUITE["noise"][0], SUITE["noise"][1] + 1)),
            "seed": index}


def replicate_scenario(groups: list[int], loners: int, noise: int, replicas: int, seed: int,
                       steps: tuple[int, int] = STEPS) -> tuple[Series, Series, dict[str, Any]]:
    """`replicas` independent scenarios of one shape, as one population with a known answer.

    Replica r is `generate_scenario(..., seed=[seed, r])`'s draw with its agents named
    `r<r>_<id>`: its own latent processes and transforms, so agents of different replicas are
    unrelated and a sub-context that joins them is wrong. The truth lists every replica's groups,
    loners and noise agents under the new names; `replica` maps each agent to its replica."""
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    train: Series = {}
    test: Series = {}
    truth: dict[str, Any] = {"seed": seed, "replicas": replicas,
                             "spec": {"groups": list(groups), "loners": loners, "noise": noise},
                             "steps": {"train": steps[0], "test": steps[1]},
                             "groups": [], "loners": [], "noise": [], "replica": {}}
    for r in range(replicas):
        seed_r = int(np.random.SeedSequence([seed, r]).generate_state(1)[0])
        tr, te, t = generate_scenario(groups, loners, noise, seed_r, steps)
        name = {a: f"r{r}_{a}" for a in tr}
        train.update({name[a]: x for a, x in tr.items()})
        test.update({name[a]: x for a, x in te.items()})
        truth["groups"] += [[name[a] for a in g] for g in t["groups"]]
        truth["loners"] += [name[a] for a in t["loners"]]
        truth["noise"] += [name[a] for a in t["noise"]]
        truth["replica"].update(dict.fromkeys(name.values(), r))
    return train, test, truth
