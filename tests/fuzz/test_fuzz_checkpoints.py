"""Fuzzed run directories: `osmotic resume` on a copy of a real tiny run whose checkpoint (bytes,
JSON metadata, tensors), summary, config or metrics were damaged; `osmotic osml score` on
fuzzed truth and summary files."""
from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path
from typing import Any

import torch
import yaml
from hypothesis import given
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

from tests.fuzz.harness import Case, collecting, fuzz_settings, new_case, run_cli
from tests.fuzz.strategies import SCALARS, VALUES

CHECKPOINT = "checkpoint.safetensors"
UNIT = {"osml": "epoch", "holonic": "round", "dssl": "round"}
UNIT_VALUES = st.sampled_from([0, 1, 2, -1, -3, 2**63, 10**30, 1.5, "1", None, [], {}, True,
                               math.nan, -10**6])


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
        meta = json.loads(f.metadata()["osmotic"])
    return tensors, meta


def _save(path: Path, tensors: dict[str, torch.Tensor], meta: Any) -> None:
    save_file(tensors, str(path), metadata={"osmotic": json.dumps(meta)})


@st.composite
def damage(draw: st.DrawFn, case: Case, run: Path, mode: str) -> None:
    """One to three changes to the run directory `run` (a copy), noted in `case`."""
    ckpt = run / CHECKPOINT
    keep_summary = draw(st.integers(0, 9)) == 0
    if not keep_summary:
        (run / "summary.json").unlink()
    else:
        case.note("summary.json kept")
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["unit", "unit", "metrics", "job", "tensors", "tensors",
                                   "flip", "truncate", "config", "remove", "metrics.jsonl",
                                   "header"]))
        if not ckpt.is_file() and op not in ("config", "metrics.jsonl"):
            continue
        if op == "flip":
            raw = bytearray(ckpt.read_bytes())
            if not raw:
                continue
            header = struct.unpack("<Q", bytes(raw[:8]))[0] + 8 if len(raw) >= 8 else len(raw)
            for _ in range(draw(st.integers(1, 8))):
                at = draw(st.integers(0, min(header, len(raw)) - 1) |
                          st.integers(0, len(raw) - 1))
                raw[at] = draw(st.integers(0, 255))
                case.note(f"checkpoint byte {at} set to {raw[at]}")
            ckpt.write_bytes(bytes(raw))
        elif op == "truncate":
            if not ckpt.stat().st_size:
                continue
            size = draw(st.integers(0, ckpt.stat().st_size - 1))
            ckpt.write_bytes(ckpt.read_bytes()[:size])
            case.note(f"checkpoint truncated to {size} bytes")
        elif op == "header":  # the length prefix itself
            raw = ckpt.read_bytes()
            length = draw(st.sampled_from([0, 1, 2**63, 2**64 - 1, len(raw), 100_000_000]))
            ckpt.write_bytes(struct.pack("<Q", length) + raw[8:])
            case.note(f"checkpoint header length set to {length}")
        elif op == "remove":
            ckpt.unlink()
            case.note("checkpoint removed")
        elif op == "config":
            what = draw(st.sampled_from(["remove", "garble", "mode", "total", "field"]))
            config = run / "config.yaml"
            if what == "remove":
                config.unlink(missing_ok=True)
            elif what == "garble":
                config.write_bytes(draw(st.binary(max_size=40)))
            elif config.is_file():
                try:
                    doc = yaml.safe_load(config.read_bytes())
                except Exception:  # noqa: BLE001 - garbled by an earlier change
                    doc = None
                if isinstance(doc, dict):
                    if what == "mode":
                        doc["mode"] = draw(st.sampled_from(["osml", "holonic", "dssl", "x"]))
                    elif what == "total":
                        doc["epochs" if mode == "osml" else "rounds"] = draw(
                            st.sampled_from([1, 2, 0, -1, "x"]))
                    else:
                        doc[draw(st.sampled_from(sorted(map(str, doc))))] = draw(SCALARS)
                    config.write_text(yaml.safe_dump(doc))
            case.note(f"config.yaml: {what}")
        elif op == "metrics.jsonl":
            (run / "metrics.jsonl").write_bytes(draw(st.binary(max_size=30)))
            case.note("metrics.jsonl garbled")
        else:
            try:
                tensors, meta = _read(ckpt)
            except Exception:  # noqa: BLE001, S112 - already damaged by an earlier change
                continue
            if not isinstance(meta, dict):  # replaced by an earlier change
                continue
            if op == "unit":
                value = draw(UNIT_VALUES)
                if draw(st.integers(0, 5)) == 0:
                    meta.pop(UNIT[mode], None)
                    case.note(f"meta: {UNIT[mode]} removed")
                else:
                    meta[UNIT[mode]] = value
                    case.note(f"meta: {UNIT[mode]} = {value!r}")
            elif op == "metrics":
                value = draw(st.sampled_from([[], None, "x", [{}], [1, 2, 3]]) | VALUES)
                meta["metrics"] = value
                case.note(f"meta: metrics = {value!r}"[:200])
            elif op == "job":
                job = meta.get("job")
                if isinstance(job, dict) and job and draw(st.booleans()):
                    key = draw(st.sampled_from(sorted(job)))
                    if draw(st.booleans()):
                        del job[key]
                        case.note(f"meta: job.{key} removed")
                    else:
                        job[key] = draw(VALUES)
                        case.note(f"meta: job.{key} = {job[key]!r}"[:200])
                else:
                    meta["job"] = draw(VALUES)
                    case.note(f"meta: job = {meta['job']!r}"[:200])
                if draw(st.integers(0, 6)) == 0:
                    meta = draw(VALUES)
                    case.note(f"meta replaced by {meta!r}"[:200])
            else:
                names = sorted(tensors)
                name = draw(st.sampled_from(names))
                how = draw(st.sampled_from(["drop", "rename", "reshape", "dtype", "extra",
                                            "empty", "scalar", "nan"]))
                t = tensors.pop(name)
                if how == "rename":
                    tensors[name + "_x"] = t
                elif how == "reshape":
                    tensors[name] = t.reshape(-1) if t.dim() != 1 else t.reshape(1, -1)
                    if draw(st.booleans()):
                        tensors[name] = torch.cat([tensors[name].reshape(-1),
                                                   tensors[name].reshape(-1)[:1]])
                elif how == "dtype":
                    tensors[name] = t.to(draw(st.sampled_from(
                        [torch.float16, torch.int64, torch.bool, torch.float64, torch.uint8])))
                elif how == "extra":
                    tensors[name] = t
                    tensors[draw(st.sampled_from(["x", "agent/9/x", "terminal/99/param/w",
                                                  "clients/7/x", "/", "a/b/c"]))] = \
                        torch.zeros(2)
                elif how == "empty":
                    tensors[name] = t.reshape(-1)[:0]
                elif how == "scalar":
                    tensors[name] = torch.tensor(1.0)
                elif how == "nan":
                    tensors[name] = torch.full_like(t, math.nan) if t.is_floating_point() \
                        else t
                case.note(f"tensor {name}: {how}")
            _save(ckpt, tensors, meta)


