"""Hierarchical diffusers: site diffusers under a parent that merges sub-contexts across sites.

A holarchy (the YAML holonic learning reads; its terminals are agent ids) says which agents a
site diffuser serves. With one level (the root over the agents) there is one diffuser, the flat
OSM-L `Diffuser`, used as it is: results are the flat run's, bit for bit. With two levels (the
root over sites over agents) each site is a flat `Diffuser` over its agents: it sends them
contexts every batch and finds sub-contexts among them at every clustering. The root never
sees an agent's embedding of a training batch:

* At a clustering the root draws S steps (seeded) and sends them down. Each site sends up one
  *unit* per site sub-context (its context, the strategy's aggregate of its members, at those
  steps: [S, d], and its size) and one per agent in no site sub-context (that agent's
  embeddings at those steps: [S, d], the same the site clustered on). The root scores units
  with the same pair score and gate as a flat clustering (`clustering.cluster`) and merges
  those that agree; it sends down which units form each merged sub-context.
* Every batch, for each merged sub-context, each site holding a part sends up the part's
  context and size; the root combines the parts with the strategy weighted by size (for
  `mean`: exactly the mean over all members) and sends the merged context down. Site
  sub-contexts that were not merged, and agents in none, stay at their site.
* Until the first clustering every agent shares one context, as in flat OSM-L: one merged
  sub-context whose parts are the sites.

Bytes are counted per level (`traffic`): `sites` is what agents and their site diffusers
exchange, `root` what sites and the root exchange; float32 numbers and int32 indices, 4 bytes
each. With one level, `root` holds what the agents and the flat diffuser exchange.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from osmotic.holarchy.holarchy import Holarchy
from osmotic.osml.clustering import Clustering, membership_changes
from osmotic.osml.diffuser import Diffuser
from osmotic.runtime.strategies import Strategy
from osmotic.settings import InputError

WORD = 4
"""Bytes of one number sent between diffusers (float32 or int32)."""

ROOT_STEPS = 5
"""A unit's embeddings go up at ROOT_STEPS × `cluster_samples` evenly spaced training steps:
as many as a flat probation fits its maps on (4 × samples) and scores them on (samples)."""

MERGEABLE = ("mean", "geometric_median", "similarity_weighted")
"""Strategies that can combine a merged sub-context's parts weighted by their sizes."""


def site_holarchy(spec: str | dict[str, Any], strategy: str) -> Holarchy:
    """The holarchy of a `sites:` setting, refused in one line unless it describes diffusers:
    the root over agents (one level) or over sites whose members are all agents (two levels),
    no neighbour edges, weights or non-aggregating holons."""
    try:
        h = Holarchy.from_yaml(spec) if isinstance(spec, str) else Holarchy.from_dict(spec, "sites")
    except FileNotFoundError as e:
        raise ValueError(f"sites: {e}") from None
    root = h.holons[h.root]
    if h.edges:
        raise ValueError("sites: neighbour edges have no meaning for diffusers; leave `edges` out")
    for holon in h.holons.values():
        if holon.weight is not None or not holon.aggregates:
            raise ValueError(f"sites: holon {holon.id}: `weight` and `aggregates` have no "
                             "meaning for diffusers; leave them out")
    kinds = {h.holons[m].terminal for m in root.members}
    if kinds == {True, False}:
        raise ValueError(f"sites: the root {h.root} lists agents and sites together; list "
                         "only agents (one level) or only sites")
    for site in root.members:
        deeper = [m for m in h.holons[site].members if not h.holons[m].terminal]
        if deeper:
            raise ValueError(f"sites: site {site} lists holon {deeper[0]}: a site's members "
                             "are agents (at most two levels of diffusers)")
    if kinds == {False} and strategy not in MERGEABLE:
        raise ValueError(f"sites: strategy {strategy} cannot combine a sub-context's parts "
                         f"from several sites by size; use one of {', '.join(MERGEABLE)}")
    return h


def site_members(h: Holarchy, ids: Sequence[str]) -> list[list[int]]:
    """Each site's agents as indices into `ids`, ascending (one site, all agents, for one
    level); an agent missing from the holarchy or unknown to the run is one line."""
    index = {a: i for i, a in enumerate(ids)}
    listed = h.terminals()
    unknown = [a for a in listed if a not in index]
    if unknown:
        raise InputError(f"sites: {len(unknown)} unknown agent(s) ({', '.join(unknown[:5])}): "
                         "the holarchy's terminals are the run's agent ids")
    missing = sorted(set(ids) - set(listed), key=index.__getitem__)
    if missing:
        raise InputError(f"sites: {len(missing)} agent(s) in no site ({', '.join(missing[:5])})")
    root = h.holons[h.root]
    if h.holons[root.members[0]].terminal:
        return [list(range(len(ids)))]
    return [sorted(index[a] for a in h.holons[s].members) for s in root.members]


