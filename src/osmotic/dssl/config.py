"""D-SSL run settings: one validated object, saved with every run as `config.yaml`.

Local work is counted in steps (`local_steps`, the same for every client, whatever its data
size), so a skewed partition does not simply train more; `local_epochs` is the alternative.
The recipe defaults (steps, learning rate, kept optimiser state, rounds) are the ones chosen on
evidence in docs/results.md (D-SSL).

Data: MNIST by default, or the user's images through `data` / `test` (the entries of
`osmotic.data.datasets`: an npz of images, an image folder, `digits`, ...), as holonic reads
them. The backbone is a registered name (`vit`, `cnn`) or an import path `package.module:Class`
(a class or a function returning a module with `feature_dim`); a constructor that takes
`input_shape` (C, H, W), `in_channels` or `image_size` (H, W) gets them from the data.

Asynchronous rounds (`AsyncSettings`, as holonic's): a `clock:` block times the rounds of FL
and DecL (`sim_time`); `aggregation: buffered` is FL's (the server buffers). A client's local
work for the clock is local_steps × batch_size samples per round (the same for every client),
or local_epochs × its data size.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator
from torch import nn

from osmotic.data.datasets import DataSpec, paths_from
from osmotic.holarchy.asynchronous import check_asynchronous
from osmotic.holarchy.builders import fedavg, regular
from osmotic.holarchy.holarchy import Holarchy
from osmotic.models import BACKBONES, ModelError, accepted_arguments, locate_model, resolve_model
from osmotic.runtime.clock import AsyncSettings, with_clock_folder
from osmotic.runtime.privacy import PrivacySettings
from osmotic.settings import EngineSettings

MNIST_HOLDOUT = 1000
"""Test images held out of MNIST's pool when `holdout` is not set (and no IDX test set)."""


def resolve_backbone(name: str) -> Callable[..., nn.Module]:
    """The constructor a `backbone` names: a registered one (`BACKBONES`) or an import path
    `package.module:Class`; anything else is one line naming it."""
    if name in BACKBONES:
        return BACKBONES[name]
    if ":" not in name:
        raise ModelError(f"backbone: unknown {name!r}; choose from {sorted(BACKBONES)} or give "
                         "an import path package.module:Class")
    try:
        return resolve_model(name)
    except ModelError as e:
        raise ModelError(f"backbone {str(e).removeprefix('model ')}") from None


def shape_arguments(build: Callable[..., nn.Module], input_shape: tuple[int, ...]
                    ) -> dict[str, Any]:
    """Those of `input_shape`, `in_channels` and `image_size` that `build` accepts."""
    c, h, w = input_shape
    return accepted_arguments(build, {"input_shape": (c, h, w), "in_channels": c,
                                      "image_size": (h, w)})


def _is_mnist(spec: Any) -> bool:
    return spec is None or getattr(spec, "format", None) == "mnist"


def _numbers(config: DsslConfig, skip: set[str]) -> dict[str, Any]:
    """The settings that decide a run's numbers, MNIST's default hold-out spelt out."""
    out = config.model_dump(exclude=skip)
    if out.get("holdout") is None and config.mnist:
        out["holdout"] = MNIST_HOLDOUT
    return out


