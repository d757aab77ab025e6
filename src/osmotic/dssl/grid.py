"""`osmotic dssl reproduce`: the study's grid, its table and its figures.

Cells: {simsiam, mae, mar} × {iid, Dirichlet α = 1, α = 0.1} × {FL, DecL d = 2, 4, 8} with 20
clients, plus centralised pre-training per method (one client, all the data, the same number
of images processed). Every cell and seed writes its own run directory and a finished one is
read back, not re-run, so an interrupted grid resumes where it stopped. Cells run in order of
what the claims need first (FL at every α, then the degrees at α = 0.1, then DecL at IID for
their robustness, ...), every seed of a cell before the next cell, so a partial grid is still
a comparison.
"""
from __future__ import annotations

import json
import multiprocessing
import signal
import traceback
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file

from osmotic.dssl.config import DsslConfig
from osmotic.dssl.plots import plot_drift, plot_embedding, plot_lines, plot_scatter
from osmotic.dssl.runner import Prober, load_data, module_builder, run
from osmotic.report import RunDir
from osmotic.report.rundir import find_run, write_json

METHODS = ("simsiam", "mae", "mar")
PARTITIONS = (("iid", None), ("dirichlet", 0.1), ("dirichlet", 1.0))
DEGREES = (2, 4, 8)


class CellsFailed(RuntimeError):
    """Some cells of a grid run with workers failed; the others finished and were reported."""


def cells(base: DsslConfig) -> list[DsslConfig]:
    """Every cell's settings (seed aside), in the order the claims need them (degrees that
    `base.clients` cannot have are left out)."""
    def cell(method: str, part: tuple[str, float | None], framework: str,
             degree: int | None = None) -> DsslConfig:
        kind, alpha = part
        return base.with_overrides(method=method, partition=kind, alpha=alpha,
                                   framework=framework, degree=degree)

    degrees = [d for d in DEGREES if d < base.clients and base.clients * d % 2 == 0]
    steps = base.local_steps
    central = [base.with_overrides(method=m, framework="fl", partition="iid", clients=1,
                                   local_steps=None if steps is None else steps * base.clients)
               for m in METHODS]
    iid, skew, mild = PARTITIONS
    order = [cell(m, iid, "fl") for m in METHODS] + central
    order += [cell(m, part, "fl") for part in (skew, mild) for m in METHODS]
    for part in (skew, iid, mild):
        order += [cell(m, part, "decl", d) for d in degrees for m in METHODS]
    return order


def cell_dir(config: DsslConfig) -> str:
    return config.name if config.clients > 1 else f"{config.method}-centralised"


def _label(config: DsslConfig) -> str:
    return f"{cell_dir(config)} seed {config.seed}"


