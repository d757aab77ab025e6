"""Whole runs on tiny pools: DecL on the complete graph is FL, batched clients are clients one by
one, runs are deterministic, resume equals an uninterrupted run, and the summary keys."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from osmotic.cli import main
from osmotic.dssl.config import DsslConfig
from osmotic.dssl.objectives import MAE, SimSiam
from osmotic.dssl.runner import SUMMARY_KEYS, load_data, run
from osmotic.holarchy.trainer import LocalTrainer
from osmotic.models.vit import TinyViT
from osmotic.runtime.population import Population
from tests.dssl.conftest import tiny

TIMES = ("train_seconds", "run_dir")


def final(summary: dict[str, Any]) -> dict[str, torch.Tensor]:
    return load_file(Path(summary["run_dir"]) / "models" / "final.safetensors")


def same_numbers(a: dict[str, Any], b: dict[str, Any], atol: float = 0.0) -> None:
    for key in set(a) - set(TIMES):
        assert a[key] == pytest.approx(b[key], abs=atol), key
    for k, v in final(a).items():
        torch.testing.assert_close(v, final(b)[k], atol=atol, rtol=0, msg=k)


def test_decl_on_the_complete_graph_equals_fl(tmp_path: Path) -> None:
    config = tiny(method="mar", mar_target="reference")
    data = load_data(config)
    fl = run(config, tmp_path / "fl", data)
    decl = run(config.with_overrides(framework="decl", degree=3), tmp_path / "decl", data)
    torch.testing.assert_close(final(fl)["clients"], final(decl)["clients"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("objective", [MAE, SimSiam])
def test_batched_clients_equal_clients_one_by_one(objective: type) -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(30, 1, 28, 28, generator=gen)
    parts = list(torch.arange(30).split([12, 10, 8]))
    build = objective().build(lambda: TinyViT(width=16, depth=1, heads=2, mlp=16))
    ids = ["0", "1", "2"]

    def trainer(pop: Population, p: list[torch.Tensor]) -> LocalTrainer:
        return LocalTrainer(pop, images, torch.zeros(30), p, 4, 1e-3, 5,
                            objective=objective(), optimizer="adamw")

    together = Population(build, ids, 5)
    loss = trainer(together, parts).train(steps=3)
    for i, aid in enumerate(ids):
        alone = Population(build, [aid], 5)
        loss_alone = trainer(alone, [parts[i]]).train(steps=3)
        torch.testing.assert_close(loss_alone[0], loss[i], atol=1e-5, rtol=1e-5)
        for k, v in alone.params.items():
            torch.testing.assert_close(v[0], together.params[k][i], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(v.grad[0], together.params[k].grad[i], atol=1e-5,
                                       rtol=1e-4)


def test_deterministic(tmp_path: Path) -> None:
    config = tiny(method="simsiam", framework="decl", degree=2, partition="dirichlet",
                  alpha=0.5)
    data = load_data(config)
    same_numbers(run(config, tmp_path / "a", data), run(config, tmp_path / "b", data))


@pytest.mark.parametrize("target", ["reference", "model"])
def test_resume_equals_uninterrupted(tmp_path: Path, target: str) -> None:
    """MAR (constant γ, so a shorter run is the first rounds of the longer one): reference
    sets or anchor models, kept AdamW state and generators all cross the checkpoint."""
    config = tiny(method="mar", mar_target=target, framework="decl", degree=2, rounds=3,
                  mar_gamma_schedule="constant")
    data = load_data(config)
    straight = run(config, tmp_path / "straight", data)
    run(config.with_overrides(rounds=2), tmp_path / "cut", data)
    (tmp_path / "cut" / "summary.json").unlink()
    resumed = run(config, tmp_path / "cut", data, resume=True)
    same_numbers(straight, resumed)
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 3


def test_cli_run_summary_keys_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["dssl", "run", "--method", "mae", "--clients", "4", "--rounds", "1",
            "--local-steps", "1", "--pool-size", "120", "--seed", "1", "--out", str(tmp_path / "r"), "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert set(SUMMARY_KEYS) <= set(summary)
    assert summary["client_linear_probe_accuracy"] is None and summary["seed"] == 1
    (tmp_path / "r" / "summary.json").unlink()
    assert main(["resume", str(tmp_path / "r")]) == 0
    assert "resumed and finished" in capsys.readouterr().out


def test_bad_settings_are_one_line(capsys: pytest.CaptureFixture) -> None:
    for args, message in [(["--method", "byol"], "method"), (["--backbone", "rnn"], "backbone"),
                          (["--framework", "decl", "--degree", "20"], "degree 20"),
                          (["--framework", "decl", "--clients", "5", "--degree", "3"], "odd"),
                          (["--partition", "dirichlet", "--alpha", "0"], "alpha"),
                          (["--seed", "-1"], "seed")]:
        assert main(["dssl", "run", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
    for args, message in [(["--limit", "-2"], "--limit"), (["--seeds", "0", "0"], "--seeds"),
                          (["--workers", "0"], "--workers")]:
        assert main(["dssl", "reproduce", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err


def test_settings_by_file_or_api_and_their_checks() -> None:
    epochs = DsslConfig.validated({"local_epochs": 2}, "run.yaml")
    assert (epochs.local_steps, epochs.local_epochs) == (None, 2)
    assert DsslConfig().local_steps == 20
    for data, message in [({"local_epochs": 2, "local_steps": 5}, "not both"),
                          ({"mar_gamma_min": 0.5, "mar_gamma_max": 0.1}, "mar_gamma_min 0.5"),
                          ({"seed": -1}, "seed")]:
        with pytest.raises(ValueError, match=message):
            DsslConfig.validated(data, "run.yaml")
