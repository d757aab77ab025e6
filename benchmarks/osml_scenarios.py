"""OSM-L on 30 generated scenarios with a known answer (issue 10): are the sub-contexts right?

Scenario i of the suite (`osmotic.data.scenarios.suite_spec(i)`) has 2–4 groups of 2–4 agents
that share a latent process, 0–2 loners (a latent of their own) and 0–3 noise agents. Each is
trained with default settings for 30 epochs, like `osmotic osml run --epochs 30`, and its final
sub-contexts are compared with the truth: adjusted Rand index (loners, noise agents and missed
members as singletons), exact match, any loner or noise agent in a sub-context, training time.

Defaults were chosen on scenarios 0–19; 20–29 are held back. The suite runs in parts, each
part's rows kept in a JSON store beside the report, so `--scenarios 0-19` and `--scenarios
20-29` can run at different times on a busy machine; the report covers whatever is stored.
Every part records the machine load, the per-op cost (µs of `torch.tanh` on [50, 20], median)
and, as a baseline measured in the same part, the training time of `reproduce complex`.

    .venv/bin/python benchmarks/osml_scenarios.py --scenarios 0-19
    .venv/bin/python benchmarks/osml_scenarios.py --scenarios 20-29
    .venv/bin/python benchmarks/osml_scenarios.py --scenarios 0-3 --set unclustered=global \\
        --name global    # try a setting: own store and report, results/osml_scenarios-global.*
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
from pathlib import Path
from typing import Any

import torch
import yaml
from common import per_op_us

from osmotic.data.scenarios import generate_scenario, suite_spec
from osmotic.osml.config import OsmlConfig
from osmotic.osml.experiments import EXPERIMENTS, PAPER_DATA, CsvSource, GeneratedSource
from osmotic.osml.metrics import against_truth
from osmotic.osml.trainer import train_osml

RESULTS = Path(__file__).parent / "results"
SUITE_SIZE, TUNING, HELD_BACK = 30, range(20), range(20, 30)
EPOCHS = 30


def baseline_seconds(overrides: dict[str, Any]) -> float:
    """Training seconds of `reproduce complex` (the paper's files if here), seed 0."""
    exp = EXPERIMENTS["complex"]
    source = (CsvSource.paper(PAPER_DATA, exp.context) if PAPER_DATA.is_dir()
              else GeneratedSource(exp.context, 0))
    train, test = source.load(10)
    return train_osml(exp.config(**overrides), train, test, progress=False).summary["train_seconds"]


def run_scenario(index: int, overrides: dict[str, Any]) -> dict[str, Any]:
    spec = suite_spec(index)
    train, test, truth = generate_scenario(spec["groups"], spec["loners"], spec["noise"],
                                           spec["seed"])
    config = OsmlConfig().with_overrides(epochs=EPOCHS, **overrides)
    result = train_osml(config, train, test, progress=False)
    s = result.summary
    scores = against_truth([g["agents"] for g in s["subcontexts"]], s["agents"], truth)
    changes = [c for record in result.history for c in record["changes"]]
    outsiders = set(truth["loners"]) | set(truth["noise"])
    return {"scenario": index, **spec, "agents": len(s["agents"]), **scores,
            "train_seconds": s["train_seconds"],
            "membership_changes": sum(c["change"] in ("join", "leave") for c in changes),
            "outsider_probations": sum(c["change"] == "probation" and c["agent"] in outsiders
                                       for c in changes)}


def parse_range(text: str) -> list[int]:
    """`0-19`, `3`, `0-3,7` -> indices."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def summary_row(label: str, rows: list[dict[str, Any]]) -> str:
    n = len(rows)
    if not n:
        return f"| {label} | 0 | – | – | – | – |"
    aris = [r["ari"] for r in rows]
    return (f"| {label} | {n} | {statistics.mean(aris):.3f} (min {min(aris):.3f}) | "
            f"{sum(r['exact'] for r in rows)}/{n} ({100 * sum(r['exact'] for r in rows) / n:.0f} %) | "
            f"{sum(bool(r['intruders']) for r in rows)}/{n} | "
            f"{statistics.mean(r['train_seconds'] for r in rows):.1f} |")


def render(store: dict[str, Any], name: str) -> str:
    rows = [store["rows"][k] for k in sorted(store["rows"], key=int)]
    groups = lambda gs: ", ".join("{" + ",".join(g) + "}" for g in gs) or "none"
    lines = [
        f"# OSM-L scenario suite{f' ({name})' if name else ''}", "",
        ("Command: `.venv/bin/python benchmarks/osml_scenarios.py --scenarios 0-19` and "
         "`--scenarios 20-29`" + (f" with `--set {store['settings']}`" if store["settings"] else "")
         + f". Default settings otherwise, {EPOCHS} epochs. ARI: adjusted Rand index of the final "
         "sub-contexts against the truth (loners, noise agents and missed members as singletons). "
         "'intruded': scenarios with a loner or noise agent in a sub-context. Defaults were chosen "
         "on scenarios 0–19; 20–29 are held back. Times are wall seconds on a shared 2-core "
         "machine (see each part's load and per-op cost): noisy, compare them with the baseline "
         "measured in the same part."), "",
        "| scenarios | n | mean ARI | exact | intruded | train s (mean) |", "|---|---|---|---|---|---|",
        summary_row("0–19 (tuning)", [r for r in rows if r["scenario"] in TUNING]),
        summary_row("20–29 (held back)", [r for r in rows if r["scenario"] in HELD_BACK]),
        summary_row("all", rows), "",
        ("'joins/leaves': membership changes over the run; 'outsider probations': times a loner "
         "or noise agent was put on probation (each was then refused by the clustering's gate, "
         "unless 'intruders' says otherwise)."), "",
        ("| # | groups | loners | noise | ARI | exact | intruders | expected | found | "
         "joins/leaves | outsider probations | train s |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['scenario']} | {','.join(map(str, r['groups']))} | {r['loners']} | "
                     f"{r['noise']} | {r['ari']:.3f} | {'yes' if r['exact'] else 'no'} | "
                     f"{','.join(r['intruders']) or '-'} | {groups(r['expected'])} | "
                     f"{groups(r['found'])} | {r['membership_changes']} | "
                     f"{r['outsider_probations']} | {r['train_seconds']:.1f} |")
    lines += ["", "Parts (machine state while each ran):", "",
              ("| scenarios | when (UTC) | load average before → after | per-op µs | "
               "complex (baseline) train s | scenario train s / baseline |"),
              "|---|---|---|---|---|---|"]
    for p in store["parts"]:
        lines.append(f"| {p['scenarios']} | {p['when']} | {p['load_before']} → {p['load_after']} "
                     f"| {p['per_op_us']:.1f} | {p['baseline_s']:.2f} | {p['ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", type=parse_range, default=list(range(SUITE_SIZE)),
                    help="indices to (re)run, e.g. 0-19 (default: all 30)")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="OsmlConfig settings to change (values in YAML), e.g. threshold=0.9")
    ap.add_argument("--name", default="", help="store and report under "
                    "results/osml_scenarios-NAME.{json,md} (for trying settings)")
    args = ap.parse_args()
    overrides = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
    stem = "osml_scenarios" + (f"-{args.name}" if args.name else "")
    store_path, report_path = RESULTS / f"{stem}.json", RESULTS / f"{stem}.md"
    store = (json.loads(store_path.read_text()) if store_path.exists()
             else {"settings": " ".join(args.set), "rows": {}, "parts": []})
    if store["settings"] != " ".join(args.set):
        raise SystemExit(f"{store_path} holds results for --set {store['settings']!r}; "
                         "use another --name")
    torch.set_num_threads(1)
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    op_us = per_op_us()
    base = baseline_seconds(overrides)
    secs = []
    for index in args.scenarios:
        row = run_scenario(index, overrides)
        secs.append(row["train_seconds"])
        store["rows"][str(index)] = row
        print(f"scenario {index}: ARI {row['ari']:.3f} exact {row['exact']} intruders "
              f"{row['intruders'] or '-'} found {row['found']} expected {row['expected']} "
              f"{row['train_seconds']:.1f} s", flush=True)
        store_path.write_text(json.dumps(store, indent=1) + "\n")  # a stopped part keeps its rows
    store["parts"].append({
        "scenarios": f"{args.scenarios[0]}–{args.scenarios[-1]}" if len(args.scenarios) > 1
        else str(args.scenarios[0]),
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "load_before": load_before, "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "per_op_us": op_us, "baseline_s": base, "ratio": statistics.mean(secs) / base})
    store_path.write_text(json.dumps(store, indent=1) + "\n")
    report_path.write_text(render(store, args.name))
    print(render(store, args.name))
    print(f"wrote {report_path}")


if __name__ == "__main__":
    main()
