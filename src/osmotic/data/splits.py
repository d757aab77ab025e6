"""A labelled data set in memory: a training pool and a test set (`Dataset`, two `Split`s), and
the seeded stratified hold-out that makes a test set out of a pool that has none."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from osmotic.data.timeseries import DataError

HOLDOUT_FRACTION = 0.2  # default test share of a pool without a test set (MNIST: 1,000 images)


@dataclass
class Split:
    """Inputs `images` [n, ...] (images or tabular rows, float32) and labels [n] (int64)."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows: np.ndarray) -> Split:
        return Split(self.images[rows], self.labels[rows])


@dataclass
class Dataset:
    """A training pool and a test set; `source` says where they came from."""

    train: Split
    test: Split
    source: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample: (F,) for tabular rows, (C, H, W) for images."""
        return tuple(self.train.images.shape[1:])

    @property
    def classes(self) -> int:
        """Number of classes: labels run from 0 to classes - 1."""
        return int(max(self.train.labels.max(), self.test.labels.max())) + 1

    def require(self, agents: int, what: str = "terminals") -> None:
        """Refuse a pool too small to give each of `agents` at least one sample."""
        if len(self.train) < agents:
            raise DataError(f"{self.source}: {len(self.train)} training samples for {agents} "
                            f"{what}; each needs at least one")

    def pool_subset(self, size: int, seed: int) -> Dataset:
        """A stratified subset of `size` samples of the pool (quick looks, tests)."""
        if size >= len(self.train):
            return self
        _, keep = stratified_holdout(self.train.labels.numpy(), size, seed)
        return Dataset(self.train.subset(keep), self.test,
                       f"{self.source}; pool subset of {size}")

    @classmethod
    def from_arrays(cls, x: Any, y: Any, test: tuple[Any, Any] | None = None, *,
                    holdout: float | None = None, seed: int = 0,
                    name: str = "arrays", fields: tuple[str, str] = ("x", "y")) -> Dataset:
        """Checked, standardised dataset from arrays (NumPy, torch or lists): `x` [n, F] or
        images [n, H, W] / [n, C, H, W], `y` [n] integer labels; `test` an (x, y) pair, else a
        stratified hold-out of `holdout` samples (a float below 1: that share; default 20 %).
        `name` and `fields` name the arrays in error messages."""
        train = checked(x, y, name, fields)
        held = checked(*test, f"{name} (test)", fields) if test is not None else None
        return assemble(train, held, name, f"{name} (test)" if test is not None else None,
                        holdout, seed, fields[1])


def checked(x: Any, y: Any, name: str, fields: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """(x float32 [n, F] / [n, C, H, W], y int64 [n]) after every check of the issue."""
    fx, fy = fields
    x = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x)
    y = np.asarray(y.detach().cpu() if isinstance(y, Tensor) else y)
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(f"{name}: field {fx}: values of type {x.dtype}, expected numbers")
    if x.ndim not in (2, 3, 4):
        raise DataError(f"{name}: field {fx}: shape {x.shape}; expected [n, features], "
                        "[n, H, W] or [n, C, H, W]")
    if y.ndim != 1:
        raise DataError(f"{name}: field {fy}: shape {y.shape}; expected one label per sample "
                        "[n]")
    if len(x) != len(y):
        raise DataError(f"{name}: fields {fx} and {fy} disagree: {len(x)} samples but "
                        f"{len(y)} labels")
    if len(x) == 0:
        raise DataError(f"{name}: no samples")
    if x[0].size == 0:
        raise DataError(f"{name}: field {fx}: samples of shape {x.shape[1:]} hold no values")
    x = x.astype(np.float32)
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(1)
    if bad.any():
        raise DataError(f"{name}: field {fx}: NaN or infinite values in {int(bad.sum())} "
                        f"samples (first: sample {int(np.argmax(bad))})")
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise DataError(f"{name}: field {fy}: labels of type {y.dtype}, expected integers")
    yf = y.astype(np.float64)
    wrong = ~np.isfinite(yf) | (yf != np.round(yf)) | (yf < 0)
    if wrong.any():
        i = int(np.argmax(wrong))
        raise DataError(f"{name}: field {fy}: labels must be integers >= 0; sample {i} has "
                        f"{y[i].item()!r}")
    return (x[:, None] if x.ndim == 3 else x), yf.astype(np.int64)


def assemble(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray] | None,
             name: str, test_name: str | None, holdout: float | None,
             seed: int, label: str = "y") -> Dataset:
    """Hold out a test set if none is given, check the two agree, standardise both with the
    training statistics. Training data of one class are refused (field `label`): every model
    would score 1.0 on them while learning nothing."""
    x, y = train
    if len(np.unique(y)) < 2:
        raise DataError(f"{name}: field {label}: every label is {int(y[0])}; a classifier "
                        "needs at least two classes")
    if test is None:
        n = holdout_size(holdout, len(y), name)
        keep, held = stratified_holdout(y, n, seed)
        (x, y), test = (x[keep], y[keep]), (x[held], y[held])
        source = f"{name}; test: stratified hold-out of {n}"
    else:
        if test[0].shape[1:] != x.shape[1:]:
            raise DataError(f"{test_name}: samples of shape {test[0].shape[1:]}, but the "
                            f"training data's are {x.shape[1:]}")
        source = f"{name}; test: {test_name}"
    axes = (0,) if x.ndim == 2 else (0, 2, 3)  # per feature / per channel
    mean = x.mean(axis=axes, keepdims=True)
    std = x.std(axis=axes, keepdims=True)
    std[std == 0] = 1.0
    x, test = (x - mean) / std, ((test[0] - mean) / std, test[1])
    source += "; standardised with training statistics"
    return Dataset(Split(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                         torch.from_numpy(y)),
                   Split(torch.from_numpy(np.ascontiguousarray(test[0], dtype=np.float32)),
                         torch.from_numpy(test[1])), source)


def holdout_size(holdout: float | None, n: int, name: str) -> int:
    """Samples to hold out of `n`: `holdout` itself, or a share of `n` when below 1."""
    size = round(n * (HOLDOUT_FRACTION if holdout is None else holdout)) \
        if holdout is None or holdout < 1 else int(holdout)
    if not 0 < size < n:
        raise DataError(f"{name}: cannot hold out {size} of {n} samples as a test set "
                        "(field holdout); give a smaller holdout or a `test:` entry")
    return size


def stratified_holdout(labels: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held out): `n` samples held out with the pool's class proportions."""
    if not 0 < n < len(labels):
        raise ValueError(f"holdout must be between 1 and {len(labels) - 1}, got {n}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    take = np.floor(counts / len(labels) * n).astype(int)
    order = np.argsort(-(counts / len(labels) * n - take), kind="stable")  # largest remainders
    take[order[: n - take.sum()]] += 1
    held = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k]
                           for c, k in zip(classes, take, strict=True)])
    mask = np.zeros(len(labels), dtype=bool)
    mask[held] = True
    return np.flatnonzero(~mask), np.sort(held)
