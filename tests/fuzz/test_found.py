"""Cases the fuzzer found, kept as examples: each runs through the same property check
(harness.run_cli), so a fixed defect stays fixed."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.fuzz.harness import new_case, run_cli
from tests.fuzz.test_fuzz_data import bomb_png

OSML = ("mode: osml\nepochs: 1\nhidden: 4\ndim: 3\nbatch_size: 20\ncluster_every: 1\n"
        "cluster_samples: 20\nthreads: 1\ndata: {generated: simple, seed: 0}\n")
HOLONIC = ("mode: holonic\nstructure: 1P\ndata: digits\nrounds: 1\nlocal_epochs: 1\n"
           "pool_size: 120\nthreads: 1\n")
HUGE = "18446744073709551616"  # 2**64
TRUTH = '{"agents": ["0", "1", "M0", "M1"], "groups": [["0", "1"]], "loners": ["M0"], ' \
        '"noise": ["M1"]}'
RUN = ["run", "c.yaml", "--out", "out"]
SCORE = ["osml", "score", "run", "--truth", "truth.json"]

CASES: dict[str, tuple[dict[str, str | bytes], list[str]]] = {
    "argparse-missing-argument": ({}, ["run"]),
    "argparse-bad-int": ({}, ["holonic", "run", "--rounds", "x", "--out", "out"]),
    "argparse-bad-command": ({}, ["nonsense"]),
    "score-truth-null": ({"truth.json": "null"}, SCORE),
    "score-truth-nested-loners": ({"truth.json": TRUTH.replace('["M0"]', "[[]]")}, SCORE),
    "score-truth-no-agents": ({"truth.json": TRUTH.replace('"agents": ["0", "1", "M0", "M1"], ',
                                                           "")}, SCORE),
    "osml-data-train-null": ({"c.yaml": "mode: osml\ndata: {train: null, test: null}\n"}, RUN),
    "osml-data-train-int": ({"c.yaml": "mode: osml\ndata: {train: 1, test: 2}\n"}, RUN),
    "osml-data-seed-null": ({"c.yaml": OSML.replace("seed: 0", "seed: null")}, RUN),
    "osml-window-2**63": ({"c.yaml": OSML + "window: 9223372036854775808\n"}, RUN),
    "osml-dim-2**64": ({"c.yaml": OSML.replace("dim: 3", f"dim: {HUGE}")}, RUN),
    "holonic-batch-size-2**64": ({"c.yaml": HOLONIC + f"batch_size: {HUGE}\n"}, RUN),
    "control-character-in-key": ({"c.yaml": HOLONIC + '"a\\rb": 1\n'}, RUN),
    "csv-unbalanced-quote": ({"d.csv": 'f0,"label\n' + "".join(f"{i},{i % 2}\n"
                                                              for i in range(40)),
                              "c.yaml": HOLONIC.replace("data: digits",
                                                        "data: {format: csv, path: d.csv}")},
                             RUN),
    "series-header-unbalanced-quote": (
        {"a.csv": 'Agent0[0],"Agent0[1]\n' + "".join(f"{i},{i}\n" for i in range(40)),
         "b.csv": "Agent0[0],Agent0[1]\n1,2\n", "c.yaml": "epochs: 1\nthreads: 1\n"},
        ["osml", "run", "--train", "a.csv", "--test", "b.csv", "--config", "c.yaml", "--out",
         "out"]),
    "alias-bomb-value": ({"c.yaml": "mode: osml\nepochs: 1\na0: &a0 [1, 2, 3, 4, 5, 6, 7, 8]\n"
                                    "a1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]\n"
                                    "a2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]\n"
                                    "data: *a2\n"}, RUN),
    "png-decompression-bomb": ({"images/a/x.png": bomb_png(100_000, 100_000),
                                "c.yaml": HOLONIC.replace(
                                    "data: digits", "data: {format: images, path: images}")},
                               RUN),
    "deep-yaml-settings": ({"c.yaml": "mode: osml\nx: " + "[" * 1000 + "]" * 1000 + "\n"}, RUN),
    "deep-holarchy": ({"h.yaml": "holarchy: " + "".join(f"{{id: h{i}, members: ["
                                                        for i in range(400))
                       + "t, u" + "]}" * 400 + "\n"},
                      ["holonic", "draw", "h.yaml", "--out", "out/h.png"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_found(name: str, tmp_path: Path, finished_runs: dict[str, Path]) -> None:
    files, argv = CASES[name]
    with new_case(tmp_path) as case:
        for path, content in files.items():
            case.write(path, content)
        if argv[:2] == ["osml", "score"]:
            shutil.copytree(finished_runs["osml"], case.root / "run")
        run_cli(case, argv)


@pytest.mark.parametrize("rows", [[{}], [1]], ids=["empty-row", "not-a-row"])
@pytest.mark.parametrize("mode", ["osml", "holonic", "dssl"])
def test_resume_with_bad_metric_rows(mode: str, rows: list, tmp_path: Path,
                                     finished_runs: dict[str, Path]) -> None:
    """A checkpoint whose JSON metadata holds metric rows that are not rows."""
    from tests.fuzz.test_fuzz_checkpoints import _read, _save

    with new_case(tmp_path) as case:
        shutil.copytree(finished_runs[mode], case.out)
        (case.out / "summary.json").unlink()
        tensors, meta = _read(case.out / "checkpoint.safetensors")
        meta["metrics"] = rows
        _save(case.out / "checkpoint.safetensors", tensors, meta)
        case.note(f"out/: finished tiny {mode} run, summary.json removed, meta metrics={rows}")
        run_cli(case, ["resume", "out"])
