"""Sub-contexts against a scenario's truth: ARI on hand-computed cases, `osml generate scenario`
and `osml score` end to end."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from osmotic.cli import main
from osmotic.data.timeseries import read_csv
from osmotic.osml.metrics import against_truth

# Groups {a, b, c} and {d, e}; f a loner, g a noise agent.
TRUTH = {"groups": [["a", "b", "c"], ["d", "e"]], "loners": ["f"], "noise": ["g"],
         "agents": {a: {} for a in "abcdefg"}}
AGENTS = list("abcdefg")


@pytest.mark.parametrize(("found", "ari", "exact", "intruders"), [
    # Perfect.
    ([["a", "b", "c"], ["d", "e"]], 1.0, True, []),
    # c missed. Pairs together: truth 3 + 1 = 4, found 1 + 1 = 2, both 2; of 21 pairs:
    # (2 - 4·2/21) / ((4 + 2)/2 - 4·2/21) = 34/55.
    ([["a", "b"], ["d", "e"]], 34 / 55, False, []),
    # Nothing found: no pair together, the index is 0 and so is its expectation.
    ([], 0.0, False, []),
    # The noise agent joins {d, e}: together 3 + 1 = 4, found 3 + 3 = 6:
    # (4 - 4·6/21) / (5 - 4·6/21) = 20/27.
    ([["a", "b", "c"], ["d", "e", "g"]], 20 / 27, False, ["g"]),
])
def test_adjusted_rand_index_by_hand(found: list[list[str]], ari: float, exact: bool,
                                     intruders: list[str]) -> None:
    scores = against_truth(found, AGENTS, TRUTH)
    assert scores["ari"] == pytest.approx(ari)
    assert scores["exact"] is exact and scores["intruders"] == intruders


def test_a_run_on_some_agents_is_scored_on_those() -> None:
    scores = against_truth([["a", "b"]], ["a", "b", "d", "f"], TRUTH)
    assert scores["expected"] == [["a", "b"]] and scores["exact"] and scores["ari"] == 1.0


def test_unknown_agent() -> None:
    with pytest.raises(ValueError, match="agent 'z' is not in the truth file"):
        against_truth([], ["a", "z"], TRUTH)


def test_generate_scenario_then_score_a_run(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    out = tmp_path / "sc"
    assert main(["osml", "generate", "scenario", "--groups", "3,2", "--loners", "1",
                 "--noise", "2", "--seed", "3", "--out", str(out)]) == 0
    truth = json.loads((out / "truth.json").read_text())
    train, test = read_csv(out / "train_data.csv"), read_csv(out / "test_data.csv")
    assert sorted(map(len, truth["groups"])) == [2, 3] and len(truth["noise"]) == 2
    assert list(train) == list(test) == [str(i) for i in range(8)]
    assert "wrote" in capsys.readouterr().out
    # A run directory that found the larger group and half of the pair, with a noise agent.
    big, pair = sorted(truth["groups"], key=len, reverse=True)
    run = tmp_path / "run"
    run.mkdir()
    summary = {"agents": list(train), "train_seconds": 1.5,
               "subcontexts": [{"agents": big}, {"agents": [pair[0], truth["noise"][0]]}]}
    (run / "summary.json").write_text(json.dumps(summary))
    assert main(["osml", "score", str(run), "--truth", str(out / "truth.json"), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["exact"] is False and scores["intruders"] == [truth["noise"][0]]
    assert 0 < scores["ari"] < 1 and scores["train_seconds"] == 1.5
    assert main(["osml", "score", str(run), "--truth", str(out / "truth.json")]) == 0
    printed = capsys.readouterr().out
    assert "ARI" in printed and "exact no" in printed and truth["noise"][0] in printed


def test_score_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["osml", "score", str(tmp_path), "--truth", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "summary.json: cannot read" in err[0]
    assert main(["osml", "generate", "scenario", "--groups", "3,1", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "at least two agents" in err[0]
    assert not (tmp_path / "x").exists()


def test_scenario_options_belong_to_scenarios(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    assert main(["osml", "generate", "complex", "--noise", "3", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--noise is for `generate scenario`, not complex" in err[0]
    assert main(["osml", "generate", "scenario", "--out", str(tmp_path / "s")]) == 0
    truth = json.loads((tmp_path / "s" / "truth.json").read_text())
    assert truth["spec"] == {"groups": [3, 2], "loners": 1, "noise": 2}
