"""The user's own data: each format read right, each defect one line naming file and field."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from osmotic.data import partition
from osmotic.data.datasets import DataError, Dataset, load_dataset, parse_spec


def tabular(n: int = 60, f: int = 4, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    return rng.normal(5.0, 3.0, (n, f)) + y[:, None], y


def npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.write_text("\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n")
    return path


def image_folder(root: Path, classes: int = 2, per_class: int = 4, mode: str = "L") -> Path:
    rng = np.random.default_rng(0)
    for k in range(classes):
        (root / f"class{k}").mkdir(parents=True)
        for i in range(per_class):
            shape = (12, 10) if mode == "L" else (12, 10, 3)
            pixels = rng.integers(0, 255, shape, dtype=np.uint8)
            Image.fromarray(pixels, mode).save(root / f"class{k}" / f"{i}.png")
    return root


# -- good files ------------------------------------------------------------------------------


def test_npz_tabular_is_standardised_with_training_statistics(tmp_path: Path) -> None:
    x, y = tabular(100)
    data = load_dataset({"format": "npz", "path": str(npz(tmp_path / "d.npz", x=x, y=y))},
                        seed=1)
    assert data.input_shape == (4,) and data.classes == 3
    assert (len(data.train), len(data.test)) == (80, 20)  # default: 20 % stratified hold-out
    assert np.bincount(data.test.labels.numpy()).tolist() == [7, 7, 6]
    train = data.train.images.numpy()
    np.testing.assert_allclose(train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(train.std(0), 1, atol=1e-4)
    assert abs(float(data.test.images.mean())) > 1e-4  # test: the training statistics, not its own
    assert "standardised" in data.source


def test_npz_images_and_custom_keys_and_test_entry(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train = npz(tmp_path / "tr.npz", pixels=rng.integers(0, 255, (30, 8, 8)).astype(np.uint8),
                target=np.arange(30) % 5)
    test = npz(tmp_path / "te.npz", pixels=rng.integers(0, 255, (10, 8, 8)).astype(np.uint8),
               target=np.arange(10) % 5)
    data = load_dataset({"format": "npz", "path": str(train), "x": "pixels", "y": "target"},
                        {"format": "npz", "path": str(test), "x": "pixels", "y": "target"})
    assert data.train.images.shape == (30, 1, 8, 8) and data.test.images.shape == (10, 1, 8, 8)
    assert data.classes == 5 and f"test: {test}" in data.source


def test_csv(tmp_path: Path) -> None:
    x, y = tabular(30)
    rows = [[*map(float, r), int(c)] for r, c in zip(x, y, strict=True)]
    path = write_csv(tmp_path / "d.csv", ["a", "b", "c", "d", "outcome"], rows)
    data = load_dataset({"format": "csv", "path": str(path), "label": "outcome"}, holdout=6)
    assert data.input_shape == (4,) and (len(data.train), len(data.test)) == (24, 6)
    assert sorted(data.train.labels.tolist() + data.test.labels.tolist()) == sorted(y.tolist())


def test_image_folder_gray_and_rgb(tmp_path: Path) -> None:
    gray = load_dataset({"format": "images", "path": str(image_folder(tmp_path / "g")),
                         "size": 16}, holdout=2)
    assert gray.input_shape == (1, 16, 16) and gray.classes == 2 and len(gray.train) == 6
    rgb = load_dataset({"format": "images", "path": str(image_folder(tmp_path / "c", 3, 3,
                                                                    "RGB")),
                        "size": [6, 9]}, holdout=3)
    assert rgb.input_shape == (3, 6, 9) and rgb.classes == 3


def test_builtins() -> None:
    digits = load_dataset("digits", seed=0)
    assert digits.input_shape == (1, 8, 8) and digits.classes == 10
    assert len(digits.train) + len(digits.test) == 1797
    mnist = load_dataset({"format": "mnist"}, holdout=500)
    assert mnist.input_shape == (1, 28, 28) and len(mnist.test) == 500


def test_arrays_in_memory() -> None:
    x, y = tabular(50)
    data = Dataset.from_arrays(x, y, holdout=0.1)
    assert (len(data.train), len(data.test)) == (45, 5) and data.source.startswith("arrays")


@pytest.mark.parametrize("scheme", partition.SCHEMES)
@pytest.mark.parametrize("fmt", ["npz", "csv", "images", "digits"])
def test_every_partition_on_every_format(scheme: str, fmt: str, tmp_path: Path) -> None:
    x, y = tabular(120)
    spec: object = {
        "npz": {"format": "npz", "path": str(npz(tmp_path / "d.npz", x=x, y=y))},
        "csv": {"format": "csv", "path": str(write_csv(
            tmp_path / "d.csv", ["a", "b", "c", "d", "label"],
            [[*r, c] for r, c in zip(x.tolist(), y.tolist(), strict=True)]))},
        "images": {"format": "images", "path": str(image_folder(tmp_path / "i", 3, 20)),
                   "size": 8},
        "digits": "digits",
    }[fmt]
    data = load_dataset(spec)
    parts = partition.partition(data.train.labels.numpy(), 5, scheme, seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(data.train)))
    assert all(len(p) > 0 for p in parts)


# -- each bad input: one line, naming the file and the field --------------------------------


def _bad_npz(tmp_path: Path, case: str) -> tuple[dict[str, object], str]:
    x, y = tabular(20)
    f = tmp_path / "bad.npz"
    if case == "unreadable":
        f.write_bytes(b"not a zip file at all")
        return {"path": str(f)}, "not a readable .npz file"
    if case == "missing key":
        npz(f, features=x, y=y)
        return {"path": str(f)}, "no array 'x' (field x)"
    if case == "shapes disagree":
        npz(f, x=x, y=y[:-1])
        return {"path": str(f)}, "fields x and y disagree: 20 samples but 19 labels"
    if case == "nan":
        x[3, 1] = np.nan
        npz(f, x=x, y=y)
        return {"path": str(f)}, "field x: NaN or infinite values in 1 samples (first: sample 3)"
    if case == "inf":
        x[5, 0] = np.inf
        npz(f, x=x, y=y)
        return {"path": str(f)}, "field x: NaN or infinite values"
    if case == "float labels":
        npz(f, x=x, y=y + 0.5)
        return {"path": str(f)}, "field y: labels must be integers >= 0; sample 0 has 0.5"
    if case == "string labels":
        npz(f, x=x, y=np.array(["a"] * 20))
        return {"path": str(f)}, "field y: labels of type <U1, expected integers"
    if case == "object array":
        np.savez(f, x=np.array([object()] * 20, dtype=object), y=y)
        return {"path": str(f)}, "allow_pickle=False"
    if case == "labels not 1-d":
        npz(f, x=x, y=y[:, None])
        return {"path": str(f)}, "field y: shape (20, 1)"
    raise AssertionError(case)


NPZ_CASES = ["unreadable", "missing key", "shapes disagree", "nan", "inf", "float labels",
             "string labels", "object array", "labels not 1-d"]


@pytest.mark.parametrize("case", NPZ_CASES)
def test_npz_errors(case: str, tmp_path: Path) -> None:
    spec, message = _bad_npz(tmp_path, case)
    with pytest.raises(DataError) as e:
        load_dataset({"format": "npz", **spec})
    text = str(e.value)
    assert message in text and str(tmp_path / "bad.npz") in text and "\n" not in text


CSV_CASES = {
    "missing column": ("a,b,y\n1,2,0\n", "no column 'label' (field label)"),
    "not a number": ("a,b,label\n1,x,0\n", "column 'b', row 2: 'x' is not a number"),
    "empty cell": ("a,b,label\n1,,0\n", "NaN or infinite values"),
    "inf": ("a,b,label\n1,inf,0\n", "NaN or infinite values"),
    "ragged": ("a,b,label\n1,2,0\n1,2\n", "row 3 has 2 fields, the header 3"),
    "float labels": ("a,b,label\n1,2,0.5\n", "field label: labels must be integers"),
    "empty": ("", "empty file"),
}


@pytest.mark.parametrize("case", CSV_CASES)
def test_csv_errors(case: str, tmp_path: Path) -> None:
    body, message = CSV_CASES[case]
    f = tmp_path / "bad.csv"
    f.write_text(body)
    with pytest.raises(DataError) as e:
        load_dataset({"format": "csv", "path": str(f)})
    assert message in str(e.value) and str(f) in str(e.value)


def test_csv_unreadable(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"{tmp_path / 'none.csv'}: not a readable CSV file"):
        load_dataset({"format": "csv", "path": str(tmp_path / "none.csv")})


def test_image_folder_errors(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "imgs")
    (root / "class2").mkdir()
    with pytest.raises(DataError, match=f"{root / 'class2'}: class folder with no image"):
        load_dataset({"format": "images", "path": str(root)})
    (root / "class2" / "broken.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(DataError, match=f"{root / 'class2' / 'broken.png'}: not a readable "
                       "image"):
        load_dataset({"format": "images", "path": str(root)})
    with pytest.raises(DataError, match="no such folder"):
        load_dataset({"format": "images", "path": str(tmp_path / "nowhere")})


def test_spec_and_test_set_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data: "):
        parse_spec({"format": "parquet", "path": "x"})
    with pytest.raises(DataError, match="data: .*path"):
        parse_spec({"format": "npz"})
    x, y = tabular(20)
    train = npz(tmp_path / "a.npz", x=x, y=y)
    test = npz(tmp_path / "b.npz", x=x[:, :3], y=y)
    with pytest.raises(DataError, match=f"{test}: samples of shape \\(3,\\), but the training "
                       "data's are \\(4,\\)"):
        load_dataset({"format": "npz", "path": str(train)}, {"format": "npz", "path": str(test)})


def test_fewer_samples_than_terminals(tmp_path: Path) -> None:
    x, y = tabular(12)
    data = load_dataset({"format": "npz", "path": str(npz(tmp_path / "s.npz", x=x, y=y))},
                        holdout=2)
    data.require(10)
    with pytest.raises(DataError, match=f"{tmp_path / 's.npz'}.*10 training samples for 11 "
                       "terminals"):
        data.require(11)


# -- inputs checked, never guessed -----------------------------------------------------------


def test_a_byte_order_mark_is_no_part_of_the_first_column(tmp_path: Path) -> None:
    """Spreadsheets save UTF-8 CSV with a BOM; the label column may well come first."""
    x, y = tabular(20, 2)
    f = tmp_path / "bom.csv"
    rows = "\n".join(f"{int(b)},{a},{c}" for (a, c), b in zip(x, y, strict=True))
    f.write_text("label,a,b\n" + rows + "\n", encoding="utf-8-sig")
    data = load_dataset({"format": "csv", "path": str(f)}, holdout=5)
    assert data.input_shape == (2,) and data.classes == 3


@pytest.mark.parametrize("fmt", ["npz", "csv", "images", "arrays"])
def test_one_class_is_refused_naming_file_and_field(fmt: str, tmp_path: Path) -> None:
    """Every model scores 1.0 on one class while learning nothing."""
    x, _ = tabular(20)
    y = np.zeros(20, dtype=int)
    if fmt == "arrays":
        with pytest.raises(DataError, match="arrays: field y: every label is 0; a classifier "
                           "needs at least two classes"):
            Dataset.from_arrays(x, y)
        return
    if fmt == "npz":
        spec = {"path": str(npz(tmp_path / "one.npz", features=x, outcome=y)), "x": "features",
                "y": "outcome"}
        field = "outcome"
    elif fmt == "csv":
        spec = {"path": str(write_csv(tmp_path / "one.csv", ["a", "b", "c", "d", "label"],
                                      [[*r, 0] for r in x]))}
        field = "label"
    else:
        spec = {"path": str(image_folder(tmp_path / "imgs", classes=1))}
        field = "path"
    with pytest.raises(DataError) as e:
        load_dataset({"format": fmt, **spec})
    assert f"{spec['path']}: field {field}" in str(e.value) and "two classes" in str(e.value)


def test_empty_files_and_samples_without_values_are_refused(tmp_path: Path) -> None:
    header_only = write_csv(tmp_path / "h.csv", ["a", "label"], [])
    with pytest.raises(DataError, match=f"{header_only}: no samples"):
        load_dataset({"format": "csv", "path": str(header_only)})
    empty = npz(tmp_path / "e.npz", x=np.zeros((0, 3)), y=np.zeros(0, dtype=int))
    with pytest.raises(DataError, match=f"{empty}: no samples"):
        load_dataset({"format": "npz", "path": str(empty)})
    hollow = npz(tmp_path / "z.npz", x=np.zeros((6, 0)), y=np.arange(6) % 2)
    with pytest.raises(DataError, match=f"{hollow}: field x: samples of shape \\(0,\\) hold "
                       "no values"):
        load_dataset({"format": "npz", "path": str(hollow)})
    (tmp_path / "noclass").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset({"format": "images", "path": str(tmp_path / "noclass")})


def test_a_decompression_bomb_is_one_line_and_no_warning(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; both are one line."""
    root = image_folder(tmp_path / "imgs")  # 12 x 10 = 120 pixels each
    for limit in (100, 50):  # 120 > 100: Pillow's warning; 120 > 2 x 50: its error
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a warning reaching the terminal fails the test
            with pytest.raises(DataError, match=f"{root / 'class0' / '0.png'}: more than "
                               f"{limit} pixels, Pillow's limit against decompression bombs"):
                load_dataset({"format": "images", "path": str(root)})