def run_grid(base: DsslConfig, out: str | Path, seeds: Sequence[int],
             progress: bool | None = None, limit: int | None = None,
             log: Callable[[str], None] = print, report_only: bool = False,
             workers: int = 1) -> list[dict[str, Any]]:
    """Run (or read back) every cell for every seed; write table and figures. `limit` stops
    after that many cells (a partial grid, for a time budget); `report_only` runs nothing
    and reports the finished cells. `workers` > 1 runs that many cells at once, each in its
    own process without a progress bar (cells are independent and seeded, so the numbers do not
    depend on it); a cell that fails there is logged with its traceback, the others go on, and
    `CellsFailed` comes after the report. With one worker a failure stops the grid at once, as
    a single run would."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(base)
    done: dict[int, dict[str, Any]] = {}
    todo: list[tuple[int, DsslConfig, Path, bool]] = []
    for cell in cells(base)[:limit]:
        for seed in seeds:
            cfg = cell.with_overrides(seed=seed)
            path, state = find_run(cfg, out / f"seed{seed}" / cell_dir(cfg))
            at = len(done) + len(todo)
            if state == "finished":
                # where it is now (a grid folder may have been moved or copied)
                done[at] = {**json.loads((path / "summary.json").read_text()),
                            "run_dir": str(path)}
            elif state == "diverged":
                log(f"{path}: diverged; left out of the table")
            elif not report_only:
                if state == "interrupted":
                    log(f"{path}: interrupted; resuming from its checkpoint")
                todo.append((at, cfg, path, state == "interrupted"))

    def finished(at: int, cfg: DsslConfig, s: dict[str, Any]) -> None:
        log(f"{_label(cfg)}: linear {s['linear_probe_accuracy']:.3f} "
            f"({s['train_seconds']:.0f} s)")
        done[at] = s

    failed: list[str] = []
    if workers <= 1 or len(todo) <= 1:
        pools = {base.seed: data}  # without IDX test files the hold-out depends on the seed
        for at, cfg, path, resume in todo:
            if cfg.seed not in pools:
                pools[cfg.seed] = load_data(cfg)
            finished(at, cfg, run(cfg, path, pools[cfg.seed], progress, resume=resume))
    else:
        # spawn: no forked torch thread pools; SIGINT's default in the workers, so that Ctrl-C
        # stops the grid (checkpoints are written atomically) instead of each worker reporting
        # it as a failed cell and taking the next one
        with ProcessPoolExecutor(min(workers, len(todo)), multiprocessing.get_context("spawn"),
                                 initializer=signal.signal,
                                 initargs=(signal.SIGINT, signal.SIG_DFL)) as pool:
            futures = {pool.submit(run, cfg, path, None, False, resume=resume): (at, cfg)
                       for at, cfg, path, resume in todo}
            for future in as_completed(futures):
                at, cfg = futures[future]
                try:
                    finished(at, cfg, future.result())
                except BrokenProcessPool:
                    failed.append("a worker process died (out of memory?), so the cells not "
                                  "yet finished")
                    break
                except Exception as err:  # noqa: BLE001 (any failure: the other cells go on)
                    failed.append(f"{_label(cfg)} ({err!r})")
                    log(f"{_label(cfg)}: failed: "
                        + "".join(traceback.format_exception(err)).rstrip())
    summaries = [done[k] for k in sorted(done)]
    write_report(out, summaries, base, data)
    if failed:
        raise CellsFailed(f"{len(failed)} cell(s) failed, the report has the others; run the "
                          f"same command again to retry them: {'; '.join(failed)}")
    return summaries


def _key(s: dict[str, Any]) -> tuple[str, str, int, str, float | None]:
    return (s["method"], s["framework"] if s["clients"] > 1 else "central", s["degree"],
            s["partition"], s["alpha"])


def with_robustness(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run's robustness: its probe accuracy over the same method, framework (and degree)
    and seed under IID (None where that IID run is missing)."""
    iid = {(*_key(s)[:3], s["seed"]): s["linear_probe_accuracy"] for s in summaries
           if s["partition"] == "iid"}
    out = []
    for s in summaries:
        ref = iid.get((*_key(s)[:3], s["seed"]))
        out.append({**s, "robustness": None if ref is None else s["linear_probe_accuracy"] / ref})
    return out


def _stats(xs: list[float | None]) -> tuple[float, float, int] | None:
    v = [x for x in xs if x is not None]
    return (float(np.mean(v)), float(np.std(v)), len(v)) if v else None


