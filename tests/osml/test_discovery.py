"""Discovery in large populations (osml.discovery): candidate pairs give the exact path's
sub-contexts, calibrated gates leave small populations as they were, bad index settings are
one line.

Embeddings are constructed, not trained: each group of a suite scenario embeds one latent
process of the scenario generator through fixed random features (with a little noise per
agent), a loner its own latent process, a noise agent noise; one member of each group of three
or more sees the latent through a rotation (the same information, unaligned), so probations
are exercised too."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from osmotic.cli import main
from osmotic.data.scenarios import latent_process, suite_spec
from osmotic.osml.clustering import average_linkage
from osmotic.osml.diffuser import Diffuser
from osmotic.osml.discovery import calibrated_gate, sparse_average_linkage
from osmotic.runtime.strategies import make_strategy

T, D = 400, 5


def _latent(seed: int) -> torch.Tensor:
    x = latent_process(np.random.default_rng(seed), T + 9)
    windows = torch.tensor(np.lib.stride_tricks.sliding_window_view(x, 10).copy()).float()
    return torch.tanh(windows @ torch.randn(10, D, generator=torch.Generator().manual_seed(seed)))


def _scenario(index: int) -> torch.Tensor:
    spec = suite_spec(index)
    g = torch.Generator().manual_seed(index)
    rows = []
    for k, size in enumerate(spec["groups"]):
        latent = _latent(100 * index + k)
        rows += [latent + 0.03 * torch.randn(T, D, generator=g) for _ in range(size - (size > 2))]
        if size > 2:
            q, _ = torch.linalg.qr(torch.randn(D, D, generator=g))
            rows.append(latent @ q)
    rows += [_latent(100 * index + 50 + k) for k in range(spec["loners"])]
    rows += [torch.randn(T, D, generator=g) for _ in range(spec["noise"])]
    return torch.stack(rows)


def _diffuser(n: int, **kwargs: object) -> Diffuser:
    return Diffuser(n, make_strategy("mean"), unclustered="rest", threshold=0.95, min_rank=0.75,
                    stay_rank=0.65, join_score=0.7, samples=50, **kwargs)


def _decisions(d: Diffuser, E: torch.Tensor) -> list[tuple[list[list[int]], dict[int, list[int]]]]:
    out = []
    for epoch in (2, 4):
        d.cluster(epoch, E)
        out.append((d.groups, dict(d.trial)))
    return out


@pytest.mark.parametrize("index", [20, 22, 25])
def test_candidate_pairs_give_the_exact_sub_contexts_and_probations(index: int) -> None:
    E = _scenario(index)
    exact = _decisions(_diffuser(len(E)), E)
    pruned = _diffuser(len(E), candidates_above=2, neighbours=6)
    assert pruned.candidates
    assert _decisions(pruned, E) == exact
    assert exact[0][0]  # something was found
    record = pruned.history[-1]
    assert record.pairs is not None and record.scores.shape == (len(record.pairs),)


def test_candidate_history_is_pair_lists_in_records_and_checkpoints() -> None:
    E = _scenario(20)
    d = _diffuser(len(E), candidates_above=2, neighbours=4)
    d.cluster(2, E)
    ids = [f"a{i}" for i in range(len(E))]
    record = d.history[0].as_record(ids)
    assert len(record["pairs"]) == len(record["scores"]) == len(record["ranks"]) < len(E) ** 2 / 2
    again = _diffuser(len(E), candidates_above=2, neighbours=4)
    again.load_state(*d.state())
    assert np.array_equal(again.history[0].pairs, d.history[0].pairs)
    assert again.history[0].as_record(ids) == record


def test_calibrated_gates_leave_a_small_population_as_it_was() -> None:
    """Calibrating at 17 agents (forced) gives the fixed gates, so the same decisions."""
    E = _scenario(22)
    fixed = _decisions(_diffuser(len(E)), E)
    calibrated = _diffuser(len(E), null_alpha=0.05, null_above=1, null_samples=1000)
    assert _decisions(calibrated, E) == fixed
    gates = calibrated.history[-1].gates
    assert gates["rank"] == 0.75 and all(v == 0.7 for k, v in gates.items() if k != "rank")


def test_the_gate_rises_with_the_pairs_tested() -> None:
    null = np.random.default_rng(0).normal(0.5, 0.04, 20000)
    assert calibrated_gate(null, 0.6, 10, 0.05) == pytest.approx(0.6 + 0.003, abs=0.01)
    many = calibrated_gate(null, 0.6, 10**6, 0.05)
    assert many == pytest.approx(0.5 + 0.04 * norm.isf(0.05 / 10**6), abs=0.01) and many > 0.7
    assert calibrated_gate(null, 0.9, 10**6, 0.05) == 0.9  # never below the fixed gate


def test_sparse_linkage_equals_dense_linkage() -> None:
    rng = np.random.default_rng(1)
    n = 30
    s = rng.uniform(0.3, 0.8, (n, n))
    for block in ([0, 4, 9], [2, 3], [10, 11, 12, 13], [20, 29]):
        s[np.ix_(block, block)] = rng.uniform(0.9, 1.0, (len(block), len(block)))
    s = (s + s.T) / 2
    i, j = np.triu_indices(n, 1)
    for threshold in (0.85, 0.95):
        assert sparse_average_linkage(n, np.stack([i, j], 1), s[i, j], threshold, missing=0.5) \
            == average_linkage(s, threshold)


@pytest.mark.parametrize("option", [["--neighbours", "0"], ["--neighbours", "5000"],
                                    ["--candidates-above", "1"]])
def test_an_unreachable_index_setting_is_one_line(option: list[str], tmp_path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["osml", "run", "--train", str(tmp_path / "t.csv"), "--test",
                 str(tmp_path / "t.csv"), "--out", str(tmp_path / "r"), *option])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err, err
    assert option[0].removeprefix("--").replace("-", "_") in err