@dataclass
class Site:
    """One site diffuser and the run's indices of its agents (ascending: local index k is
    agents[k])."""

    agents: list[int]
    diffuser: Diffuser


class Traffic:
    """Bytes exchanged per level ("sites": agents with their site diffusers; "root": sites
    with the root), direction and phase (per batch or at clusterings)."""

    LEVELS, WAYS, PHASES = ("sites", "root"), ("up", "down"), ("batch", "clustering")

    def __init__(self) -> None:
        self.bytes = {f"{lv}/{w}/{p}": 0 for lv in self.LEVELS for w in self.WAYS
                      for p in self.PHASES}

    counting = True

    def add(self, level: str, way: str, phase: str, numbers: int) -> None:
        if self.counting:
            self.bytes[f"{level}/{way}/{phase}"] += WORD * numbers

    def summary(self) -> dict[str, dict[str, dict[str, int]]]:
        """{level: {up|down: {batch, clustering}}} for a run's rows and summary."""
        return {lv: {w: {p: self.bytes[f"{lv}/{w}/{p}"] for p in self.PHASES}
                     for w in self.WAYS} for lv in self.LEVELS}


Part = tuple[int, tuple[int, ...]]
"""Part of a sub-context at one site: (site, its agents' local indices, ascending)."""


class SiteDiffusers:
    """Site diffusers under a root, with the flat `Diffuser`'s interface (contexts, cluster,
    groups, trial, clustered, history, state, load_state), so `OsmlJob` uses either.

    The root is itself a flat `Diffuser`, over the units of a clustering instead of agents: the
    same gate, linkage and probations (`Diffuser.cluster`), so a unit in no merged sub-context
    can be put on probation with one, or with other such units, as an agent can."""

    def __init__(self, sites: list[list[int]], make_site: Callable[[int], Diffuser],
                 n_agents: int, steps: int):
        self.n = n_agents
        self.sites = [Site(agents, make_site(len(agents))) for agents in sites]
        self.strategy: Strategy = self.sites[0].diffuser.strategy
        self.make_site = make_site
        self.root = make_site(0)  # one over the units of each clustering (`_prepared`)
        self.steps = steps
        self.traffic = Traffic()
        self._history: list[Clustering] = []  # two levels; one level: the site diffuser's
        # Sub-contexts merged by the root, as parts; each part is a group of its site diffuser.
        # Until the first clustering: all agents, one part per site.
        self.merged: list[list[Part]] = []
        # The root's probations: (receivers, sources): the receivers' agents align to the
        # combination of the sources' parts until the next clustering.
        self.joining: list[tuple[list[Part], list[Part]]] = []
        if not self.flat:
            self.merged = [[(k, tuple(range(len(s.agents)))) for k, s in enumerate(self.sites)]]

    @property
    def flat(self) -> bool:
        """One level: the one site diffuser is the flat diffuser over all agents."""
        return len(self.sites) == 1

    def agents(self, parts: Sequence[Part]) -> list[int]:
        """The run's indices of the parts' agents, ascending."""
        return sorted(self.sites[k].agents[i] for k, part in parts for i in part)

    # -- the flat Diffuser's interface --------------------------------------------------------
    @property
    def history(self) -> list[Clustering]:
        return self.sites[0].diffuser.history if self.flat else self._history

    @property
    def groups(self) -> list[list[int]]:
        """Sub-contexts over all agents: merged ones and those that stay at one site."""
        if self.flat:
            return self.sites[0].diffuser.groups
        in_merged = {p for m in self.merged for p in m}
        out = [self.agents(m) for m in self.merged]
        out += [self.agents([(k, tuple(g))]) for k, s in enumerate(self.sites)
                for g in s.diffuser.groups if (k, tuple(g)) not in in_merged]
        return sorted(out, key=lambda g: g[0])

    @property
    def trial(self) -> dict[int, list[int]]:
        """Agents on probation (at their site, or at the root, which prevails) and the agents
        whose context they get."""
        out = {s.agents[i]: self.agents([(k, tuple(t))]) for k, s in enumerate(self.sites)
               for i, t in s.diffuser.trial.items()}
        for receivers, sources in self.joining:
            out.update(dict.fromkeys(self.agents(receivers), self.agents(sources)))
        return out

    @property
    def clustered(self) -> frozenset[int]:
        return frozenset(i for g in self.groups for i in g)

    def contexts(self, E: Tensor) -> Tensor:
        """The context each agent aligns to, [agents, steps, d]: its site's answer, except
        for merged sub-contexts and the root's probations, whose parts' contexts the root
        combines (module docstring)."""
        b, d = E.shape[1], E.shape[2]
        level = "root" if self.flat else "sites"
        self.traffic.add(level, "up", "batch", self.n * b * d)
        self.traffic.add(level, "down", "batch", self.n * b * d)
        if self.flat:
            return self.sites[0].diffuser.contexts(E)
        E = E.detach()
        out = torch.empty_like(E)
        for s in self.sites:
            out[s.agents] = s.diffuser.contexts(E[s.agents])
        links = [(m, m) for m in self.merged] + self.joining
        sent = {p for _, sources in links for p in sources}
        self.traffic.add("root", "up", "batch", len(sent) * (b * d + 1))
        self.traffic.add("root", "down", "batch", sum(len(r) for r, _ in links) * b * d)
        for receivers, sources in links:
            parts = [E[self.agents([p])] for p in sources]
            C = self.strategy.aggregate(torch.stack([self.strategy.aggregate(x) for x in parts]),
                                        torch.tensor([float(len(x)) for x in parts]))
            out[self.agents(receivers)] = C
        return out

    def cluster(self, epoch: int, E: Tensor) -> Clustering:
        """Every site regroups its agents (`Diffuser.cluster`), then the root regroups the
        sites' units (module docstring). E: every agent's embeddings of all training steps
        [agents, steps, d], as each site diffuser receives them."""
        T, d = E.shape[1], E.shape[2]
        level = "root" if self.flat else "sites"
        self.traffic.add(level, "up", "clustering", self.n * T * d)
        if self.flat:
            return self.sites[0].diffuser.cluster(epoch, E)
        before, on_trial = (self.groups if self._history else []), list(self.trial)
        records = [s.diffuser.cluster(epoch, E[s.agents]) for s in self.sites]
        units = self._units()
        steps = torch.linspace(0, T - 1, min(self.steps, T)).round().long().unique()
        self.traffic.add("root", "down", "clustering", len(self.sites) * len(steps))
        self.traffic.add("root", "up", "clustering", len(units) * (len(steps) * d + 1))
        at = E[:, steps]  # the sampled steps once, not every unit's agents at all steps
        U = torch.stack([self.strategy.aggregate(at[self.agents([u])]) for u in units])
        root = self._prepared(units, before)
        found = root.cluster(epoch, U)
        self.merged = [[units[u] for u in g] for g in found.groups]
        self.joining = []
        for target, receivers in _by_target(root.trial).items():
            self.joining.append(([units[u] for u in receivers], [units[u] for u in target]))
        self.traffic.add("root", "down", "clustering",
                         sum(len(g) + 1 for g in found.groups)
                         + sum(len(r) + len(s) + 1 for r, s in self.joining))
        self._settle()
        groups = self.groups
        changes = membership_changes(before, groups, on_trial)
        changes += [{**c, "agent": s.agents[c["agent"]],
                     "subcontext": self.agents([(k, tuple(c["subcontext"]))])}
                    for k, (s, r) in enumerate(zip(self.sites, records)) for c in r.changes
                    if c["change"] in ("probation", "rejected")]
        changes += [{**c, "agent": i, "subcontext": self.agents([units[u] for u in c["subcontext"]])}
                    for c in found.changes if c["change"] in ("probation", "rejected")
                    for i in self.agents([units[c["agent"]]])]
        empty = np.zeros((0, 0), np.float32)  # the pair matrices stay at the sites and the root
        record = Clustering(epoch, groups, empty, empty, sorted(changes, key=lambda c: c["agent"]))
        self._history.append(record)
        return record

    def _units(self) -> list[Part]:
        """What the sites send up: each site's sub-contexts, then its agents in none."""
        units: list[Part] = []
        for k, s in enumerate(self.sites):
            units += [(k, tuple(g)) for g in s.diffuser.groups]
            inside = {i for g in s.diffuser.groups for i in g}
            units += [(k, (i,)) for i in range(len(s.agents)) if i not in inside]
        return units

    def _prepared(self, units: list[Part], before: list[list[int]]) -> Diffuser:
        """A root diffuser built for this clustering's units (its size chooses its discovery
        path), continuing the previous one's sampling RNG: units whose first agents shared a
        sub-context before are its groups (they stay together at `stay_rank`, as agents do),
        and its history, the previous record without pair matrices, says there was a before."""
        where = {i: g for g, members in enumerate(before) for i in members}
        together: dict[int, list[int]] = {}
        for u, unit in enumerate(units):
            g = where.get(self.agents([unit])[0])
            if g is not None:
                together.setdefault(g, []).append(u)
        root = self.make_site(len(units))
        root.rng.bit_generator.state = self.root.rng.bit_generator.state
        root.groups = [us for us in together.values() if len(us) > 1]
        empty = np.zeros((0, 0), np.float32)
        root.history = [Clustering(c.epoch, c.groups, empty, empty)
                        for c in self.root.history[-1:]]
        self.root = root
        return root

    def _settle(self) -> None:
        """A site's parts of one merged sub-context become one part, a group of its site
        diffuser; an agent merged this way is on probation at its site no longer."""
        self.merged = [_per_site(m) for m in self.merged]
        self.joining = [(_per_site(r), _per_site(s)) for r, s in self.joining]
        for k, s in enumerate(self.sites):
            mine = [list(p) for m in self.merged for kk, p in m if kk == k]
            taken = {i for p in mine for i in p}
            kept = [g for g in s.diffuser.groups if not taken & set(g)]
            s.diffuser.groups = sorted(kept + mine, key=lambda g: g[0])
            s.diffuser.trial = {i: t for i, t in s.diffuser.trial.items() if i not in taken}

    # -- checkpoints --------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """(tensors, JSON-able rest): every site diffuser's and the root's state, the merged
        sub-contexts and probations, the history and the bytes so far."""
        tensors: dict[str, Tensor] = {}
        rests = []
        for name, diffuser in [*((f"site/{k}", s.diffuser) for k, s in enumerate(self.sites)),
                               ("root", self.root)]:
            t, rest = diffuser.state()
            tensors.update({f"{name}/{key}": v for key, v in t.items()})
            rests.append(rest)
        return tensors, {
            "sites": rests[:-1], "root": {**rests[-1], "n": self.root.n},
            "merged": self.merged, "joining": self.joining, "traffic": self.traffic.bytes,
            "history": [{"epoch": c.epoch, "groups": c.groups, "changes": c.changes}
                        for c in self._history],
        }

    def load_state(self, tensors: dict[str, Tensor], rest: dict[str, Any]) -> None:
        self.root = self.make_site(rest["root"]["n"])
        for name, diffuser, part in [*((f"site/{k}", s.diffuser, r) for k, (s, r)
                                       in enumerate(zip(self.sites, rest["sites"]))),
                                     ("root", self.root, rest["root"])]:
            prefix = f"{name}/"
            diffuser.load_state({key[len(prefix):]: v for key, v in tensors.items()
                                 if key.startswith(prefix)}, part)

        def parts(ps: list[Any]) -> list[Part]:
            return [(int(k), tuple(p)) for k, p in ps]

        self.merged = [parts(m) for m in rest["merged"]]
        self.joining = [(parts(r), parts(s)) for r, s in rest["joining"]]
        self.traffic.bytes = dict(rest["traffic"])
        empty = np.zeros((0, 0), np.float32)
        self._history = [Clustering(h["epoch"], h["groups"], empty, empty, h["changes"])
                         for h in rest["history"]]


def _by_target(trial: dict[int, list[int]]) -> dict[tuple[int, ...], list[int]]:
    """Probations grouped by whose context they receive: {target: receivers}."""
    out: dict[tuple[int, ...], list[int]] = {}
    for u, target in trial.items():
        out.setdefault(tuple(target), []).append(u)
    return out


def _per_site(parts: Sequence[Part]) -> list[Part]:
    """Parts of one site joined into one, sites in order."""
    joined: dict[int, list[int]] = {}
    for k, part in parts:
        joined.setdefault(k, []).extend(part)
    return [(k, tuple(sorted(p))) for k, p in sorted(joined.items())]


@contextmanager
def uncounted(diffuser: Diffuser | SiteDiffusers) -> Iterator[None]:
    """Contexts asked for while measuring the run (evaluation on the test split): no traffic."""
    if not isinstance(diffuser, SiteDiffusers):
        yield
        return
    diffuser.traffic.counting = False
    try:
        yield
    finally:
        diffuser.traffic.counting = True


class SiteSettings(Protocol):
    """What the site diffusers read of a run's settings (an `OsmlConfig`, which validates
    `sites` with this module: hence a protocol, not an import)."""

    sites: str | dict[str, Any] | None
    strategy: str
    cluster_samples: int


def diffusers(config: SiteSettings, ids: Sequence[str], make_site: Callable[[int], Diffuser],
              ) -> Diffuser | SiteDiffusers:
    """The run's diffuser: flat (`config.sites` unset), or site diffusers under a root over
    the agents `ids`, each site's built by `make_site(its number of agents)`."""
    if config.sites is None:
        return make_site(len(ids))
    return SiteDiffusers(check_sites(config, ids), make_site, len(ids),
                         steps=ROOT_STEPS * config.cluster_samples)


def check_sites(config: SiteSettings, ids: Sequence[str]) -> list[list[int]]:
    """The agents of each site of `config.sites` (`site_members`), or one line saying what is
    wrong with the holarchy against the agents `ids`."""
    return site_members(site_holarchy(config.sites, config.strategy), ids)