def aggregate(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean, sd and count over seeds per cell."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for s in with_robustness(summaries):
        groups[_key(s)].append(s)
    rows = []
    for key, runs in groups.items():
        row: dict[str, Any] = dict(zip(("method", "framework", "degree", "partition", "alpha"),
                                       key, strict=True))
        row["seeds"] = sorted(r["seed"] for r in runs)
        for m in ("linear_probe_accuracy", "knn_accuracy", "client_linear_probe_accuracy",
                  "random_init_linear_probe_accuracy", "robustness", "final_drift",
                  "train_seconds"):
            row[m] = _stats([r.get(m) for r in runs])
        rows.append(row)
    return rows


def _fmt(st: tuple[float, float, int] | None, digits: int = 3) -> str:
    if st is None:
        return "-"
    return f"{st[0]:.{digits}f} ± {st[1]:.{digits}f}" if st[2] > 1 else f"{st[0]:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown, one row per cell (mean ± sd over seeds)."""
    lines = [("| method | framework | partition | linear probe | kNN | client probe (DecL) | "
              "robustness | final drift | random init | train s | seeds |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fw = r["framework"] if r["framework"] != "decl" else f"decl d={r['degree']}"
        part = "iid" if r["partition"] == "iid" else f"α={r['alpha']:g}"
        lines.append(f"| {r['method']} | {fw} | {part} | {_fmt(r['linear_probe_accuracy'])} | "
                     f"{_fmt(r['knn_accuracy'])} | {_fmt(r['client_linear_probe_accuracy'])} | "
                     f"{_fmt(r['robustness'])} | {_fmt(r['final_drift'])} | "
                     f"{_fmt(r['random_init_linear_probe_accuracy'])} | "
                     f"{_fmt(r['train_seconds'], 0)} | {len(r['seeds'])} |")
    return "\n".join(lines) + "\n"


def write_report(out: Path, summaries: list[dict[str, Any]], base: DsslConfig,
                 data: Any) -> None:
    """comparison.json / .md and the figures, from whatever runs exist."""
    rows = aggregate(summaries)
    write_json(out / "comparison.json", {"runs": with_robustness(summaries), "cells": rows})
    (out / "comparison.md").write_text(table(rows))
    by = {(r["method"], r["framework"], r["degree"], r["partition"], r["alpha"]): r for r in rows}
    n = base.clients

    def line(method: str, keys: list[tuple], xs: list[float]) -> tuple | None:
        pts = [(x, by[k]["linear_probe_accuracy"]) for x, k in zip(xs, keys, strict=True)
               if k in by and by[k]["linear_probe_accuracy"]]
        if not pts:
            return None
        return ([p[0] for p in pts], [p[1][0] for p in pts], [p[1][1] for p in pts])

    random_init = [r["random_init_linear_probe_accuracy"][0] for r in rows
                   if r["random_init_linear_probe_accuracy"]]
    base_lines = {"random init": float(np.mean(random_init))} if random_init else {}
    alpha_lines = {m: line(m, [(m, "fl", n - 1, "dirichlet", 0.1), (m, "fl", n - 1, "dirichlet",
                                                                    1.0),
                               (m, "fl", n - 1, "iid", None)], [0.1, 1.0, 10.0])
                   for m in METHODS}
    plot_lines({m: v for m, v in alpha_lines.items() if v}, out / "probe-vs-alpha.png",
               xlabel="Dirichlet α (10 = IID)", ylabel="linear probe accuracy",
               title="FL: probe accuracy vs heterogeneity", baselines=base_lines, log_x=True)
    deg_lines = {m: line(m, [(m, "decl", d, "dirichlet", 0.1) for d in DEGREES]
                         + [(m, "fl", n - 1, "dirichlet", 0.1)], [*DEGREES, n - 1])
                 for m in METHODS}
    plot_lines({m: v for m, v in deg_lines.items() if v}, out / "probe-vs-degree.png",
               xlabel="degree (FL drawn at n - 1)", ylabel="linear probe accuracy",
               title="α = 0.1: probe accuracy vs connectivity", baselines=base_lines)
    pairs = [(by[k]["linear_probe_accuracy"][0], by[("mar", *k[1:])]["linear_probe_accuracy"][0],
              f"{k[1]}{'' if k[1] != 'decl' else k[2]} {k[3][:3]}{k[4] or ''}")
             for k in by if k[0] == "mae" and ("mar", *k[1:]) in by]
    if pairs:
        plot_scatter(pairs, out / "mar-vs-mae.png", xlabel="MAE linear probe",
                     ylabel="MAR linear probe", title="MAR against MAE (mean over seeds)")
    first = min(s["seed"] for s in summaries) if summaries else 0
    def drifting(s: dict[str, Any]) -> bool:
        return (s["framework"] == "fl" and s["clients"] > 1 and s["seed"] == first
                and s["alpha"] in (None, 0.1))

    drift = {f"{s['method']} {'iid' if s['alpha'] is None else 'α=0.1'}":
             [r["drift"] for r in RunDir(s["run_dir"]).read_metrics()]
             for s in summaries if drifting(s)}
    if drift:
        plot_drift(drift, out / "drift.png", "FL: representation drift per round")
    _embedding(out, summaries, base, data, first)


def _embedding(out: Path, summaries: list[dict[str, Any]], base: DsslConfig, data: Any,
               seed: int) -> None:
    """PCA of test features of MAE under FL, IID and α = 0.1 (the first seed)."""
    panels = {}
    for s in summaries:
        if (s["method"], s["framework"], s["seed"], s["clients"]) != ("mae", "fl", seed,
                                                                      base.clients):
            continue
        if s["partition"] == "dirichlet" and s["alpha"] != 0.1:
            continue
        flat = load_file(Path(s["run_dir"]) / "models" / "final.safetensors")["consensus"]
        config = DsslConfig.from_yaml(Path(s["run_dir"]) / "config.yaml")
        prober = Prober(module_builder(config, data.input_shape)(), data, seed)
        x = prober.features(flat, data.test.images[:2000])
        x = x - x.mean(0)
        xy = x @ np.linalg.svd(x, full_matrices=False)[2][:2].T
        name = "IID" if s["partition"] == "iid" else "Dirichlet α = 0.1"
        panels[f"MAE, FL, {name}: test features (PCA)"] = (xy, data.test.labels[:2000].numpy())
    if panels:
        plot_embedding(dict(sorted(panels.items(), reverse=True)), out / "features-2d.png")
