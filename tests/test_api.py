"""The Python API: `osmotic.holonic.run` and `osmotic.osml.run` on configs or keyword settings,
data in memory or in files; results carry the summary, the metrics and the run directory."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.datasets import make_classification

import osmotic.holonic
import osmotic.osml
from osmotic.data.splits import DataError, Dataset
from osmotic.data.timeseries import write_csv
from osmotic.holonic.config import HolonicConfig
from osmotic.models import resolve_model
from tests.models.usernets import TabularNet

FEDAVG3 = {"holarchy": {"id": "R", "members": ["a", "b", "c"]}}
OSML_TINY = {"epochs": 2, "hidden": 4, "batch_size": 20, "cluster_every": 1,
             "cluster_samples": 20}


def arrays(n: int = 240) -> tuple[np.ndarray, np.ndarray]:
    return make_classification(n, 6, n_informative=4, n_classes=3, random_state=1)


def test_holonic_run_on_arrays_with_a_model_class(tmp_path: Path) -> None:
    x, y = arrays()
    seen: list[dict] = []
    result = osmotic.holonic.run(holarchy=FEDAVG3, data=(x[:200], y[:200]),
                                 test=(x[200:], y[200:]), model=TabularNet,
                                 model_params={"width": 8}, rounds=2, local_epochs=1,
                                 participation=0.67, out=tmp_path / "r", log=seen.append,
                                 progress=False)
    assert result.run_dir == tmp_path / "r"
    assert result.summary == json.loads((tmp_path / "r" / "summary.json").read_text())
    assert [row["round"] for row in result.metrics] == [1, 2] == [r["round"] for r in seen]
    assert all(row["trained"] == 2 for row in result.metrics)
    assert result.summary["model"] == "tests.models.usernets:TabularNet"
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["participation"] == 0.67 and "arrays; test: arrays (test)" in \
        saved["data_source"]


def test_a_model_class_defined_inside_a_function(tmp_path: Path) -> None:
    class Local(TabularNet):
        pass

    x, y = arrays()
    result = osmotic.holonic.run(holarchy=FEDAVG3, data=(x, y), model=Local, rounds=1,
                                 local_epochs=1, out=tmp_path / "r", progress=False)
    assert result.summary["model"].endswith("<locals>.Local")
    with pytest.raises(ValueError, match="defined inside a function, so only the process"):
        resolve_model("tests.elsewhere:make.<locals>.Net")


def test_holonic_run_on_a_config_object_a_file_and_a_dataset(tmp_path: Path) -> None:
    x, y = arrays()
    config = HolonicConfig(holarchy=FEDAVG3, rounds=1, local_epochs=1, model="mlp")
    data = Dataset.from_arrays(x, y, holdout=40)
    first = osmotic.holonic.run(config, data=data, out=tmp_path / "a", progress=False)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config.model_dump()))
    again = osmotic.holonic.run(tmp_path / "run.yaml", data=data, out=tmp_path / "b",
                                progress=False, seed=0)
    assert first.summary["mean_test_accuracy"] == again.summary["mean_test_accuracy"]
    digits = osmotic.holonic.run(config, data="digits", out=tmp_path / "c",
                                 progress=False)
    assert digits.summary["input_shape"] == [1, 8, 8]


def test_holonic_bad_settings_and_data_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^settings: participation: Input should be less "
                       "than or equal to 1"):
        osmotic.holonic.run(holarchy=FEDAVG3, participation=1.5)
    with pytest.raises(ValueError, match="give exactly one of `structure`"):
        osmotic.holonic.run(rounds=1)
    x, y = arrays()
    with pytest.raises(DataError, match="arrays: fields x and y disagree"):
        osmotic.holonic.run(holarchy=FEDAVG3, data=(x, y[:-1]), out=tmp_path / "r")


def test_osml_run_on_series_in_memory_and_on_files(tmp_path: Path,
                                                  tiny_context: Callable) -> None:
    train, test = tiny_context()
    mem = osmotic.osml.run(train=train, test=test, out=tmp_path / "m", progress=False,
                           **OSML_TINY)
    assert [row["epoch"] for row in mem.metrics] == [1, 2]
    assert set(mem.summary["spread"]) == set(train)
    write_csv(tmp_path / "train.csv", train)
    write_csv(tmp_path / "test.csv", test)
    files = osmotic.osml.run(osmotic.osml.OsmlConfig(**OSML_TINY), train=tmp_path / "train.csv",
                             test=tmp_path / "test.csv", out=tmp_path / "f",
                             progress=False)
    assert files.summary["context_accuracy"] == pytest.approx(mem.summary["context_accuracy"],
                                                              abs=1e-5)
    again = osmotic.osml.run(tmp_path / "f" / "config.yaml", out=tmp_path / "g",
                             progress=False)  # the run's own config, data section too
    assert again.summary["context_accuracy"] == files.summary["context_accuracy"]


def test_osml_bad_series_are_one_line(tiny_context: Callable) -> None:
    train, test = tiny_context()
    bad = {**train, "0": np.full_like(train["0"], np.nan)}
    with pytest.raises(DataError, match="train series of agent 0: NaN or infinite values"):
        osmotic.osml.run(train=bad, test=test)
    with pytest.raises(DataError, match="train and test hold different agents"):
        osmotic.osml.run(train=train, test={"0": test["0"]})
    with pytest.raises(ValueError, match="give train and test"):
        osmotic.osml.run(train=train)


def test_a_run_on_arrays_is_not_resumed_from_mnist(tmp_path: Path) -> None:
    x, y = arrays()
    osmotic.holonic.run(holarchy=FEDAVG3, data=(x, y), rounds=1, local_epochs=1,
                        out=tmp_path / "r", progress=False)
    (tmp_path / "r" / "summary.json").unlink()
    from osmotic.holonic.runner import resume

    with pytest.raises(ValueError, match="data were given in memory from Python"):
        resume(tmp_path / "r")
