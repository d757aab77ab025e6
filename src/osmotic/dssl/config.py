"""D-SSL run settings: one validated object, saved with every run as `config.yaml`.

Local work is counted in steps (`local_steps`, the same for every client, whatever its data
size), so a skewed partition does not simply train more; `local_epochs` is the alternative.
The recipe defaults (steps, learning rate, kept optimiser state, rounds) are the ones chosen on
evidence in the README's D-SSL section.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from osmotic.models import BACKBONES
from osmotic.settings import Settings, one_line, read_mapping

ENGINE_FIELDS = ("threads", "engine", "actors", "ray_address", "restart_failed",
                 "checkpoint_every")
"""Settings that decide where and how safely a run computes, not what it computes."""


class DsslConfig(Settings):
    """Every setting of a D-SSL run."""

    engine_fields = ENGINE_FIELDS

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
        "the model the client received (model; README: 0.798 against 0.738 for reference at "
        "IID, seed 0) or latents sent by the other clients (reference)")
    probe_every: int | None = Field(None, ge=1, description="linear probe every N rounds "
                                    "(default: the last round only)")
    client_probes: int = Field(5, ge=1, description="DecL: probe at most this many clients' "
                               "own models (a seeded sample)")
    drift_batch: int = Field(256, ge=2, description="images of the fixed batch on which the "
                             "clients' representation drift (1 - mean pairwise CKA) is measured")
    mnist_dir: str | None = Field(None, description="IDX folder: its t10k files are the test set")
    holdout: int = Field(1000, ge=1, description="test hold-out from the pool without IDX test")
    pool_size: int | None = Field(None, ge=1, description="a stratified subset of the pool "
                                  "(quick looks, tests)")
    seed: int = Field(0, ge=0)
    threads: int = Field(1, ge=1, description="CPU threads per process")
    engine: Literal["inprocess", "ray"] = "inprocess"
    actors: int | None = Field(None, ge=1)
    ray_address: str | None = None
    restart_failed: bool = False
    checkpoint_every: int = Field(5, ge=1, description="rounds between checkpoints")

    @field_validator("mnist_dir")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        """An absolute path, so a run records where its test set came from and a grid started
        from another folder still recognises its finished cells."""
        return None if v is None else str(Path(v).resolve())

    @model_validator(mode="after")
    def _checks(self) -> DsslConfig:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone: unknown {self.backbone!r}; choose from "
                             f"{sorted(BACKBONES)}")
        build = BACKBONES[self.backbone]  # a class can be checked now; a factory when built
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
        return self

    def same_experiment(self, other: DsslConfig) -> bool:
        """Engine settings aside, and MAR's settings aside for the other methods (they do not
        change those methods' numbers)."""
        skip = set(self.engine_fields)
        if self.method != "mar" and other.method != "mar":
            skip |= {k for k in type(self).model_fields if k.startswith("mar_")}
        return self.model_dump(exclude=skip) == other.model_dump(exclude=skip)

    @property
    def name(self) -> str:
        """Cell label: method, framework (and degree), partition (and α)."""
        fw = "fl" if self.framework == "fl" else f"decl-d{self.degree}"
        part = "iid" if self.partition == "iid" else f"dir{self.alpha:g}"
        return f"{self.method}-{fw}-{part}"

    @classmethod
    def from_yaml(cls, path: str | Path) -> DsslConfig:
        return cls.validated(read_mapping(Path(path)), str(path))

    @classmethod
    def validated(cls, data: dict[str, Any], where: str) -> DsslConfig:
        """`data` as settings, or one line naming `where` and the field at fault."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ValueError(one_line(e, where)) from None
