"""Seeded partitions of a labelled pool over agents, for any learning mode of the package.

Schemes (the Holonic Learning paper's, plus Dirichlet):
- `iid`: a random permutation cut into near-equal parts.
- `eqniid`: sort by label, cut into 2·n equal shards, two random shards per agent (with 10
  agents over 5,000 MNIST images: 500 samples of at most 2 classes each, as in the paper).
- `ueqniid`: sorted shards of 50 (smaller when the pool is small), each agent a random number of
  shards between 1 and 30, scaled to use the whole pool, dealt in label order (consecutive
  shards): unequal sizes, few classes.
- `dirichlet`: each class's samples split by proportions drawn from Dir(alpha) (small alpha:
  skewed, large alpha: close to iid).

Every agent gets at least one sample (or the call fails saying why): a scheme that leaves an
agent empty hands it one sample from the largest agent.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

SCHEMES = ("iid", "eqniid", "ueqniid", "dirichlet")
SHARD = 50  # ueqniid shard size (paper)
MAX_SHARDS = 30  # ueqniid: at most this many shards drawn per agent before scaling


def partition(labels: Sequence[int] | np.ndarray, n: int, scheme: str, seed: int = 0,
              alpha: float = 0.5) -> list[np.ndarray]:
    """Split indices 0..len(labels)-1 over `n` agents; returns one sorted index array per agent."""
    labels = np.asarray(labels)
    if scheme not in SCHEMES:
        raise ValueError(f"unknown partition {scheme!r}; choose from {list(SCHEMES)}")
    if n < 1:
        raise ValueError(f"partition needs at least 1 agent, got {n}")
    if len(labels) < n:
        raise ValueError(f"{scheme}: {len(labels)} samples cannot give each of {n} agents one")
    if scheme == "dirichlet" and not alpha > 0:
        raise ValueError(f"dirichlet alpha must be > 0, got {alpha}")
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        parts = np.array_split(rng.permutation(len(labels)), n)
    elif scheme == "eqniid":
        parts = _shards(labels, rng, np.full(n, 2), 2 * n, shuffle=True)
    elif scheme == "ueqniid":
        size = min(SHARD, len(labels) // n)
        total = len(labels) // size
        counts = _scaled_counts(rng.integers(1, MAX_SHARDS + 1, n), total)
        parts = _shards(labels, rng, counts, total, shuffle=False)
    else:
        parts = _dirichlet(labels, n, alpha, rng)
    return [np.sort(p) for p in _fill_empty([np.asarray(p, dtype=np.int64) for p in parts])]


def _shards(labels: np.ndarray, rng: np.random.Generator, counts: np.ndarray, total: int,
            shuffle: bool) -> list[np.ndarray]:
    """Sort by label, cut into `total` near-equal shards, deal `counts[i]` shards to agent i:
    random shards when `shuffle`, else consecutive ones (fewest classes per agent)."""
    by_label = np.argsort(labels, kind="stable")
    shards = np.array_split(by_label, total)
    order = rng.permutation(total) if shuffle else np.arange(total)
    ends = np.cumsum(counts)
    return [np.concatenate([shards[s] for s in order[e - c : e]]) for c, e in zip(counts, ends)]


def _scaled_counts(drawn: np.ndarray, total: int) -> np.ndarray:
    """Scale drawn shard counts to sum to `total` (largest remainders), at least one each."""
    share = drawn / drawn.sum() * (total - len(drawn))
    counts = 1 + np.floor(share).astype(int)
    order = np.argsort(-(share - np.floor(share)), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def _dirichlet(labels: np.ndarray, n: int, alpha: float,
               rng: np.random.Generator) -> list[np.ndarray]:
    parts: list[list[np.ndarray]] = [[] for _ in range(n)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cuts = (np.cumsum(rng.dirichlet(np.full(n, alpha)))[:-1] * len(idx)).astype(int)
        for i, chunk in enumerate(np.split(idx, cuts)):
            parts[i].append(chunk)
    return [np.concatenate(p) for p in parts]


def _fill_empty(parts: list[np.ndarray]) -> list[np.ndarray]:
    """Give every empty agent one sample taken from the currently largest agent."""
    for i, p in enumerate(parts):
        if len(p) == 0:
            donor = max(range(len(parts)), key=lambda j: len(parts[j]))
            parts[i], parts[donor] = parts[donor][-1:], parts[donor][:-1]
    return parts


def summary(labels: Sequence[int] | np.ndarray, parts: Sequence[np.ndarray],
            ids: Sequence[str] | None = None) -> list[dict[str, object]]:
    """Per agent: id, number of samples, number of classes, samples per class."""
    labels = np.asarray(labels)
    classes, code = np.unique(labels, return_inverse=True)
    ids = [str(i) for i in range(len(parts))] if ids is None else list(ids)
    rows = []
    for aid, p in zip(ids, parts, strict=True):
        per_class = np.bincount(code[p], minlength=len(classes)).tolist()
        rows.append({"agent": aid, "samples": len(p), "classes": int(np.count_nonzero(per_class)),
                     "per_class": dict(zip(map(str, classes.tolist()), per_class))})
    return rows


def record(labels: Sequence[int] | np.ndarray, parts: Sequence[np.ndarray], ids: Sequence[str],
           folder: Path, plots: Path | None, title: str) -> None:
    """A run's record of who holds what: `partition.json` in `folder` (see `summary`) and
    `partition.png` in `plots` (None: no picture)."""
    from osmotic.report.rundir import write_json

    rows = summary(labels, parts, ids)
    write_json(folder / "partition.json", rows)
    if plots is not None:
        plot_summary(rows, plots / "partition.png", title)


def plot_summary(rows: Sequence[dict[str, object]], path: str | Path, title: str = "") -> None:
    """Stacked bars: samples per class held by each agent (who holds what, at a glance)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from osmotic.report.plots import save

    classes = list(rows[0]["per_class"])  # type: ignore[arg-type]
    fig = Figure(figsize=(max(4.0, 0.35 * len(rows) + 2), 3))
    ax = fig.subplots()
    bottom = np.zeros(len(rows))
    cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    for k, c in enumerate(classes):
        h = np.array([r["per_class"][c] for r in rows])  # type: ignore[index]
        ax.bar(range(len(rows)), h, bottom=bottom, color=cmap(k % cmap.N), label=c, width=0.8)
        bottom += h
    ax.set_xticks(range(len(rows)), [str(r["agent"]) for r in rows],
                  rotation=90 if len(rows) > 20 else 0, fontsize=7)
    ax.set_xlabel("agent")
    ax.set_ylabel("samples")
    ax.set_title(title or "partition: samples per class")
    if len(classes) <= 20:
        ax.legend(title="class", fontsize=6, title_fontsize=7, ncol=2, bbox_to_anchor=(1, 1),
                  loc="upper left")
    save(fig, path)
