"""OSM-L settings: one validated object, saved with every run as `config.yaml`."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from osmotic.models import locate_model, resolve_model
from osmotic.models.gru import BLOCK_ALIGN
from osmotic.runtime.clock import AsyncSettings, read_clock_file, with_clock_folder
from osmotic.runtime.privacy import PrivacySettings
from osmotic.runtime.strategies import STRATEGIES
from osmotic.settings import EngineSettings, InputError


def check_async(config: OsmlConfig, ids: Sequence[str]) -> None:
    """The asynchronous settings against the agents (one line, `InputError`): a buffer of at
    most the agents, a clock file that lists exactly them."""
    if config.buffer is not None and config.buffer > len(ids):
        raise InputError(f"buffer: at most the {len(ids)} agents, got {config.buffer}")
    if config.clock is not None and config.clock.file is not None:
        read_clock_file(config.clock.file, ids)


class OsmlConfig(AsyncSettings, EngineSettings):
    """Every setting of an OSM-L run. Defaults are the paper's (§IV) except where noted.

    Some defaults differ from the paper's and the method's first description, on evidence from
    the paper's data and generated contexts (docs/results.md, "Choosing the defaults"):
    `preserve="reconstruction"` instead of InfoNCE, `alpha=0.8` instead of 0.5, `lr=0.01`
    instead of 1e-3, `threshold=0.95` instead of 0.97 (with the `min_rank` gate added) and
    `unclustered="rest"` instead of "global". With five epochs of 19 batches, Adam at 1e-3
    cannot both align and keep information; InfoNCE at any weight either blocks alignment or
    lets noise agents collapse the shared context; under "global", two related agents left out
    of the first sub-context are pulled towards it and may never find each other. `join_score`
    and `stay_rank` are the way into and out of a sub-context after the first
    clustering, chosen on generated scenarios with a known answer (docs/results.md, "Contexts
    nobody tuned for").

    Simulated time (`clock`, `aggregation`, `buffer`; docs/osml.md, "Asynchronous agents"):
    the clock's unit of work is one batch of `batch_size` windows of one agent, which lasts
    batch_size / speed + delay simulated seconds. `aggregation: sync` waits for every agent
    at every batch; `buffered` answers a batch once `buffer` agents' embeddings for it have
    arrived (default: all agents) and uses the latest embeddings of the others it holds.
    `staleness_exponent` has no meaning here: a stale embedding enters its context unweighted.
    """

    mode: ClassVar[str] = "osml"
    recorded: ClassVar[tuple[str, ...]] = ("data_in_memory",)

    data: dict[str, Any] | None = Field(None, description="where the series come from: "
                                        "{train: CSV, test: CSV} in the paper's layout, or "
                                        "{generated: simple|complex, seed: N}")
    agents: list[str] | None = Field(None, description="agent ids to use; default: all in the data")
    epochs: int = Field(5, ge=1)
    window: int = Field(10, ge=1, description="sliding-window length w (stride 1)")
    batch_size: int = Field(50, ge=2, description="B consecutive windows per batch, in time order")
    hidden: int = Field(20, ge=1, description="GRU hidden size of g_i")
    encoder: str = Field("gru", description="g_i: gru, or an import path package.module:Class "
                         "mapping windows [batch, w, k] to [batch, width]")
    encoder_params: dict[str, Any] = Field(default_factory=dict, description="arguments of "
                                           "the encoder (besides in_features, window, hidden)")
    dim: int = Field(5, ge=2, description="shared embedding size d")
    lr: float = Field(0.01, gt=0, description="Adam learning rate (paper: 1e-3)")
    alpha: float = Field(0.8, ge=0, le=1, description="weight of alignment vs preservation "
                         "(0.5 in the method's first description)")
    preserve: Literal["infonce", "reconstruction", "reference"] = "reconstruction"
    temperature: float = Field(0.1, gt=0, description="τ of the contrastive preservation terms")
    sphere: bool = Field(True, description="embeddings on the sphere of radius √d (an addition to the paper)")
    normalize_inputs: bool = Field(True, description="standardise each agent's features with "
                                   "its own training statistics (an addition to the paper)")
    strategy: str = Field("mean", description="osmotic strategy")
    strategy_params: dict[str, float] = Field(default_factory=dict)
    cluster_every: int = Field(2, ge=1, description="epochs between clusterings (c)")
    cluster_samples: int = Field(50, ge=2, description="sampled steps per clustering (S)")
    threshold: float = Field(0.95, ge=0, le=1, description="clustering threshold θ "
                             "(paper: 0.97)")
    beta: float = Field(2.0, gt=0, description="β of the similarity (paper Eq. 14)")
    min_rank: float = Field(0.75, ge=0, le=1, description="a pair whose sampled rank score is "
                            "below this counts as unrelated when clustering (0: the paper's rule)")
    stay_rank: float | None = Field(0.65, ge=0, le=1, description="members of a sub-context "
                                    "stay in it while their sampled rank score with each other "
                                    "is at least this (None: min_rank)")
    join_score: float | None = Field(0.7, ge=0, le=1, description="put an agent in no "
                                     "sub-context (or a smaller sub-context) on probation with "
                                     "a sub-context when its embeddings, linearly mapped, tell "
                                     "the steps of that context apart this well (mapped rank "
                                     "score); the next clustering decides. None: never")
    unclustered: Literal["global", "rest", "self", "nearest"] = Field(
        "rest", description="what an agent in no sub-context aligns to: the context of the "
        "agents in none (rest), of all agents (global, the paper's), its own embedding (self), "
        "or the nearest sub-context's")
    eval_every: int = Field(1, ge=1, description="epochs between test evaluations (the last "
                            "epoch is always evaluated); evaluation is O(agents² · steps²)")
    rank_pairs: int | None = Field(2000, ge=1, description="rank at most this many ordered "
                                   "agent pairs per sub-context (a seeded sample beyond it)")
    privacy: PrivacySettings | None = Field(None, description="differential privacy on the "
                                            "embeddings agents send the diffuser: {clip, "
                                            "noise_multiplier or target_epsilon, delta}; the "
                                            "noise is added at the agent (where: local, the "
                                            "default here) and protects one time step of an "
                                            "agent's series (level: user and record alike)")
    shard_size: int | None = Field(None, ge=BLOCK_ALIGN, description="agents trained at a "
                                   "time: a batch's activations are held for this many agents "
                                   "only (the forward pass runs twice); a multiple of "
                                   f"{BLOCK_ALIGN}, so the numbers are those of all agents at "
                                   "once. None: all agents at once")
    sites: str | dict[str, Any] | None = Field(None, description="hierarchical diffusers: a "
                                               "holarchy YAML file, or the holarchy itself, "
                                               "whose terminals are the agent ids: the root "
                                               "over sites over agents (None: one diffuser)")
    candidates_above: int | None = Field(2048, ge=2, description="above this many agents, "
                                         "sub-contexts are found among candidate pairs (each "
                                         "agent's `neighbours` nearest in an HNSW index), not "
                                         "all pairs; None: always all pairs")
    neighbours: int = Field(16, ge=1, description="candidate pairs per agent above "
                            "`candidates_above` agents (at most candidates_above)")
    null_alpha: float | None = Field(0.01, gt=0, lt=1, description="above `null_above` agents, "
                                     "the rank and join gates rise to the 1 - alpha/pairs "
                                     "quantile of their null (pairs with time alignment "
                                     "broken), so that an unrelated pair passes a "
                                     "decision with probability about alpha; None: the fixed "
                                     "gates only")
    null_above: int = Field(100, ge=1, description="populations above this many agents "
                            "calibrate their gates (null_alpha)")
    null_samples: int = Field(10000, ge=100, description="shifted pairs drawn for each null")
    seed: int = Field(0, ge=0)

    @field_validator("data")
    @classmethod
    def _a_source(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        """One of the forms a run records: two CSV files, a generated context, or series that
        were given from Python (`memory`); checked here, so a bad section is one line."""
        if v is None:
            return v
        keys = set(v)
        if keys == {"train", "test"} and all(isinstance(v[k], str) and v[k] for k in keys):
            return v
        if keys == {"generated", "seed"} and v["generated"] in ("simple", "complex") and \
                isinstance(v["seed"], int) and not isinstance(v["seed"], bool) and \
                0 <= v["seed"] < 2**32:
            return v
        if keys == {"memory"}:
            return v
        raise ValueError("expected {train: CSV file, test: CSV file} or {generated: simple or "
                         "complex, seed: 0 to 2^32 - 1}")

    @field_validator("privacy", mode="before")
    @classmethod
    def _local_by_default(cls, v: Any) -> Any:
        """OSM-L's noise is added by the agent before its embedding leaves it: a privacy block
        that does not say where is local here (the shared default, central, means nothing in
        OSM-L and is refused when asked for; `_osml_privacy`)."""
        if isinstance(v, dict) and "where" not in v:
            return {**v, "where": "local"}
        if isinstance(v, PrivacySettings) and "where" not in v.model_fields_set:
            return v.model_copy(update={"where": "local"})
        return v

    @field_validator("shard_size")
    @classmethod
    def _aligned(cls, v: int | None) -> int | None:
        """Agents run in blocks of multiples of `BLOCK_ALIGN` (models.gru): a shard that is one
        computes every agent's numbers exactly as an unsharded run does."""
        if v is not None and v % BLOCK_ALIGN:
            raise ValueError(f"a multiple of {BLOCK_ALIGN}, got {v}")
        return v

    @field_validator("encoder")
    @classmethod
    def _located(cls, v: str) -> str:
        """An encoder module found only in the working directory recorded as its absolute file
        (`locate_model`), so a resume from elsewhere finds it; `_known_strategy` then refuses
        what is not a model."""
        return locate_model(v)

    @model_validator(mode="after")
    def _known_strategy(self) -> OsmlConfig:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy: unknown {self.strategy!r}; choose from {sorted(STRATEGIES)}")
        resolve_model(self.encoder)  # a ModelError (a ValueError): one line naming it
        return self

    @model_validator(mode="after")
    def _site_holarchy(self) -> OsmlConfig:
        """A `sites` holarchy that describes diffusers (`osml.sites.site_holarchy`); against
        the agents here when `agents` names them, else when the run starts."""
        if self.sites is not None:
            # Imported here: the sites module brings the clustering code (SciPy, scikit-learn),
            # which every command's option parser would otherwise load.
            from osmotic.osml.sites import site_holarchy, site_members

            holarchy = site_holarchy(self.sites, self.strategy)
            if self.agents is not None:
                site_members(holarchy, self.agents)
        return self

    @model_validator(mode="after")
    def _reachable_neighbours(self) -> OsmlConfig:
        """Candidate pairs are used only above `candidates_above` agents: more neighbours than
        that could exceed the other agents there."""
        if self.candidates_above is not None and self.neighbours > self.candidates_above:
            raise ValueError(f"neighbours: at most candidates_above ({self.candidates_above}), "
                             f"got {self.neighbours}")
        return self

    @model_validator(mode="after")
    def _osml_privacy(self) -> OsmlConfig:
        """What a privacy block can mean in OSM-L: noise added by each agent to the embeddings
        it sends (local), on every embedding the diffuser receives (so never a masked sum). The
        protected unit is a time step of an agent's series whichever `level` is given."""
        p = self.privacy
        if p is None:
            return self
        if p.where != "local":
            raise ValueError("privacy.where: OSM-L adds noise at the agent (local), before its "
                             "embedding leaves it; central is not a choice here")
        if p.secure_aggregation:
            raise ValueError("privacy.secure_aggregation: not available in OSM-L: the diffuser "
                             "needs each agent's embedding, not only their sum")
        return self

    @model_validator(mode="after")
    def _osml_async(self) -> OsmlConfig:
        """What the asynchronous settings can mean in OSM-L: no staleness weights (a stale
        embedding enters its context as it is), a buffer of at most the agents, a clock file
        that lists exactly the agents (checked here when `agents` names them, else when the
        data are read by `osml.trainer.train_osml`): `check_async`."""
        if self.staleness_exponent != type(self).model_fields["staleness_exponent"].default:
            raise ValueError("staleness_exponent: not used in OSM-L (a stale embedding enters "
                             "its context unweighted); leave it out")
        if self.agents is not None:
            check_async(self, self.agents)
        return self

    @classmethod
    def with_folder(cls, data: dict[str, Any], folder: Path) -> dict[str, Any]:
        """The `data:` section's CSV paths, an `encoder` module and a `clock: {file}` beside
        the file, from the file's folder, recorded absolute."""
        data = with_clock_folder(data, folder)
        if isinstance(data.get("sites"), str):
            data = {**data, "sites": str((folder / data["sites"]).resolve())}
        if isinstance(data.get("encoder"), str):
            data = {**data, "encoder": locate_model(data["encoder"], folder)}
        section = data.get("data")
        if isinstance(section, dict) and {"train", "test"} <= set(section):
            data = {**data, "data": {**section, **{k: str((folder / section[k]).resolve())
                                                    for k in ("train", "test")
                                                    if isinstance(section[k], str)}}}
        return data
