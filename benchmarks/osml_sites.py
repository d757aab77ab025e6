"""Hierarchical diffusers against one flat diffuser: the same sub-contexts, fewer bytes at the top.

Population: `replicate_scenario([3, 2], 0, 2, replicas, seed)`, replicas of the held-out
scenario shape (a group of three and a group of two, each sharing a latent process, and two
noise agents; every replica its own latent processes), agents // 7 replicas. Sites: replica r
goes to site r mod `--sites`; then for a share `--span` of the groups (every 1/span-th group
in truth order) its first member moves to the next site, so that group spans two sites.

Each run trains flat OSM-L (a one-level holarchy: the flat diffuser bit for bit, with its
bytes counted) and the same run under the site holarchy, default settings, and compares the
final sub-contexts with each other and with the truth: adjusted Rand index, precision and
recall of the pairs of agents put together, sub-contexts that join agents of different
replicas, noise agents in a sub-context. Bytes: what the top diffuser receives (flat: every
agent's embeddings of every batch and of every clustering; sites: the root's share, see
docs/osml.md, "Hierarchical diffusers"). Rows are kept in a JSON store beside the report, so
sizes can run at different times; the report covers whatever is stored.

    .venv/bin/python benchmarks/osml_sites.py --agents 1024 --epochs 30
    .venv/bin/python benchmarks/osml_sites.py --agents 16384 --epochs 30 --no-flat
"""
from __future__ import annotations

import argparse
import json
import time
from itertools import combinations
from pathlib import Path
from typing import Any

from common import load, machine_line, per_op_us, write_report

from osmotic.data.scenarios import replicate_scenario
from osmotic.osml.config import OsmlConfig
from osmotic.osml.metrics import against_truth
from osmotic.osml.trainer import train_osml

RESULTS = Path(__file__).parent / "results"
SHAPE = {"groups": [3, 2], "loners": 0, "noise": 2}


def site_of(truth: dict[str, Any], sites: int, span: float) -> dict[str, int]:
    """Replica r at site r mod sites; the first member of every round(1/span)-th group moved
    to the next site."""
    site = {a: r % sites for a, r in truth["replica"].items()}
    every = max(1, round(1 / span)) if span > 0 else None
    for k, g in enumerate(truth["groups"]):
        if every is not None and k % every == 0:
            site[g[0]] = (site[g[0]] + 1) % sites
    return site


def pairs(groups: list[list[str]]) -> set[tuple[str, str]]:
    return {p for g in groups for p in combinations(sorted(g), 2)}


def quality(found: list[list[str]], truth: dict[str, Any]) -> dict[str, Any]:
    ids = list(truth["replica"])
    fit = against_truth(found, ids, {**truth, "agents": ids})
    got, true = pairs(found), pairs(truth["groups"])
    return {"ari": fit["ari"], "exact": fit["exact"],
            "precision": len(got & true) / len(got) if got else 1.0,
            "recall": len(got & true) / len(true) if true else 1.0,
            "subcontexts": len(found), "true_groups": len(truth["groups"]),
            "cross_replica": sum(len({truth["replica"][a] for a in g}) > 1 for g in found),
            "noise_in": len(set(truth["noise"]) & {a for g in found for a in g})}


