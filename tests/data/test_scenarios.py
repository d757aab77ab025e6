"""Scenario generator: the truth matches how the data were made, and every draw is seeded."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from osmotic.data.scenarios import MAX_LAG, SUITE, generate_scenario, suite_spec

GROUPS, LONERS, NOISE = [3, 2], 1, 2


@pytest.fixture(scope="module")
def scenario() -> tuple[dict, dict, dict]:
    return generate_scenario(GROUPS, LONERS, NOISE, seed=4)


def _dependence(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |Spearman ρ| between any features of two agents over relative lags of up to
    2·MAX_LAG steps: every transform is monotone, so shared latents show up as rank
    correlation once their lags are lined up."""
    best = 0.0
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            for lag in range(-2 * MAX_LAG, 2 * MAX_LAG + 1):
                x, y = (a[lag:, i], b[: len(b) - lag, j]) if lag >= 0 else (a[:lag, i], b[-lag:, j])
                best = max(best, abs(spearmanr(x, y).statistic))
    return best


def test_truth_lists_every_agent_once_with_its_role(scenario: tuple[dict, dict, dict]) -> None:
    train, test, truth = scenario
    ids = list(train)
    assert ids == [str(i) for i in range(sum(GROUPS) + LONERS + NOISE)] == list(test)
    assert sorted(len(g) for g in truth["groups"]) == sorted(GROUPS)
    assert len(truth["loners"]) == LONERS and len(truth["noise"]) == NOISE
    listed = [a for g in truth["groups"] for a in g] + truth["loners"] + truth["noise"]
    assert sorted(listed, key=int) == ids
    for a, info in truth["agents"].items():
        assert train[a].shape == (900, len(info["features"]))
        assert test[a].shape == (200, len(info["features"]))
        role = ("noise" if a in truth["noise"] else "loner" if a in truth["loners"] else "group")
        assert info["role"] == role
    latents = [{truth["agents"][a]["latent"] for a in g} for g in truth["groups"]]
    assert all(len(s) == 1 for s in latents) and len({s.pop() for s in latents}) == len(GROUPS)
    assert truth["spec"] == {"groups": GROUPS, "loners": LONERS, "noise": NOISE}


def test_data_follow_the_truth(scenario: tuple[dict, dict, dict]) -> None:
    """Agents of a group depend on each other strongly; noise agents on nobody; a loner on
    no group member more than group members on each other."""
    train, _, truth = scenario
    whole = {a: x.astype(np.float64) for a, x in train.items()}
    within = [_dependence(whole[a], whole[b]) for g in truth["groups"]
              for k, a in enumerate(g) for b in g[k + 1:]]
    assert min(within) > 0.5, within
    members = [a for g in truth["groups"] for a in g]
    for n in truth["noise"]:
        assert max(_dependence(whole[n], whole[b]) for b in members + truth["loners"]) < 0.15
    for lone in truth["loners"]:
        assert max(_dependence(whole[lone], whole[b]) for b in members) < min(within)


def test_seeded(scenario: tuple[dict, dict, dict]) -> None:
    train, test, truth = scenario
    again_train, again_test, again_truth = generate_scenario(GROUPS, LONERS, NOISE, seed=4)
    assert again_truth == truth
    for a in train:
        np.testing.assert_array_equal(train[a], again_train[a])
        np.testing.assert_array_equal(test[a], again_test[a])
    other_train, _, other_truth = generate_scenario(GROUPS, LONERS, NOISE, seed=5)
    assert other_truth["agents"] != truth["agents"]
    assert not np.allclose(other_train["0"][:, 0], train["0"][:, 0])


def test_test_split_is_a_fresh_run_through_the_same_transforms(
        scenario: tuple[dict, dict, dict]) -> None:
    train, test, truth = scenario
    for a in truth["groups"][0]:
        assert not np.isin(test[a], train[a]).any()
        assert test[a].shape[1] == train[a].shape[1]


@pytest.mark.parametrize(("groups", "loners", "noise", "message"), [
    ([3, 1], 0, 0, "every group needs at least two agents"),
    ([], 0, 0, "at least one agent"),
    ([2], -1, 0, "loners and noise must be >= 0"),
])
def test_bad_specs(groups: list[int], loners: int, noise: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_scenario(groups, loners, noise, seed=0)


def test_suite_specs_stay_in_their_ranges_and_are_fixed() -> None:
    specs = [suite_spec(i) for i in range(30)]
    assert specs == [suite_spec(i) for i in range(30)]
    for s in specs:
        assert SUITE["groups"][0] <= len(s["groups"]) <= SUITE["groups"][1]
        assert all(SUITE["group_size"][0] <= g <= SUITE["group_size"][1] for g in s["groups"])
        assert SUITE["loners"][0] <= s["loners"] <= SUITE["loners"][1]
        assert SUITE["noise"][0] <= s["noise"] <= SUITE["noise"][1]
    assert len({(tuple(s["groups"]), s["loners"], s["noise"]) for s in specs}) > 20
