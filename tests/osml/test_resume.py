"""A run interrupted after epoch 2 and resumed ends with the uninterrupted run's numbers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from osmotic.osml.trainer import train_osml
from osmotic.report.rundir import RunDir
from osmotic.runtime.checkpoint import load_checkpoint, save_checkpoint
from osmotic.runtime.session import Session

AGENTS = ["0", "1", "M0", "M1"]


def interrupted_then_resumed(tiny_context, tiny_config, tmp_path: Path, **engine):
    train, test = tiny_context()
    config = tiny_config(epochs=4, agents=AGENTS, **engine)
    straight = train_osml(config, train, test,
                          session=Session(config, RunDir(tmp_path / "straight")))
    # An interruption after epoch 2 leaves exactly what a 2-epoch run leaves on disk.
    cut = config.with_overrides(epochs=2)
    train_osml(cut, train, test, session=Session(cut, RunDir(tmp_path / "cut")))
    resumed = train_osml(config, train, test, session=Session(
        config, RunDir(tmp_path / "cut"), resume=True))
    return straight, resumed, RunDir(tmp_path / "cut")


def test_resume_equals_uninterrupted_inprocess(tiny_context, tiny_config, tmp_path):
    straight, resumed, rd = interrupted_then_resumed(tiny_context, tiny_config, tmp_path)
    np.testing.assert_array_equal(straight.test_embeddings, resumed.test_embeddings)
    for key in ("context_accuracy", "rank_score", "subcontexts", "unclustered", "context_loss"):
        assert straight.summary[key] == resumed.summary[key]
    assert [r["epoch"] for r in rd.read_metrics()] == [1, 2, 3, 4]
    assert load_checkpoint(rd.file("checkpoint.safetensors"))[1]["epoch"] == 4


def test_checkpoint_write_is_atomic(tmp_path):
    path = tmp_path / "checkpoint.safetensors"

    save_checkpoint(path, {"group": {"w": torch.ones(2)}}, {"epoch": 1})
    assert not path.with_name(path.name + ".tmp").exists()
    tensors, meta = load_checkpoint(path)
    assert meta == {"epoch": 1} and tensors["group"]["w"].tolist() == [1.0, 1.0]


def test_not_a_checkpoint_is_one_clear_error(tmp_path):
    bad = tmp_path / "checkpoint.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint.safetensors: not an osmotic checkpoint"):
        load_checkpoint(bad)


def test_evaluating_more_often_does_not_change_training(tiny_context, tiny_config):
    """The reference term draws noise; evaluation must draw its own, not the training stream."""
    train, test = tiny_context()
    config = tiny_config(epochs=3, agents=AGENTS, preserve="reference")
    every = train_osml(config, train, test)
    last = train_osml(config.with_overrides(eval_every=3), train, test)
    assert every.metrics[-1]["train_loss"] == last.metrics[-1]["train_loss"]
    np.testing.assert_array_equal(every.test_embeddings, last.test_embeddings)


def test_rewinding_to_the_start_clears_adam(tiny_context, tiny_config):
    from osmotic.osml.shard import OsmoticShard

    train, test = tiny_context()
    config = tiny_config()
    shard = OsmoticShard(["0", "1"], [train["0"], train["1"]], [test["0"], test["1"]], config)
    start = shard.state()
    E, _ = shard.embed("train", 0, 20, train=True)
    shard.step(E)
    assert shard.optimizer.state
    shard.load_state(start)
    assert not shard.optimizer.state
    for k, v in shard.state().items():
        assert torch.equal(v, start[k]), k
