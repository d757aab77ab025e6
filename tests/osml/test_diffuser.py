"""The diffuser: which context each agent is sent, before and after sub-contexts form."""
from __future__ import annotations

import pytest
import torch

from osmotic.osml.diffuser import Diffuser
from osmotic.runtime.strategies import make_strategy

# Four agents, two steps, d = 2: agents 0 and 1 form a sub-context, 2 and 3 are left over.
E = torch.tensor([
    [[1.0, 0.0], [0.0, 1.0]],
    [[3.0, 0.0], [0.0, 3.0]],
    [[0.0, 2.0], [2.0, 0.0]],
    [[0.0, 4.0], [4.0, 0.0]],
])


def _diffuser(unclustered: str, groups: list[list[int]]) -> Diffuser:
    d = Diffuser(4, make_strategy("mean"), unclustered=unclustered)
    d.groups = groups
    return d


def test_one_context_for_all_until_the_first_clustering() -> None:
    C = Diffuser(4, make_strategy("mean")).contexts(E)
    assert torch.equal(C, E.mean(0, keepdim=True).expand_as(E))


@pytest.mark.parametrize(
    ("unclustered", "loose_context"),
    [
        ("global", E.mean(0)),  # the context of all four agents
        ("rest", E[2:].mean(0)),  # the context of the agents in no sub-context
        ("self", None),  # each its own embedding: preservation only
        ("nearest", E[:2].mean(0)),  # the only sub-context's context
    ],
)
def test_agents_in_no_sub_context(unclustered: str, loose_context: torch.Tensor | None) -> None:
    C = _diffuser(unclustered, [[0, 1]]).contexts(E)
    assert torch.equal(C[0], E[:2].mean(0)) and torch.equal(C[1], E[:2].mean(0))
    for i in (2, 3):
        assert torch.equal(C[i], E[i] if loose_context is None else loose_context)


def test_rest_with_a_single_loose_agent_is_its_own_embedding() -> None:
    C = _diffuser("rest", [[0, 1, 2]]).contexts(E)
    assert torch.equal(C[3], E[3])


def test_unknown_unclustered_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="unclustered must be global, rest, self or nearest"):
        Diffuser(4, make_strategy("mean"), unclustered="everyone")


def test_cluster_groups_agents_whose_current_embeddings_agree() -> None:
    """Agents 0 and 1 share a random trajectory, 2 and 3 another; 4 is noise."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 5, generator=g), torch.randn(200, 5, generator=g)
    E = torch.stack([a, a + 0.01 * torch.randn(200, 5, generator=g), b, b.clone(),
                     torch.randn(200, 5, generator=g)])
    d = Diffuser(5, make_strategy("mean"), samples=50, min_rank=0.75)
    record = d.cluster(2, E)
    assert d.groups == record.groups == [[0, 1], [2, 3]]
    assert record.epoch == 2 and d.clustered == {0, 1, 2, 3}
    assert d.history == [record]
