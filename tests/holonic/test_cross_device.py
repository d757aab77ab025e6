"""Cross-device rounds: sampled terminals hold a model only while they train, and give the
numbers a population of all terminals gives; evaluation is batched over distinct models and
can test a seeded sample of terminals (`eval_terminals`) with its standard error."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.nn.utils import vector_to_parameters

from osmotic.cli import main
from osmotic.holarchy.builders import hierarchical
from osmotic.holarchy.trainer import Evaluator
from osmotic.holonic import runner
from osmotic.holonic.config import HolonicConfig
from osmotic.holonic.runner import load_data, run, standard_error
from osmotic.models.mlp import MLP

# Two heads over 8 and 6 terminals, a third of them drawn per round, some dropping out:
# heads wait, aggregate the members that reported and report up every K = 2 rounds.
SMALL = {"holarchy": hierarchical([range(8), range(8, 14)]).to_dict(), "data": "digits",
         "participation": 0.34, "dropout_rate": 0.3, "rounds": 4, "local_epochs": 1,
         "batch_size": 16, "pool_size": 280, "holdout": 100, "budget": 2,
         "checkpoint_every": 1, "seed": 3}
TIMES = ("train_seconds", "eval_seconds")


def small(**changes: Any) -> HolonicConfig:
    return HolonicConfig(**{**SMALL, **changes})


def rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def files(run_dir: Path) -> dict[str, torch.Tensor]:
    models = run_dir / "models"
    return {**load_file(models / "terminals.safetensors"),
            **{f"holon.{k}": v for k, v in load_file(models / "holons.safetensors").items()}}


def assert_same_run(a: Path, b: Path) -> None:
    """The same rows, traffic and saved models, bit for bit."""
    assert rows(a) == rows(b)
    assert (a / "traffic.json").read_text() == (b / "traffic.json").read_text()
    fa, fb = files(a), files(b)
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)


@pytest.fixture(scope="module")
def digits() -> Any:
    return load_data(small())


def test_sampled_terminals_equal_a_population_of_all(tmp_path: Path, digits: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the drawn terminals hold a model while they train, with their own generators
    going on where they stopped: every loss, accuracy and final model equals the run that
    keeps every terminal's model in one population."""
    config = small()
    assert runner.samples_terminals(config)
    sampled = run(config, tmp_path / "sampled", digits, progress=False)
    monkeypatch.setattr(runner, "samples_terminals", lambda config: False)
    full = run(config, tmp_path / "full", digits, progress=False)
    assert_same_run(Path(sampled["run_dir"]), Path(full["run_dir"]))
    assert any(r["reported"] < r["trained"] for r in rows(tmp_path / "full"))
    assert all(len(r["train_loss"]) == r["trained"] == 5 for r in rows(tmp_path / "full"))


def test_sampled_terminals_resume_to_the_uninterrupted_numbers(tmp_path: Path,
                                                               digits: Any) -> None:
    """A checkpoint holds the distinct models, which one each terminal holds and the
    generators of those that trained: a resumed run ends as the straight one."""
    config = small(rounds=3)
    run(config, tmp_path / "straight", digits, progress=False)
    run(config.with_overrides(rounds=2), tmp_path / "cut", digits, progress=False)
    (tmp_path / "cut" / "summary.json").unlink()
    run(config, tmp_path / "cut", digits, progress=False, resume=True)
    assert_same_run(tmp_path / "straight", tmp_path / "cut")


def test_batched_evaluation_equals_one_by_one() -> None:
    """Distinct models (and repeats of them) through one batched forward give each model's
    accuracy as the module alone gives it."""
    torch.manual_seed(0)
    images, labels = torch.randn(300, 20), torch.randint(0, 4, (300,))
    module = MLP((20,), 4)
    n = sum(p.numel() for p in module.parameters())
    distinct = torch.randn(5, n) * 0.3
    flat = distinct[[0, 3, 3, 1, 4, 0, 2]]
    got = Evaluator(module, images, labels, chunk=64).accuracy(flat)
    alone = []
    for row in flat:
        vector_to_parameters(row, module.parameters())
        with torch.no_grad():
            alone.append(float((module(images).argmax(-1) == labels).double().mean()))
    assert got.tolist() == alone
    assert len(set(alone)) > 1  # the models differ


def test_eval_terminals_is_a_seeded_sample_with_its_standard_error(tmp_path: Path,
                                                                  digits: Any) -> None:
    config = small(rounds=2, eval_terminals=5)
    a = rows(Path(run(config, tmp_path / "a", digits, progress=False)["run_dir"]))
    b = rows(Path(run(config, tmp_path / "b", digits, progress=False)["run_dir"]))
    assert a == b
    for row in a:
        acc = np.array(list(row["test_accuracy"].values()))
        assert len(acc) == 5 and row["mean_test_accuracy"] == pytest.approx(acc.mean())
        assert row["mean_test_accuracy_se"] == pytest.approx(
            acc.std(ddof=1) / math.sqrt(5) * math.sqrt((14 - 5) / (14 - 1)))
    assert a[0]["test_accuracy"].keys() == a[1]["test_accuracy"].keys()  # the same sample
    every = rows(Path(run(config.with_overrides(eval_terminals=14), tmp_path / "all", digits,
                          progress=False)["run_dir"]))
    assert [r["mean_test_accuracy_se"] for r in every] == [0.0, 0.0]
    for sample, whole in zip(a, every, strict=True):  # the sample's own accuracies
        assert sample["test_accuracy"] == {t: whole["test_accuracy"][t]
                                           for t in sample["test_accuracy"]}


def test_standard_error_of_a_sample_without_replacement() -> None:
    values = torch.tensor([0.5, 0.7, 0.6, 0.9])
    assert standard_error(values, 4) == 0.0
    assert standard_error(values, 1000) == pytest.approx(
        float(values.double().std()) / 2 * math.sqrt(996 / 999))


def test_eval_terminals_larger_than_the_population_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    f = tmp_path / "run.yaml"
    f.write_text(json.dumps({"structure": "2L", "eval_terminals": 11}))
    code = main(["holonic", "run", "--config", str(f), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "eval_terminals: 11 is more than the 10 terminals of the holarchy" in err
