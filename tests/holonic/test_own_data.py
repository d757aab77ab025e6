"""Holonic runs on the user's own data and models, from a YAML config: every format, a model by
import path, its refusal, and live TensorBoard logging read back."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image
from sklearn.datasets import make_classification
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from osmotic.cli import main

FEDAVG3 = {"holarchy": {"id": "R", "members": ["a", "b", "c"]}}
TINY = {"holarchy": FEDAVG3, "rounds": 2, "local_epochs": 1, "batch_size": 16,
        "distribution": "dirichlet", "alpha": 0.5}


def tabular(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y = make_classification(300, 8, n_informative=5, n_classes=3, random_state=0)
    np.savez(folder / "table.npz", features=x, target=y)
    lines = [",".join([*(f"f{i}" for i in range(8)), "label"])]
    lines += [",".join([*map(str, row), str(c)]) for row, c in zip(x, y, strict=True)]
    (folder / "table.csv").write_text("\n".join(lines) + "\n")
    return x, y


def images(folder: Path) -> None:
    rng = np.random.default_rng(0)
    for k in range(3):
        (folder / "pics" / f"c{k}").mkdir(parents=True)
        for i in range(10):
            pixels = (rng.random((9, 9)) * 60 + 60 * k).astype(np.uint8)
            Image.fromarray(pixels, "L").save(folder / "pics" / f"c{k}" / f"{i}.png")


def run_yaml(tmp_path: Path, capsys: pytest.CaptureFixture, *extra: str,
             **settings: Any) -> tuple[int, str, str]:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, **settings}))
    code = main(["holonic", "run", "--config", str(cfg), "--out", str(tmp_path / "r"),
                 "--json", *extra])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("fmt", ["npz", "csv", "images", "digits"])
def test_every_format_runs_with_its_default_model(fmt: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    tabular(tmp_path)
    images(tmp_path)
    data = {"npz": {"format": "npz", "path": "table.npz", "x": "features", "y": "target"},
            "csv": {"format": "csv", "path": "table.csv"},  # relative to the config file
            "images": {"format": "images", "path": "pics", "size": 9},
            "digits": "digits"}[fmt]
    code, out, err = run_yaml(tmp_path, capsys, data=data)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert 0 <= summary["mean_test_accuracy"] <= 1
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["model"] is None and "standardised" in saved["data_source"]
    shapes = {"npz": (8,), "csv": (8,), "images": (1, 9, 9), "digits": (1, 8, 8)}[fmt]
    assert summary["input_shape"] == list(shapes) and summary["model"] == "mlp"


def test_tabular_mlp_learns_and_logs_to_tensorboard(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    tabular(tmp_path)
    code, out, err = run_yaml(tmp_path, capsys, "--log", "tensorboard",
                              data={"format": "npz", "path": "table.npz", "x": "features",
                                    "y": "target"},
                              model="mlp", model_params={"hidden": [32]}, rounds=4,
                              local_epochs=2, lr=0.1)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["mean_test_accuracy"] > 0.6  # 3 classes: chance is 1/3
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"mean_train_loss", "mean_test_accuracy", "messages/vertical", "train_loss/a"} <= \
        set(tags)
    acc = events.Scalars("mean_test_accuracy")
    assert [e.step for e in acc] == [1, 2, 3, 4]
    assert acc[-1].value == pytest.approx(summary["mean_test_accuracy"], abs=1e-6)


def test_model_by_import_path_and_its_refusal(tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    tabular(tmp_path)
    data = {"format": "csv", "path": "table.csv"}
    code, out, err = run_yaml(tmp_path, capsys, data=data,
                              model="tests.models.usernets:TabularNet",
                              model_params={"width": 8})
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["model"] == \
        "tests.models.usernets:TabularNet"
    code, _, err = run_yaml(tmp_path, capsys, data=data, model="tests.models.usernets:ItemNet")
    assert code == 2 and err.count("\n") == 1
    assert "cannot run batched over agents" in err and ".item()" in err


def test_bad_data_is_one_line_naming_the_file(tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    x, y = tabular(tmp_path)
    np.savez(tmp_path / "nan.npz", x=np.where(np.arange(300)[:, None] == 7, np.nan, x), y=y)
    code, _, err = run_yaml(tmp_path, capsys, data={"format": "npz", "path": "nan.npz"})
    assert code == 2 and err.count("\n") == 1
    assert f"{tmp_path / 'nan.npz'}: field x: NaN or infinite values" in err
    code, _, err = run_yaml(tmp_path, capsys, data={"format": "parquet", "path": "t.pq"})
    assert code == 2 and "data" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()  # refused before anything was written