@collecting
@fuzz_settings(quick=8, deep=300)
@given(data=st.data())
def test_resume(data: st.DataObject, fuzz_root: Path, finished_runs: dict[str, Path]) -> None:
    mode = data.draw(st.sampled_from(sorted(finished_runs)), label="mode")
    with new_case(fuzz_root) as case:
        shutil.copytree(finished_runs[mode], case.out)
        case.note(f"out/ is a copy of a finished tiny {mode} run (tests/fuzz/strategies.BASE)")
        data.draw(damage(case, case.out, mode), label="damage")
        run_cli(case, ["resume", "out", *data.draw(st.sampled_from([[], ["--json"]]))])


TRUTH = {"agents": ["0", "1", "M0", "M1"], "groups": [["0", "1"]], "loners": ["M0"],
         "noise": ["M1"]}


@collecting
@fuzz_settings(quick=6, deep=150)
@given(data=st.data())
def test_score(data: st.DataObject, fuzz_root: Path, finished_runs: dict[str, Path]) -> None:
    truth: Any = dict(TRUTH)
    for _ in range(data.draw(st.integers(0, 3), label="changes")):
        key = data.draw(st.sampled_from(["agents", "groups", "loners", "noise", "x"]),
                              label="key")
        truth[key] = data.draw(st.sampled_from([[], [["0"]], [["0", "0"]], [["zz"]], ["0"],
                                                [[1, 2]], None, "0"]) | VALUES, label=key)
    if data.draw(st.integers(0, 8), label="not a mapping") == 0:
        truth = data.draw(VALUES, label="truth")
    with new_case(fuzz_root) as case:
        shutil.copytree(finished_runs["osml"], case.root / "run")
        case.note("run/ is a copy of a finished tiny osml run")
        raw = json.dumps(truth).encode()
        how = data.draw(st.sampled_from(["json"] * 5 + ["truncate", "binary", "missing",
                                                        "summary", "no summary"]), label="how")
        if how == "truncate":
            raw = raw[:len(raw) // 2]
        elif how == "binary":
            raw = data.draw(st.binary(max_size=20), label="truth bytes")
        elif how == "summary":
            summary = json.loads((case.root / "run" / "summary.json").read_text())
            key = data.draw(st.sampled_from(sorted(summary)), label="summary key")
            summary[key] = data.draw(VALUES, label="summary value")
            (case.root / "run" / "summary.json").write_text(json.dumps(summary))
            case.note(f"run/summary.json: {key} = {summary[key]!r}"[:200])
        elif how == "no summary":
            (case.root / "run" / "summary.json").unlink()
            case.note("run/summary.json removed")
        if how != "missing":
            case.write("truth.json", raw)
        run_cli(case, ["osml", "score", "run", "--truth", "truth.json",
                       *data.draw(st.sampled_from([[], ["--json"]]), label="json")])