def run(config: OsmlConfig, train: Any, test: Any, truth: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    result = train_osml(config, train, test, progress=False)
    found = sorted(sorted(g["agents"]) for g in result.summary["subcontexts"])
    b = result.summary["bytes"]
    return {"seconds": time.perf_counter() - t0, "found": found, **quality(found, truth),
            "top_in": sum(b["root"]["up"].values()), "top_out": sum(b["root"]["down"].values()),
            "top_in_batch": b["root"]["up"]["batch"], "sites_in": sum(b["sites"]["up"].values())}


def measure(agents: int, sites: int, span: float, epochs: int, seed: int,
            flat: bool) -> dict[str, Any]:
    train, test, truth = replicate_scenario(**SHAPE, replicas=agents // 7, seed=seed)
    site = site_of(truth, sites, span)
    holarchy = {"holarchy": {"id": "R", "members": [
        {"id": f"S{s}", "members": [a for a in train if site[a] == s]} for s in range(sites)]}}
    spanning = sum(len({site[a] for a in g}) > 1 for g in truth["groups"])
    config = OsmlConfig(epochs=epochs, seed=seed)
    row: dict[str, Any] = {"agents": len(train), "sites": sites, "span": span, "epochs": epochs,
                           "seed": seed, "spanning": spanning, "groups": len(truth["groups"]),
                           "load_before": load(), "per_op_us": round(per_op_us(), 2)}
    row["hier"] = run(config.with_overrides(sites=holarchy), train, test, truth)
    if flat:
        one = {"holarchy": {"id": "R", "members": list(train)}}
        row["flat"] = run(config.with_overrides(sites=one), train, test, truth)
        row["same_as_flat"] = row["flat"]["found"] == row["hier"]["found"]
    row["load_after"] = load()
    return row


def report(rows: list[dict[str, Any]]) -> str:
    def mib(x: float) -> str:
        return f"{x / 2**20:,.1f}"

    lines = [
        "# Hierarchical diffusers (OSM-L)", "",
        f"Last run: {machine_line()}", "",
        ("Replicas of the held-out scenario shape (groups of 3 and 2 sharing a latent process "
        "each, 2 noise agents; every replica its own latent processes), default settings. "
        "Sites: replica r at site r mod 16; the first member of every 1/span-th group moved to "
        "the next site, so that share of the groups spans two sites. Flat: one diffuser (a "
        "one-level holarchy, flat OSM-L bit for bit). Bytes into the top: flat, every agent's "
        "embeddings of every batch and clustering; sites, what the 16 sites send the root. "
        "Pairs: precision and recall of the pairs of agents put together, against the truth. "
        "Seeds 1 and up; seed 0 is the test suite's (2 replicas), nothing was tuned on them."), "",
        ("| agents | epochs | seed | spanning groups | run | seconds | sub-contexts (true) | "
         "ARI | pairs P / R | cross-replica | noise in | same as flat | MiB into top | "
         "flat ÷ sites | load before / after | per-op µs |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        runs = [("flat", r["flat"])] if "flat" in r else []
        runs.append(("16 sites", r["hier"]))
        for name, x in runs:
            ratio = (f"{r['flat']['top_in'] / r['hier']['top_in']:.1f}×"
                     if "flat" in r and name != "flat" else "")
            same = ("yes" if r["same_as_flat"] else "**no**") if "flat" in r and name != "flat" \
                else ""
            lines.append(
                f"| {r['agents']:,} | {r['epochs']} | {r['seed']} | {r['spanning']} of "
                f"{r['groups']} | {name} | {x['seconds']:.0f} | {x['subcontexts']} "
                f"({x['true_groups']}) | {x['ari']:.3f} | {x['precision']:.3f} / "
                f"{x['recall']:.3f} | {x['cross_replica']} | {x['noise_in']} | {same} | "
                f"{mib(x['top_in'])} | {ratio} | {r['load_before']} / {r['load_after']} | "
                f"{r['per_op_us']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=1024)
    p.add_argument("--sites", type=int, default=16)
    p.add_argument("--span", type=float, default=0.125, help="share of groups across two sites")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-flat", action="store_true", help="the site holarchy only (large N)")
    p.add_argument("--name", default="osml_sites")
    args = p.parse_args()
    store = RESULTS / f"{args.name}.json"
    rows = json.loads(store.read_text()) if store.exists() else []
    row = measure(args.agents, args.sites, args.span, args.epochs, args.seed, not args.no_flat)
    key = ("agents", "sites", "span", "epochs", "seed")
    rows = [r for r in rows if any(r[k] != row[k] for k in key)] + [row]
    rows.sort(key=lambda r: tuple(r[k] for k in key))
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_text(json.dumps(rows, indent=1))
    write_report(RESULTS / f"{args.name}.md", report(rows), store)


if __name__ == "__main__":
    main()
