"""Holonic run settings: one validated object, saved with every run as `config.yaml`.

Defaults are the paper's (§4.1): 10 terminals, E = 5 local epochs, SGD lr 0.01, batch 32,
budget K = 2; 50 rounds (the paper ran 200-250; 50 is where its curves have flattened).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from osmotic.data.datasets import DataSpec, paths_from
from osmotic.holarchy.asynchronous import check_asynchronous
from osmotic.holarchy.builders import structure
from osmotic.holarchy.holarchy import Holarchy
from osmotic.models import data_arguments, locate_model, resolve_model
from osmotic.runtime.clock import AsyncSettings, with_clock_folder
from osmotic.runtime.privacy import PrivacySettings
from osmotic.settings import EngineSettings


class HolonicConfig(AsyncSettings, EngineSettings):
    """Every setting of a holonic run."""

    mode: ClassVar[str] = "holonic"
    alternatives: ClassVar[tuple[tuple[str, str], ...]] = (("structure", "holarchy"),)
    recorded: ClassVar[tuple[str, ...]] = ("resolved_holarchy", "data_source", "data_in_memory")

    structure: Literal["1P", "2L", "3L", "4L"] | None = Field(
        None, description="one of the paper's holarchies (exclusive with `holarchy`)")
    holarchy: str | dict[str, Any] | None = Field(
        None, description="a holarchy YAML file, or the holarchy itself (`holarchy:`, `edges:`)")
    distribution: Literal["iid", "eqniid", "ueqniid", "dirichlet"] = "iid"
    alpha: float = Field(0.5, gt=0, description="Dirichlet concentration (distribution dirichlet)")
    data: DataSpec | None = Field(None, description="the training data: {format: npz, path, "
                                  "x, y}, {format: csv, path, label}, {format: images, path, "
                                  "size}, mnist or digits (default: mnist)")
    test: DataSpec | None = Field(None, description="the test set, same form (default: a "
                                  "seeded stratified hold-out of `data`)")
    model: str | None = Field(None, description="a registered model (cnn, mlp) or an import "
                              "path package.module:Class (default: cnn for 28x28 one-channel "
                              "images, else mlp)")
    model_params: dict[str, Any] = Field(default_factory=dict)
    participation: float = Field(1.0, gt=0, le=1, description="share of each super-holon's "
                                 "terminals that train and report in a round (seeded draw)")
    dropout_rate: float = Field(0.0, ge=0, lt=1, description="probability that a selected "
                                "terminal fails to report its round's model")
    rounds: int = Field(50, ge=1)
    local_epochs: int = Field(5, ge=1, description="E: local epochs per round")
    lr: float = Field(0.01, gt=0, description="SGD learning rate (no momentum)")
    batch_size: int = Field(32, ge=1)
    budget: int = Field(2, ge=1, description="K: aggregations before a head reports up")
    eval_every: int = Field(1, ge=1, description="test every this many rounds (and the last "
                            "round): evaluation on 10,000 images can cost more than training")
    eval_terminals: int | None = Field(None, ge=1, description="test a seeded sample of this "
                                       "many terminals (the same every round) and report "
                                       "their mean accuracy with its standard error "
                                       "(default: test every terminal)")
    mnist_dir: str | None = Field(None, description="IDX folder: its t10k files are the test set")
    holdout: int | float | None = Field(None, gt=0, description="test samples held out of the "
                                        "pool when there is no test set (a number below 1: a "
                                        "share; default 1,000 for mnist, else 20 %)")
    pool_size: int | None = Field(None, ge=1, description="use a stratified subset of the pool "
                                  "(quick looks, tests); default: all of it")
    privacy: PrivacySettings | None = Field(None, description="differential privacy on what "
                                            "travels: {clip, noise_multiplier or target_epsilon, "
                                            "delta, where, level, secure_aggregation}")
    seed: int = Field(0, ge=0)
    _built: Holarchy | None = PrivateAttr(None)

    @field_validator("model")
    @classmethod
    def _located(cls, v: str | None) -> str | None:
        """A model module found only in the working directory recorded as its absolute file
        (`locate_model`), so a resume from elsewhere finds it; `_checks` then refuses what
        is not a model."""
        return None if v is None else locate_model(v)

    @model_validator(mode="after")
    def _checks(self) -> HolonicConfig:
        if (self.structure is None) == (self.holarchy is None):
            raise ValueError("give exactly one of `structure` (1P, 2L, 3L, 4L) and `holarchy`")
        if self.model is not None:
            resolve_model(self.model)  # a ModelError (a ValueError): one line naming it
        if self.test is not None and self.data is None:
            raise ValueError("test: give `data` too (the default mnist brings its own test set)")
        return self

    @model_validator(mode="after")
    def _against_holarchy(self) -> HolonicConfig:
        """`aggregation` and `clock` against the holarchy and the other settings
        (`holarchy.asynchronous.check_asynchronous`, shared with D-SSL), and `eval_terminals`
        no larger than its population; a holarchy that cannot be built is left for the run to
        report in its own words."""
        def holarchy() -> Holarchy | None:
            try:
                return self.build_holarchy()
            except (OSError, ValueError):
                return None

        check_asynchronous(self, holarchy, participation=self.participation)
        if self.eval_terminals is not None and (h := holarchy()) is not None \
                and self.eval_terminals > (population := len(h.terminals())):
            raise ValueError(f"eval_terminals: {self.eval_terminals} is more than the "
                             f"{population} terminals of the holarchy")
        return self

    def model_name(self, input_shape: tuple[int, ...]) -> str:
        """The model to train: the configured one, else cnn for MNIST-sized images, else mlp."""
        return self.model or ("cnn" if input_shape == (1, 28, 28) else "mlp")

    def model_kwargs(self, input_shape: tuple[int, ...], classes: int) -> dict[str, Any]:
        """`model_params` plus the data-decided arguments the model's constructor takes."""
        return data_arguments(self.model_name(input_shape), self.model_params, input_shape,
                              classes)

    @property
    def name(self) -> str:
        """Short label for plots and folders: the structure, or the holarchy file's stem."""
        if self.structure is not None:
            return self.structure
        return Path(self.holarchy).stem if isinstance(self.holarchy, str) else "custom"

    def build_holarchy(self) -> Holarchy:
        """The run's holarchy, built once per settings object (a holarchy does not change once
        built; at 100,000 terminals a build takes seconds)."""
        if self._built is None:
            if self.structure is not None:
                self._built = structure(self.structure)
            elif isinstance(self.holarchy, str):
                self._built = Holarchy.from_yaml(self.holarchy)
            else:
                self._built = Holarchy.from_dict(self.holarchy, "config holarchy")
        return self._built

    @classmethod
    def with_folder(cls, data: dict[str, Any], folder: Path) -> dict[str, Any]:
        """A relative `holarchy` file, the data files and a `model` module beside the config
        taken from the config's folder (recorded absolute, for resume)."""
        data = with_clock_folder(paths_from(data, folder), folder)
        if isinstance(data.get("model"), str):
            data["model"] = locate_model(data["model"], folder)
        if isinstance(data.get("holarchy"), str) and not Path(data["holarchy"]).is_absolute():
            data["holarchy"] = str(folder / data["holarchy"])
        return data
