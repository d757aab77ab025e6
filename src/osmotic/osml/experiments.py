"""The OSM-L paper's experiments as data, and one function that runs any OSM-L job end to end.

A preset says which context, which agents and which settings differ from the defaults; a data
source says where the series come from (the paper's CSV files, any CSV pair, or the generator).
`run` turns a validated config and a pair of series into a finished run directory:

* `config.yaml`: the resolved settings plus a `data:` section naming the source, so the file can
  be passed back to `osmotic osml run --config` to repeat the run;
* `metrics.jsonl`: one row per epoch, appended as epochs finish;
* `clusterings.json`: every sub-context decision (epoch, groups, membership changes with
  probations, pair scores and ranks);
* `embeddings.safetensors`: the final test embeddings, one [windows, d] tensor per agent id;
* `plots/*.png`: paper Figs. 4–8;
* `summary.json`: the final numbers, written last, so its presence marks a finished run.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors.numpy import save_file

from osmotic.data.synthetic import generate_context
from osmotic.data.timeseries import DataError, Series, check_agents, load_pair, select
from osmotic.osml import plots
from osmotic.osml.agent import encoder_builder
from osmotic.osml.config import OsmlConfig
from osmotic.osml.presets import EXPERIMENTS, Context
from osmotic.osml.trainer import OsmlResult, train_osml
from osmotic.report.rundir import RunDir, write_json
from osmotic.runtime.lifecycle import Logger
from osmotic.runtime.modelcheck import check_batched
from osmotic.runtime.session import Session, recorded_settings
from osmotic.runtime.strategies import STRATEGIES, make_strategy
from osmotic.settings import InputError

RUNS_ROOT = Path("runs/osml")
PAPER_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "osml-paper"
"""Where the paper's CSV files live in this workspace: `../shared/data/osml-paper` from the
repository root (the parent of src/), wherever the command runs from."""


def paper_data() -> tuple[Path | None, list[Path]]:
    """The folder holding the paper's files (`<context>-context/{train,test}_data.csv` for
    both contexts), found beside the project (`PAPER_DATA`) or from the working directory
    (`../shared/data/osml-paper`), and the folders looked in."""
    looked = list(dict.fromkeys(p.resolve() for p in (
        PAPER_DATA, Path.cwd().parent / "shared" / "data" / "osml-paper")))
    for folder in looked:
        if all((folder / f"{c}-context" / f"{s}_data.csv").is_file()
               for c in ("simple", "complex") for s in ("train", "test")):
            return folder, looked
    return None, looked


class Source(Protocol):
    """Where a run's series come from."""

    def load(self, window: int) -> tuple[Series, Series]: ...

    def record(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class CsvSource:
    """A train/test pair of CSV files in the paper's layout."""

    train: Path
    test: Path

    @classmethod
    def paper(cls, data_dir: Path, context: Context) -> CsvSource:
        """The paper's files for `context` under `data_dir` (`<context>-context/*_data.csv`)."""
        folder = Path(data_dir) / f"{context}-context"
        return cls(folder / "train_data.csv", folder / "test_data.csv")

    def load(self, window: int) -> tuple[Series, Series]:
        for path in (self.train, self.test):
            if not path.is_file():
                raise DataError(f"{path}: no such file")
        return load_pair(self.train, self.test, window)

    def record(self) -> dict[str, Any]:
        return {"train": str(self.train.resolve()), "test": str(self.test.resolve())}


@dataclass(frozen=True)
class GeneratedSource:
    """A context rebuilt by `generate_context`: no file needed, any number of draws."""

    context: Context
    seed: int

    def load(self, window: int) -> tuple[Series, Series]:
        return generate_context(self.context, self.seed)

    def record(self) -> dict[str, Any]:
        return {"generated": self.context, "seed": self.seed}


def source_from_record(record: Any, relative_to: Path = Path()) -> Source:
    """Inverse of `Source.record`: read back the `data:` section of a config file; relative
    paths are taken from the file's folder, `relative_to`, as a reader of the file would."""
    keys = set(record) if isinstance(record, Mapping) else None
    if keys == {"train", "test"}:
        return CsvSource(relative_to / record["train"], relative_to / record["test"])
    if keys == {"generated", "seed"}:
        return GeneratedSource(record["generated"], int(record["seed"]))
    raise ValueError("data: expected a mapping with keys train and test, or generated and seed; "
                     f"got {record!r}")


@dataclass
class Run:
    """A finished run: where it was written and what it produced."""

    dir: RunDir
    result: OsmlResult | None
    """None for a run read back (it had finished before)."""

    @property
    def summary(self) -> dict[str, Any]:
        """summary.json as written (NaN as null), exactly what other tools read."""
        return self.dir.read_summary()


def run(config: OsmlConfig, train: Series, test: Series, out: str | Path, *,
        source: Mapping[str, Any] | None = None, progress: bool | None = None,
        resume: bool = False, log: Logger | Sequence[Logger] | None = None) -> Run:
    """Train on `train`, evaluate on `test`, write the run directory `out` (see module doc).
    With `resume`, continue the unfinished run in `out` from its last checkpoint. `log(row)`
    receives every epoch's metrics row (and `config.log` adds TensorBoard)."""
    # Everything that can be refused is refused before any file is written.
    if config.agents is not None:
        train, test = select(train, config.agents), select(test, config.agents)
    check_agents(train, "train")
    check_strategy_params(config)
    check_encoder(config, train)
    record = dict(source or {})
    if record:  # the source is part of the settings: the same run is known by it
        config = config.with_overrides(data=record)
    session = Session.open(config, out, resume=resume,
                           record={"data_in_memory": "memory" in record})
    if session.finished is not None:
        return Run(RunDir(session.finished.run_dir), None)
    rd = session.dir
    result = train_osml(config, train, test, session=session, progress=progress, log=log)
    write_json(rd.file("clusterings.json"),
               {"agents": result.agent_ids, "clusterings": result.history})
    save_embeddings(rd.file("embeddings.safetensors"), result, config.window)
    plot_run(rd, result, config.beta)
    session.finish(result.summary)
    return Run(rd, result)


def resume(out: str | Path, progress: bool | None = None, force: bool = False) -> Run:
    """Continue the run in `out` from its last checkpoint, with its own settings and data."""
    config = recorded_settings(OsmlConfig, out, force)
    if not config.data:
        raise InputError(f"{Path(out) / 'config.yaml'}: no data section; cannot reload the "
                         "run's data")
    source = source_from_record(config.data)
    train, test = source.load(config.window)
    return run(config, train, test, out, source=config.data, progress=progress, resume=True)


def check_strategy_params(config: OsmlConfig) -> None:
    """The strategy's parameters, by name and value (OsmlConfig checks the strategy's name only,
    and the trainer would only find out after the run directory exists)."""
    accepted = sorted(inspect.signature(STRATEGIES[config.strategy]).parameters)
    unknown = sorted(set(config.strategy_params) - set(accepted))
    if unknown:
        raise ValueError(f"strategy_params: {config.strategy} takes {accepted or 'none'}, "
                         f"not {unknown[0]!r}")
    make_strategy(config.strategy, **config.strategy_params)  # checks the values


def check_encoder(config: OsmlConfig, train: Series) -> None:
    """Once per feature count: the encoder builds, maps windows to [batch, width] and runs
    batched over agents (else one line naming the operation that does not)."""
    for k in sorted({s.shape[1] for s in train.values()}):
        build = encoder_builder(config.encoder, config.encoder_params, k, config.window,
                                config.hidden)
        sample = torch.zeros(2, config.window, k)
        check_batched(build, sample, None, f"{config.encoder} (encoder)")


def run_source(config: OsmlConfig, source: Source, out: str | Path, *,
               progress: bool | None = None) -> Run:
    """`run` on the series of `source`, recording the source in config.yaml."""
    train, test = source.load(config.window)
    return run(config, train, test, out, source=source.record(), progress=progress)


def reproduce(name: str, *, data_dir: Path | None = None, seed: int = 0,
              out: str | Path | None = None, progress: bool | None = None,
              **overrides: Any) -> Run:
    """One of the paper's experiments, on its CSV files under `data_dir` or on generated data."""
    exp = EXPERIMENTS[name]
    config = exp.config(seed=seed, **overrides)
    source: Source = (CsvSource.paper(data_dir, exp.context) if data_dir is not None
                      else GeneratedSource(exp.context, seed))
    if out is None:
        out = default_out(name, seed, **overrides)
    return run_source(config, source, out, progress=progress)


def default_out(name: str, seed: int, **tags: Any) -> Path:
    """`runs/osml/<name>[-<tag>...]-seed<N>`: changed settings show in the folder name, so a
    `--preserve reference` run does not land beside the default one as `<name>-seed0-1`."""
    parts = [name, *(f"{k}{v}" if k != "preserve" else str(v)
                     for k, v in tags.items() if v is not None), f"seed{seed}"]
    return RUNS_ROOT / "-".join(parts)


def save_embeddings(path: Path, result: OsmlResult, window: int) -> None:
    """Test embeddings, one [windows, d] float32 tensor per agent id; row i is the window that
    ends at test step i + window - 1."""
    tensors = {a: np.ascontiguousarray(result.test_embeddings[i], dtype=np.float32)
               for i, a in enumerate(result.agent_ids)}
    save_file(tensors, str(path), metadata={"split": "test", "window": str(window),
                                            "agents": ",".join(result.agent_ids)})


def plot_run(rd: RunDir, result: OsmlResult, beta: float) -> None:
    """The paper's figures for one run, under `plots/`."""
    plots.similarity_matrices(rd.plots / "similarity.png", result.test_embeddings,
                              result.agent_ids, beta=beta)
    epochs = [row["epoch"] for row in result.metrics]
    groups = [[g["agents"] for g in row["subcontexts"]] for row in result.metrics]
    changes = [{**c, "epoch": record["epoch"]} for record in result.history
               for c in record["changes"]]
    plots.subcontext_membership(rd.plots / "subcontexts.png", epochs, groups, result.agent_ids,
                                changes)
    plots.osml_training(rd.plots / "training.png", result.metrics)