class DsslConfig(AsyncSettings, EngineSettings):
    """Every setting of a D-SSL run."""

    mode: ClassVar[str] = "dssl"
    alternatives: ClassVar[tuple[tuple[str, str], ...]] = (("local_steps", "local_epochs"),)
    recorded: ClassVar[tuple[str, ...]] = ("data_source", "data_in_memory", "graph")

    method: Literal["simsiam", "mae", "mar"] = "mae"
    framework: Literal["fl", "decl"] = "fl"
    degree: int = Field(4, ge=1, description="DecL: neighbours per client (a random "
                        "degree-regular graph; clients - 1 is the complete graph)")
    clients: int = Field(20, ge=1)
    partition: Literal["iid", "dirichlet"] = "iid"
    alpha: float = Field(1.0, gt=0, description="Dirichlet concentration over labels")
    rounds: int = Field(40, ge=1)
    local_steps: int | None = Field(None, ge=1, description="local steps per round, the same "
                                    "for every client (default 20 unless local_epochs is set)")
    local_epochs: int | None = Field(None, ge=1, description="local epochs per round instead "
                                     "of steps (a large client then trains more)")
    batch_size: int = Field(32, ge=2)
    backbone: str = "vit"
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0, description="AdamW decoupled weight decay")
    keep_optimizer_state: bool = Field(True, description="a client's optimiser state survives "
                                       "the round (False: a fresh optimiser every round)")
    mar_latents: int = Field(32, ge=2, description="MAR: pooled latents each client sends "
                             "per round (m)")
    mar_gamma_max: float = Field(0.1, ge=0)
    mar_gamma_min: float = Field(1e-3, ge=0)
    mar_gamma_schedule: Literal["cosine", "constant"] = "cosine"
    mar_target: Literal["reference", "model"] = Field(
        "model", description="MAR's alignment target: the latents of the same patches under "
        "the model the client received (model, the better of the two in docs/results.md) or "
        "latents sent by the other clients (reference)")
    probe_every: int | None = Field(None, ge=1, description="linear probe every N rounds "
                                    "(default: the last round only)")
    client_probes: int = Field(5, ge=1, description="DecL: probe at most this many clients' "
                               "own models (a seeded sample)")
    drift_batch: int = Field(256, ge=2, description="images of the fixed batch on which the "
                             "clients' representation drift (1 - mean pairwise CKA) is measured")
    data: DataSpec | None = Field(None, description="the images to pre-train on: {format: npz, "
                                  "path, x, y} ([n, H, W] or [n, C, H, W]), {format: images, "
                                  "path, size}, mnist or digits (default: mnist); labels only "
                                  "partition the clients and score the probes")
    test: DataSpec | None = Field(None, description="the probes' test set, same form (default: "
                                  "a seeded stratified hold-out of `data`)")
    participation: float = Field(1.0, gt=0, le=1, description="share of the clients that "
                                 "train and report in a round (a seeded draw per round, as "
                                 "holonic's; FedMAR: clients 100, participation 0.05)")
    dropout_rate: float = Field(0.0, ge=0, lt=1, description="probability that a selected "
                                "client fails to report its round's model")
    mnist_dir: str | None = Field(None, description="IDX folder: its t10k files are the test set")
    holdout: int | float | None = Field(None, gt=0, description="test samples held out of the "
                                        "pool when there is no test set (a number below 1: a "
                                        "share; default 1,000 for mnist, else 20 %)")
    pool_size: int | None = Field(None, ge=1, description="a stratified subset of the pool "
                                  "(quick looks, tests)")
    privacy: PrivacySettings | None = Field(None, description="differential privacy on what "
                                            "travels: {clip, noise_multiplier or target_epsilon, "
                                            "delta, where, level, secure_aggregation}")
    seed: int = Field(0, ge=0)

    @field_validator("data", "test", mode="before")
    @classmethod
    def _described(cls, v: Any) -> Any:
        """A run directory written before D-SSL read `data` recorded its data's description
        under that key (`pool: ...; test: ...`): that is no setting, and means the default."""
        return None if isinstance(v, str) and "; test:" in v else v

    @field_validator("backbone")
    @classmethod
    def _located(cls, v: str) -> str:
        """A backbone module found only in the working directory recorded as its absolute file
        (`locate_model`), so a resume from elsewhere finds it; `_checks` then refuses what is
        not a model."""
        return v if v in BACKBONES else locate_model(v)

    @field_validator("mnist_dir")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        """An absolute path, so a run records where its test set came from and a grid started
        from another folder still recognises its finished cells."""
        return None if v is None else str(Path(v).resolve())

    @model_validator(mode="after")
    def _checks(self) -> DsslConfig:
        build = resolve_backbone(self.backbone)  # a class can be checked now; a factory when built
        if self.method in ("mae", "mar") and isinstance(build, type) and \
                not hasattr(build, "encode"):
            raise ValueError(f"method {self.method} masks patches and needs a backbone with "
                             f"encode(x, keep) (vit); {self.backbone} has none")
        if self.local_steps is None and self.local_epochs is None:
            self.local_steps = 20
        if self.local_steps is not None and self.local_epochs is not None:
            raise ValueError("give local work as one of local_steps and local_epochs, not both")
        if self.framework == "decl" and not 1 <= self.degree < self.clients:
            raise ValueError(f"degree {self.degree} must be between 1 and clients - 1 = "
                             f"{self.clients - 1}")
        if self.framework == "decl" and self.clients * self.degree % 2:
            raise ValueError(f"no {self.degree}-regular graph on {self.clients} clients exists "
                             f"(clients x degree = {self.clients * self.degree} is odd)")
        if self.mar_gamma_min > self.mar_gamma_max:
            raise ValueError(f"mar_gamma_min {self.mar_gamma_min} is above mar_gamma_max "
                             f"{self.mar_gamma_max}")
        if self.test is not None and self.data is None:
            raise ValueError("test: give `data` too (the default mnist brings its own test set)")
        if self.privacy is not None and self.method == "mar" and self.mar_target == "reference":
            raise ValueError("privacy: MAR's exchanged latents are not protected, only model "
                             "updates; use mar_target: model, or another method")
        if self.privacy is not None and self.privacy.level == "record" and self.method != "mae":
            raise ValueError(f"privacy.level: record: DP-SGD needs a per-sample loss; {self.method}"
                             " ties a batch's samples together (use method mae, or level user)")
        return self

    @model_validator(mode="after")
    def _asynchronous(self) -> DsslConfig:
        """`aggregation: buffered` is FL's, and not MAR's latent exchange (a round's: every
        client's latents pooled at once); the rest as holonic's
        (`holarchy.asynchronous.check_asynchronous`)."""
        if self.aggregation == "buffered" and self.framework == "decl":
            raise ValueError("aggregation: buffered is FL's: a DecL graph has no head to "
                             "buffer updates (use framework: fl, or aggregation: sync)")
        if self.aggregation == "buffered" and self.method == "mar" \
                and self.mar_target == "reference":
            raise ValueError("aggregation: buffered does not take MAR's latent exchange "
                             "(mar_target: reference); use mar_target: model")
        check_asynchronous(self, self.build_holarchy, participation=self.participation)
        return self

    def build_holarchy(self) -> Holarchy:
        """FL: the `fedavg` holarchy over the clients; DecL: `p2p` over a seeded random
        `degree`-regular graph."""
        if self.framework == "fl":
            return fedavg(self.clients)
        return regular(self.clients, self.degree, self.seed)

    @property
    def partial(self) -> bool:
        """Whether some clients sit a round out or fail to report (participation, dropout)."""
        return self.participation < 1 or self.dropout_rate > 0

    @property
    def mnist(self) -> bool:
        """Whether the data are MNIST (the default)."""
        return _is_mnist(self.data)

    def backbone_builder(self, input_shape: tuple[int, ...] | None = None
                         ) -> Callable[[], nn.Module]:
        """The backbone's builder, given the data's image shape where its constructor takes
        it (`shape_arguments`)."""
        build = resolve_backbone(self.backbone)
        kwargs = {} if input_shape is None else shape_arguments(build, input_shape)
        return partial(build, **kwargs) if kwargs else build

    def same_experiment(self, other: DsslConfig) -> bool:
        """Engine settings aside, and MAR's settings aside for the other methods (they do not
        change those methods' numbers); MNIST's default hold-out is its 1,000 images (what runs
        recorded before `data` was a setting)."""
        skip = set(self.engine_fields)
        if self.method != "mar" and other.method != "mar":
            skip |= {k for k in type(self).model_fields if k.startswith("mar_")}
        return _numbers(self, skip) == _numbers(other, skip)

    @property
    def name(self) -> str:
        """Cell label: method, framework (and degree), partition (and α)."""
        fw = "fl" if self.framework == "fl" else f"decl-d{self.degree}"
        part = "iid" if self.partition == "iid" else f"dir{self.alpha:g}"
        return f"{self.method}-{fw}-{part}"

    @classmethod
    def with_folder(cls, data: dict[str, Any], folder: Path) -> dict[str, Any]:
        """Relative data files, a clock file, and a `backbone` module beside the settings file,
        taken from its folder (recorded absolute, for resume)."""
        data = with_clock_folder(paths_from(data, folder), folder)
        if isinstance(data.get("backbone"), str) and data["backbone"] not in BACKBONES:
            data["backbone"] = locate_model(data["backbone"], folder)
        return data

