"""SimSiam's stop-gradient, MAE's masking and loss, MMD, γ: each against a hand computation."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from osmotic.dssl.objectives import (
    MAE,
    MAR,
    VISIBLE,
    SimSiamNet,
    gamma_at,
    mask_orders,
    masked_mse,
    mmd2,
)
from osmotic.models.vit import TOKENS, TinyViT
from osmotic.runtime.population import Population


def test_simsiam_no_gradient_through_the_target_branch() -> None:
    """The gradient reaching z₁ is exactly that of −½cos(pred(z₁), z₂): nothing comes back
    through z₁'s use as the target of p₂."""
    torch.manual_seed(0)
    net = SimSiamNet(TinyViT(width=16, depth=1, heads=2, mlp=16))
    v1, v2 = torch.randn(2, 6, 1, 28, 28)
    seen: list[torch.Tensor] = []
    grads: list[torch.Tensor] = []

    def capture(module: torch.nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        seen.append(out.detach())
        out.register_hook(grads.append)

    net.projector.register_forward_hook(capture)
    net(v1, v2).mean().backward()
    z1, z2 = seen
    grad_z1 = grads[-1]  # hooks fire in reverse order of use: z₁'s last
    leaf = z1.clone().requires_grad_(True)
    expected = torch.autograd.grad(
        (-0.5 * F.cosine_similarity(net.predictor(leaf), z2, dim=-1)).mean(), leaf)[0]
    torch.testing.assert_close(grad_z1, expected)


def test_exactly_75_percent_masked_different_per_image_and_client() -> None:
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    order = mask_orders(gens, 32)  # [clients, batch, 16]
    assert order.shape == (2, 32, TOKENS)
    assert torch.equal(order.sort(-1).values, torch.arange(TOKENS).expand(2, 32, -1))
    visible = order[..., :VISIBLE].sort(-1).values
    assert TOKENS - VISIBLE == 12 and VISIBLE == 4  # 75 % of 16 patches masked
    assert len({tuple(v.tolist()) for v in visible[0]}) > 20  # images differ
    assert not torch.equal(visible[0], visible[1])  # clients differ


def test_mae_objective_masks_through_each_clients_generator() -> None:
    pop = Population(MAE().build(lambda: TinyViT(width=16, depth=1, heads=2, mlp=16)),
                     ["a", "b"], seed=0)
    x = torch.randn(2, 4, 1, 28, 28)
    loss = MAE().loss(pop, x, torch.zeros(2, 4), torch.ones(2, 4), torch.arange(2))
    assert loss.shape == (2,) and torch.isfinite(loss).all()


def test_mae_loss_counts_masked_patches_only() -> None:
    target = torch.arange(TOKENS, dtype=torch.float32).view(1, TOKENS, 1).expand(1, TOKENS, 49)
    pred = torch.zeros(1, TOKENS, 49)
    masked = torch.tensor([[1, 2, 3]])
    pred[0, 0] = 1e6  # a visible patch's error must not count
    # squared errors per masked patch: 1, 4, 9 (every pixel); mean over masked patches: 14/3
    assert masked_mse(pred, target, masked).item() == pytest.approx(14 / 3)


def test_mmd_against_a_hand_computed_value_and_zero_for_identical_sets() -> None:
    a = torch.tensor([[0.0], [1.0]])
    b = torch.tensor([[2.0]])
    # σ = mean pairwise distance within a = 1; k(x, y) = exp(−(x − y)² / 2)
    e = math.exp
    expected = (2 + 2 * e(-0.5)) / 4 + 1 - 2 * (e(-2) + e(-0.5)) / 2
    assert mmd2(a, b).item() == pytest.approx(expected, rel=1e-6)
    x = torch.randn(3, 10, 5)
    torch.testing.assert_close(mmd2(x, x.clone()), torch.zeros(3), atol=1e-6, rtol=0)


def test_mmd_bandwidth_carries_no_gradient() -> None:
    """The gradient equals that of the same MMD with σ given as a constant."""
    a = torch.randn(6, 3, requires_grad=True)
    b = torch.randn(5, 3)
    mmd2(a, b).backward()
    with torch.no_grad():
        s = torch.cdist(a, a).sum() / 30
    a2 = a.detach().clone().requires_grad_(True)

    def k(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.exp(-torch.cdist(x, y).pow(2) / (2 * s**2)).mean()

    (k(a2, a2) + k(b, b) - 2 * k(a2, b)).backward()
    torch.testing.assert_close(a.grad, a2.grad, atol=1e-5, rtol=1e-4)


def test_gamma_cosine_schedule() -> None:
    assert gamma_at(1, 10) == pytest.approx(0.1)
    assert gamma_at(10, 10) == pytest.approx(1e-3)
    assert gamma_at(4, 10) > gamma_at(5, 10)
    assert gamma_at(7, 10, schedule="constant") == 0.1


def test_mar_state_round_trip_and_a_rewind_to_before_the_first_exchange() -> None:
    mar, ids = MAR("reference"), ["a", "b"]
    mar.set_reference(torch.randn(2, 4, 3))
    mar.set_anchor({"w": torch.randn(2, 5)})
    saved = mar.state(ids)
    other = MAR("reference")
    other.load_state(saved, ids)
    assert torch.equal(other.reference, mar.reference) and torch.equal(other.anchor["w"],
                                                                       mar.anchor["w"])
    mar.load_state({}, ids)  # the round-0 checkpoint: nothing exchanged yet
    assert mar.reference is None and mar.anchor is None
