"""Aggregation strategies: how a head turns its members' arrays into one.

A strategy is a small object with one job, `aggregate(x, weights)`, over an array
`x` of shape [members, problems, dim]: it returns [problems, dim], one aggregate per problem.
The OSM-L diffuser passes embeddings ([agents, steps, d]: one problem per time step); a
holon head passes flat parameters ([members, 1, P]) with data-size weights. Adding a strategy
means adding a class and a registry entry; no head changes.

All strategies minimise (or approximate) the summed distance to the members' points (OSM-L
paper Eq. 11), each for a different distance or robustness trade-off.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor


def _normalised(weights: Tensor | None, m: int, like: Tensor) -> Tensor:
    """Member weights as a [members, 1, 1] column summing to one."""
    if weights is None:
        w = torch.ones(m, dtype=like.dtype, device=like.device)
    else:
        w = weights.to(like.dtype)
        if w.shape != (m,) or not torch.all(w > 0):
            raise ValueError(f"weights must be {m} positive numbers, got {weights.tolist()}")
    return (w / w.sum()).reshape(m, 1, 1)


class Strategy:
    """Base class: a named, parameterised aggregation rule."""

    name: ClassVar[str]

    def aggregate(self, x: Tensor, weights: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({vars(self)})"


class Mean(Strategy):
    """Weighted mean: the minimiser of summed squared Euclidean distances (the paper's default;
    with data-size weights, the FedAvg / holonic average of paper Eq. 12)."""

    name = "mean"

    def aggregate(self, x: Tensor, weights: Tensor | None = None) -> Tensor:
        return (x * _normalised(weights, x.shape[0], x)).sum(0)


class GeometricMedian(Strategy):
    """Minimiser of summed (unsquared) Euclidean distances, by Weiszfeld iterations.

    Robust: one outlying member moves it by a bounded amount, unlike the mean.
    """

    name = "geometric_median"

    def __init__(self, iterations: int = 50, eps: float = 1e-8):
        if iterations < 1:
            raise ValueError(f"geometric_median iterations must be >= 1, got {iterations}")
        self.iterations = iterations
        self.eps = eps

    def aggregate(self, x: Tensor, weights: Tensor | None = None) -> Tensor:
        w = _normalised(weights, x.shape[0], x)
        z = (x * w).sum(0)
        for _ in range(self.iterations):
            dist = (x - z).norm(dim=-1, keepdim=True).clamp_min(self.eps)  # [m, n, 1]
            coef = w / dist
            z_new = (coef * x).sum(0) / coef.sum(0)
            if torch.allclose(z_new, z, atol=1e-7, rtol=0):
                return z_new
            z = z_new
        return z


class TrimmedMean(Strategy):
    """Coordinate-wise mean after dropping the `trim` fraction of largest and smallest values."""

    name = "trimmed_mean"

    def __init__(self, trim: float = 0.2):
        if not 0 <= trim < 0.5:
            raise ValueError(f"trimmed_mean trim must be in [0, 0.5), got {trim}")
        self.trim = trim

    def aggregate(self, x: Tensor, weights: Tensor | None = None) -> Tensor:
        if weights is not None:
            raise ValueError("trimmed_mean does not take member weights")
        m = x.shape[0]
        k = int(self.trim * m)
        if k == 0:
            return x.mean(0)
        return x.sort(dim=0).values[k : m - k].mean(0)


class SimilarityWeighted(Strategy):
    """Members weighted by a softmax (temperature `temperature`) of their cosine similarity to
    the mean, so members that disagree with the rest pull the context less."""

    name = "similarity_weighted"

    def __init__(self, temperature: float = 0.1):
        if temperature <= 0:
            raise ValueError(f"similarity_weighted temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def aggregate(self, x: Tensor, weights: Tensor | None = None) -> Tensor:
        mean = Mean().aggregate(x, weights)
        cos = torch.nn.functional.cosine_similarity(x, mean.unsqueeze(0), dim=-1)  # [m, n]
        logits = cos / self.temperature
        if weights is not None:
            logits = logits + torch.log(_normalised(weights, x.shape[0], x)[:, :, 0])
        a = torch.softmax(logits, dim=0).unsqueeze(-1)
        return (a * x).sum(0)


STRATEGIES: dict[str, type[Strategy]] = {
    s.name: s for s in (Mean, GeometricMedian, TrimmedMean, SimilarityWeighted)
}


def make_strategy(name: str, **params: float) -> Strategy:
    """Build a strategy by name, e.g. `make_strategy("trimmed_mean", trim=0.25)`."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose from {sorted(STRATEGIES)}") from None
    return cls(**params)
