"""The way in and the way out of sub-contexts, on constructed embeddings.

A latent process of the scenario generator, seen through fixed random features of 10-step
windows, stands in for trained embeddings: agents 0 and 1 embed it (a sub-context), agent 2
embeds it through a rotation (the same information, unaligned), agent 3 embeds noise and
agent 4 a latent process of its own (a loner)."""
from __future__ import annotations

import json

import numpy as np
import torch

from osmotic.data.scenarios import latent_process
from osmotic.osml.clustering import cluster, membership_changes
from osmotic.osml.diffuser import Diffuser
from osmotic.osml.metrics import mapped_ranks
from osmotic.runtime.strategies import make_strategy

T, D = 600, 5


def _embedded_latent(seed: int, features: int) -> torch.Tensor:
    """[T, D] embeddings of a latent process: tanh of random features of 10-step windows."""
    latent = latent_process(np.random.default_rng(seed), T + 9)
    windows = torch.tensor(np.lib.stride_tricks.sliding_window_view(latent, 10).copy()).float()
    return torch.tanh(windows @ torch.randn(10, D, generator=torch.Generator().manual_seed(features)))


def _rotation(seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(seed)))
    return q


def _noise(seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(T, D, generator=torch.Generator().manual_seed(seed))


LATENT = _embedded_latent(0, features=0)
E = torch.stack([LATENT + _noise(1, 0.02), LATENT + _noise(2, 0.02), LATENT @ _rotation(3),
                 _noise(4), _embedded_latent(101, features=2)])


def _diffuser(threshold: float = 0.5) -> Diffuser:
    return Diffuser(5, make_strategy("mean"), threshold=threshold, min_rank=0.75, stay_rank=0.7,
                    join_score=0.7, samples=50)


def test_mapped_ranks_need_no_alignment() -> None:
    """A rotation of the same embeddings maps back perfectly; noise, a trajectory of its own
    and a collapsed agent are at chance."""
    collapsed = torch.ones(1, T, D)
    m = mapped_ranks(torch.cat([E, collapsed]), torch.cat([E, collapsed]))
    assert m[0, 2] > 0.95 and m[1, 2] > 0.95
    for i, j in [(0, 3), (2, 3), (0, 4), (2, 4), (3, 4)]:
        assert 0.4 < m[i, j] < 0.6, (i, j, float(m[i, j]))
    assert torch.all(m[5, :5] == 0.5)  # a constant ties with every step
    # Other random features of the same latent (a different, nonlinear view) map well too.
    other_view = mapped_ranks(LATENT[None], _embedded_latent(0, features=1)[None])
    assert other_view > 0.8


def test_a_rotated_agent_goes_on_probation_then_joins() -> None:
    d = _diffuser()
    first = d.cluster(2, E)
    assert first.groups == [[0, 1]]  # the rotation is unaligned: it fails the gate
    assert d.trial == {2: [0, 1]}  # ... but maps onto the sub-context: probation
    assert [(c["agent"], c["change"]) for c in first.changes] == [
        (0, "join"), (1, "join"), (2, "probation")]
    # During probation it is sent the sub-context's context and does not shape it.
    C = d.contexts(E)
    assert torch.allclose(C[2], E[[0, 1]].mean(0)) and torch.allclose(C[0], E[[0, 1]].mean(0))
    # It aligns (as training would make it), and the next clustering lets it in.
    aligned = E.clone()
    aligned[2] = LATENT + _noise(6, 0.02)
    second = d.cluster(4, aligned)
    assert second.groups == [[0, 1, 2]] and d.trial == {}
    assert second.changes == [{"agent": 2, "change": "join", "subcontext": [0, 1, 2],
                               "from": None, "probation": True}]


def test_noise_and_a_loner_are_never_put_on_probation() -> None:
    d = _diffuser()
    for epoch in range(2, 12, 2):
        record = d.cluster(epoch, E)
        assert 3 not in d.trial and 4 not in d.trial
        assert all(c["agent"] not in (3, 4) for c in record.changes)
    assert d.groups == [[0, 1]]


def test_a_failed_probation_is_recorded_and_the_agent_stays_out() -> None:
    d = _diffuser()
    d.cluster(2, E)
    assert d.trial == {2: [0, 1]}
    record = d.cluster(4, E)  # it did not align: still a rotation
    assert record.groups == [[0, 1]]
    assert {"agent": 2, "change": "rejected", "subcontext": [0, 1]} in record.changes


def test_an_agent_whose_agreement_decays_leaves() -> None:
    """Agent 2 starts aligned; its embedding turns into noise step by step. It stays while its
    rank with the others is above the stay gate (lower than the gate to get in), then leaves.
    (θ is low here so that the rank gate decides, not the mean |sim| of average linkage.)"""
    d = _diffuser(threshold=0.2)
    left_at, ranks = None, []
    for k, share in enumerate([0.0, 0.4, 0.8, 1.2, 1.6, 2.4, 4.0]):
        X = E.clone()
        X[2] = LATENT + _noise(7, share)
        record = d.cluster(2 * (k + 1), X)
        ranks.append(float(min(record.ranks[0, 2], record.ranks[1, 2])))
        if 2 not in d.clustered:
            left_at = k
            assert {"agent": 2, "change": "leave", "subcontext": [0, 1, 2], "to": None} in record.changes
            break
    assert left_at is not None and left_at >= 2, ranks
    assert ranks[-1] < 0.7 <= min(ranks[1:-1])


def test_the_stay_gate_is_lower_than_the_gate_to_get_in() -> None:
    """A pair at rank about 0.72: kept together if already together, not formed otherwise."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, D, generator=g)
    X = torch.stack([a, a + 2.5 * torch.randn(50, D, generator=g)])
    groups, _, ranks = cluster(X, 0.1, 2.0, 0.75)
    assert 0.7 <= ranks[0, 1] < 0.75 and groups == []
    assert cluster(X, 0.1, 2.0, 0.75, members=[[0, 1]], stay_rank=0.7)[0] == [[0, 1]]


def test_a_group_found_as_two_halves_merges() -> None:
    """{0, 1} and {2, 3} embed one trajectory in two rotations: the smaller (later) half is put
    on probation with the other, and merges once aligned."""
    R = LATENT @ _rotation(3)
    X = torch.stack([LATENT, LATENT + _noise(1, 0.02), R, R + _noise(2, 0.02), _noise(4)])
    d = _diffuser()
    d.cluster(2, X)
    assert d.groups == [[0, 1], [2, 3]] and d.trial == {2: [0, 1], 3: [0, 1]}
    X[2:4] = torch.stack([LATENT + _noise(5, 0.02), LATENT + _noise(6, 0.02)])
    record = d.cluster(4, X)
    assert d.groups == [[0, 1, 2, 3]]
    assert [(c["agent"], c["change"], c["from"]) for c in record.changes] == [
        (2, "join", [2, 3]), (3, "join", [2, 3])]


def test_loose_agents_that_map_onto_each_other_form_a_tentative_sub_context() -> None:
    X = torch.stack([LATENT, LATENT @ _rotation(3), _noise(4)])
    d = Diffuser(3, make_strategy("mean"), threshold=0.9, min_rank=0.75, join_score=0.7)
    d.cluster(2, X)
    assert d.groups == [] and d.trial == {0: [0, 1], 1: [0, 1]}
    assert torch.allclose(d.contexts(X)[0], X[[0, 1]].mean(0))


def test_membership_changes_of_a_split_and_a_move() -> None:
    old, new = [[0, 1, 2, 3], [4, 5]], [[0, 1, 2], [3, 4, 5]]
    assert membership_changes(old, new) == [
        {"agent": 3, "change": "join", "subcontext": [3, 4, 5], "from": [0, 1, 2, 3],
         "probation": False},
        {"agent": 3, "change": "leave", "subcontext": [0, 1, 2, 3], "to": [3, 4, 5]},
    ]
    assert membership_changes(new, new) == []


def test_without_join_score_nobody_goes_on_probation() -> None:
    d = Diffuser(5, make_strategy("mean"), threshold=0.9, min_rank=0.75, join_score=None)
    record = d.cluster(2, E)
    assert d.trial == {} and all(c["change"] == "join" for c in record.changes)


def test_the_sub_contexts_plot_marks_membership_changes(tmp_path) -> None:
    from PIL import Image

    from osmotic.osml.plots import subcontext_membership

    ids, epochs = ["0", "1", "2"], [1, 2, 3, 4]
    groups = [[], [["0", "1"]], [["0", "1"]], [["0", "1", "2"]]]
    changes = [{"epoch": 2, "agent": "0", "change": "join"}, {"epoch": 2, "agent": "1", "change": "join"},
               {"epoch": 2, "agent": "2", "change": "probation"},
               {"epoch": 4, "agent": "2", "change": "join"}]
    plain = subcontext_membership(tmp_path / "plain.png", epochs, groups, ids)
    marked = subcontext_membership(tmp_path / "marked.png", epochs, groups, ids, changes)
    a, b = (np.asarray(Image.open(p).convert("L"), dtype=float) for p in (plain, marked))
    assert a.shape == b.shape and (a != b).sum() > 100


def test_probations_and_changes_survive_a_checkpoint() -> None:
    d = _diffuser()
    d.cluster(2, E)
    tensors, rest = d.state()
    again = _diffuser()
    again.load_state(tensors, json.loads(json.dumps(rest)))  # the checkpoint's JSON round trip
    assert again.trial == d.trial == {2: [0, 1]}
    assert again.history[0].changes == d.history[0].changes
    assert torch.equal(again.contexts(E), d.contexts(E))


def test_too_few_steps_for_a_map_means_no_probation() -> None:
    d = _diffuser()
    record = d.cluster(2, E[:, :20])  # 20 < 4·(5 + 2)
    assert d.trial == {} and all(c["change"] != "probation" for c in record.changes)
