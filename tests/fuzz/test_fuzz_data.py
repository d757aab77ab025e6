"""Fuzzed data files: OSM-L series CSV, tabular CSV, npz archives (never unpickled) and image
folders, read by the modes that take them."""
from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import collecting, fuzz_settings, new_case, run_cli
from tests.fuzz.strategies import BASE, mangled, series_csv, table_csv

UNPICKLED = "UNPICKLED"
"""A file that an object array's unpickling would create in the case's folder: the harness sees
it as a file written outside --out."""


class Trap:
    """Pickles to a call that creates UNPICKLED: loading it must never happen."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (UNPICKLED, "w"))


def _settings(mode: str, **changes: Any) -> str:
    settings = {**BASE[mode], **changes}
    return yaml.safe_dump(settings, sort_keys=False)


# -- OSM-L series ----------------------------------------------------------------------------

@collecting
@fuzz_settings(quick=10, deep=300)
@given(data=st.data())
def test_osml_series(data: st.DataObject, fuzz_root: Path) -> None:
    agents = data.draw(st.lists(st.tuples(st.sampled_from(["0", "1", "M0", "a.b", "x_1"]),
                                          st.integers(1, 3)),
                                min_size=1, max_size=4, unique_by=lambda t: t[0]),
                       label="agents")
    same = data.draw(st.booleans(), label="same agents in test")
    train = data.draw(series_csv(agents), label="train.csv")
    test = data.draw(series_csv(agents if same else None), label="test.csv")
    tiny = {k: v for k, v in BASE["osml"].items() if k != "data"}
    tiny.update(data.draw(st.fixed_dictionaries({}, optional={
        "window": st.sampled_from([1, 2, 3, 10, 39]),
        "batch_size": st.sampled_from([2, 3, 20]),
        "cluster_samples": st.sampled_from([2, 5, 20]),
        "agents": st.lists(st.sampled_from(["0", "1", "M0", "zz"]), max_size=3, unique=True),
        "rank_pairs": st.sampled_from([1, 2]),
        "preserve": st.sampled_from(["infonce", "reconstruction", "reference"]),
    }), label="settings"))
    how = data.draw(st.sampled_from(["options", "data section"]), label="how")
    with new_case(fuzz_root) as case:
        case.write("train.csv", train)
        case.write("test.csv", test)
        if how == "options":
            case.write("tiny.yaml", yaml.safe_dump(tiny))
            run_cli(case, ["osml", "run", "--train", "train.csv", "--test", "test.csv",
                           "--config", "tiny.yaml", "--out", "out"])
        else:
            case.write("tiny.yaml", yaml.safe_dump(
                {**tiny, "data": {"train": "train.csv", "test": "test.csv"}}))
            run_cli(case, ["run", "tiny.yaml", "--out", "out"])


# -- tabular CSV -----------------------------------------------------------------------------

@collecting
@fuzz_settings(quick=8, deep=200)
@given(data=st.data())
def test_tabular_csv(data: st.DataObject, fuzz_root: Path) -> None:
    mode = data.draw(st.sampled_from(["holonic", "holonic", "dssl"]), label="mode")
    label = data.draw(st.sampled_from(["label", "y"]), label="label column")
    spec: dict[str, Any] = {"format": "csv", "path": "data.csv", "label": label}
    changes: dict[str, Any] = {"data": spec}
    with_test = data.draw(st.booleans(), label="test file")
    if with_test:
        changes["test"] = {"format": "csv", "path": "test.csv", "label": label}
    changes.update(data.draw(st.fixed_dictionaries({}, optional={
        "holdout": st.sampled_from([1, 0.5, 0.99, 3, 0.01]),
        "distribution": st.sampled_from(["iid", "eqniid", "ueqniid", "dirichlet"]),
        "pool_size": st.sampled_from([1, 5, 50]),
    }) if mode == "holonic" else st.just({}), label="settings"))
    with new_case(fuzz_root) as case:
        case.write("data.csv", data.draw(table_csv(label), label="data.csv"))
        if with_test:
            case.write("test.csv", data.draw(table_csv(label), label="test.csv"))
        case.write("config.yaml", _settings(mode, **changes))
        run_cli(case, ["run", "config.yaml", "--out", "out"])


# -- npz -------------------------------------------------------------------------------------

DTYPES = ["float32", "float64", "float16", "int64", "uint8", "bool", "complex64", "U3", "object",
          "datetime64[s]", "structured", "int8"]


def _array(rng: np.random.Generator, shape: tuple[int, ...], dtype: str, labels: int = 0
           ) -> np.ndarray:
    if dtype == "object":
        a = np.empty(shape, dtype=object)
        a.flat[:] = [Trap() for _ in range(a.size)]
        return a
    if dtype == "structured":
        return np.zeros(shape, dtype=[("a", "f4"), ("b", "i4")])
    if dtype == "U3":
        return rng.integers(0, 9, shape).astype("U3")
    if dtype.startswith("datetime"):
        return rng.integers(0, 10**6, shape).astype(dtype)
    if labels:
        return rng.integers(0, labels, shape).astype(dtype)
    return rng.normal(size=shape).astype(dtype)


@st.composite
def npz_file(draw: st.DrawFn) -> tuple[bytes, str, str, str]:
    """An .npz archive (bytes), its x and y keys, and what it holds (for the report)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    n = draw(st.sampled_from([0, 1, 3, 12, 30]) | st.integers(0, 40))
    kind = draw(st.sampled_from(["images", "images", "channels", "tabular", "flat", "scalar",
                                 "5d"]))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    shape = {"images": (n, h, w), "channels": (n, draw(st.integers(1, 4)), h, w),
             "tabular": (n, draw(st.integers(0, 6))), "flat": (n,), "scalar": (),
             "5d": (n, 1, 1, h, w)}[kind]
    dtype = draw(st.sampled_from(["float32"] * 6 + DTYPES))
    x = _array(rng, shape, dtype)
    if dtype.startswith("float") and x.size and draw(st.integers(0, 4)) == 0:
        x.flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from([np.nan, np.inf,
                                                                         -np.inf, 1e30]))
    classes = draw(st.integers(1, 4))
    y_kind = draw(st.sampled_from(["good"] * 6 + ["float", "negative", "2d", "short", "object",
                                                  "huge", "bool", "text", "fraction", "empty"]))
    y = _array(rng, (n,), "int64", classes)
    y = {"good": y, "float": y.astype("float32"), "negative": y - 2, "2d": y[:, None],
         "short": y[: max(0, n - 1)], "object": _array(rng, (n,), "object"),
         "huge": y + 2**62, "bool": y.astype(bool), "text": y.astype("U2"),
         "fraction": y + 0.5, "empty": y[:0]}[y_kind]
    xk = draw(st.sampled_from(["x"] * 5 + ["images", "", "x/y", "arr_0"]))
    yk = draw(st.sampled_from(["y"] * 5 + ["labels", "x"]))
    buffer = io.BytesIO()
    arrays = {xk: x} if xk == yk else {xk: x, yk: y}
    try:
        np.savez(buffer, **arrays)
    except ValueError:  # a name the zip cannot take
        np.savez(buffer, x=x, y=y)
    raw = buffer.getvalue()
    how = draw(st.sampled_from(["keep"] * 6 + ["mangle", "pickle", "zip of text", "npy"]))
    if how == "mangle":
        raw = draw(mangled(raw))
    elif how == "pickle":  # a pickle named .npz: np.load would unpickle it with allow_pickle
        import pickle

        raw = pickle.dumps({"x": Trap()})
    elif how == "zip of text":
        zbuf = io.BytesIO()
        with zipfile.ZipFile(zbuf, "w") as z:
            z.writestr("x.npy", b"not an array")
            z.writestr("y.txt", b"1,2,3")
        raw = zbuf.getvalue()
    elif how == "npy":  # one array's .npy, not an archive
        one = io.BytesIO()
        np.save(one, x, allow_pickle=True)
        raw = one.getvalue()
    about = f"x {xk!r} {shape} {dtype}, y {yk!r} {y_kind}, file {how}"
    return raw, xk, yk, about


@collecting
@fuzz_settings(quick=10, deep=300)
@given(data=st.data())
def test_npz(data: st.DataObject, fuzz_root: Path) -> None:
    mode = data.draw(st.sampled_from(["holonic", "dssl"]), label="mode")
    raw, xk, yk, about = data.draw(npz_file(), label="data.npz")
    spec_keys = data.draw(st.sampled_from([(xk, yk), ("x", "y")]), label="spec keys")
    changes: dict[str, Any] = {"data": {"format": "npz", "path": "data.npz", "x": spec_keys[0],
                                        "y": spec_keys[1]}}
    test_file = data.draw(st.booleans(), label="test file")
    with new_case(fuzz_root) as case:
        case.note(f"data.npz: {about}")
        case.write("data.npz", raw)
        if test_file:
            traw, txk, tyk, tabout = data.draw(npz_file(), label="test.npz")
            case.note(f"test.npz: {tabout}")
            case.write("test.npz", traw)
            changes["test"] = {"format": "npz", "path": "test.npz", "x": txk, "y": tyk}
        case.write("config.yaml", _settings(mode, **changes))
        run_cli(case, ["run", "config.yaml", "--out", "out"])


# -- image folders ---------------------------------------------------------------------------

def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def bomb_png(width: int, height: int) -> bytes:
    """A few bytes that declare a huge image (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) +
            _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _png_chunk(b"IEND", b""))


@st.composite
def image_file(draw: st.DrawFn) -> tuple[str, bytes | None]:
    """(file name, bytes) of one entry of a class folder; None bytes: a folder of that name."""
    from PIL import Image

    kind = draw(st.sampled_from(["png"] * 5 + ["jpeg", "gif as png", "garbage", "empty",
                                               "truncated", "text", "bomb", "warn bomb",
                                               "folder", "upper"]))
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "P", "1", "I;16", "LA"]))
    w, h = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    seed = draw(st.integers(0, 255))
    name = f"{draw(st.integers(0, 99))}"
    if kind == "bomb":
        return name + ".png", bomb_png(100_000, 100_000)
    if kind == "warn bomb":
        return name + ".png", bomb_png(10_000, 10_000)
    if kind == "garbage":
        return name + ".png", draw(st.binary(max_size=64))
    if kind == "empty":
        return name + ".jpg", b""
    if kind == "text":
        return name + ".txt", b"not an image"
    if kind == "folder":
        return name + ".png", None
    image = Image.new(mode if kind == "png" else "RGB", (w, h), color=seed)
    buffer = io.BytesIO()
    fmt = {"jpeg": "JPEG", "gif as png": "GIF"}.get(kind, "PNG")
    image.save(buffer, format=fmt)
    raw = buffer.getvalue()
    if kind == "truncated":
        raw = raw[:draw(st.integers(8, max(8, len(raw) - 1)))]
    suffix = {"jpeg": ".jpeg", "upper": ".PNG"}.get(kind, ".png")
    return name + suffix, raw


@collecting
@fuzz_settings(quick=8, deep=250)
@given(data=st.data())
def test_image_folder(data: st.DataObject, fuzz_root: Path) -> None:
    mode = data.draw(st.sampled_from(["holonic", "dssl"]), label="mode")
    classes = data.draw(st.integers(0, 3), label="classes")
    size = data.draw(st.sampled_from([8, 8, 4, 1, [6, 4], [8, 8]]), label="size")
    changes: dict[str, Any] = {"data": {"format": "images", "path": "images", "size": size}}
    changes.update(data.draw(st.fixed_dictionaries({}, optional={
        "holdout": st.sampled_from([1, 2, 0.5]), "grayscale": st.booleans()}), label="more"))
    if "grayscale" in changes:
        changes["data"]["grayscale"] = changes.pop("grayscale")
    if mode == "holonic":
        changes["structure"] = data.draw(st.sampled_from(["1P", "1P", "2L"]), label="structure")
    with new_case(fuzz_root) as case:
        case.mkdir("images")
        for k in range(classes):
            case.mkdir(f"images/c{k}")
            count = data.draw(st.integers(0, 8), label=f"images of class {k}")
            for i in range(count):
                name, raw = data.draw(image_file(), label="image")
                name = f"{i}-{name}"
                if raw is None:
                    case.mkdir(f"images/c{k}/{name}")
                    case.note(f"images/c{k}/{name}/ is a folder")
                else:
                    case.write(f"images/c{k}/{name}", raw)
        if data.draw(st.booleans(), label="stray file"):
            case.write("images/README.txt", "a stray file beside the class folders")
        case.write("config.yaml", _settings(mode, **changes))
        run_cli(case, ["run", "config.yaml", "--out", "out"])
