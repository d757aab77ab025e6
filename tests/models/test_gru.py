"""The agent-batched GRU equals torch.nn.GRU run agent by agent: outputs and gradients."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from osmotic.models import gru
from osmotic.models.gru import GRUEncoder, gru_sequence

A, B, T, K, H = 3, 7, 5, 2, 4


def _reference(enc: GRUEncoder) -> nn.GRU:
    """PyTorch's own GRU with the encoder's weights (same layout and gate order)."""
    gru = nn.GRU(K, H, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(gru, f"{name}_l0").copy_(getattr(enc, name))
    return gru


def _encoders() -> list[GRUEncoder]:
    torch.manual_seed(0)
    return [GRUEncoder(K, H) for _ in range(A)]


def test_batched_gru_equals_torch_gru_per_agent() -> None:
    encs = _encoders()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(A, B, T, K, generator=g, requires_grad=True)
    upstream = torch.randn(A, B, H, generator=g)
    params, _ = stack_module_state(encs)
    params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    h = gru_sequence(x, params["weight_ih"], params["weight_hh"], params["bias_ih"],
                     params["bias_hh"])
    (h * upstream).sum().backward()
    for a, enc in enumerate(encs):
        ref = _reference(enc)
        xa = x[a].detach().requires_grad_(True)
        out = ref(xa)[1][0]  # final hidden state [B, H]
        (out * upstream[a]).sum().backward()
        torch.testing.assert_close(h[a], out, atol=1e-5, rtol=0)
        torch.testing.assert_close(x.grad[a], xa.grad, atol=1e-5, rtol=0)
        for name, p in params.items():
            torch.testing.assert_close(p.grad[a], getattr(ref, f"{name}_l0").grad,
                                       atol=1e-5, rtol=1e-5)


def test_module_and_vmap_use_the_same_recurrence() -> None:
    """Alone (one agent) and under vmap (a Population without a batched forward)."""
    encs = _encoders()
    x = torch.randn(A, B, T, K, generator=torch.Generator().manual_seed(2))
    params, buffers = stack_module_state(encs)
    vmapped = vmap(lambda p, b, xx: functional_call(encs[0], (p, b), (xx,)))(params, buffers, x)
    for a, enc in enumerate(encs):
        alone = enc(x[a])
        torch.testing.assert_close(alone, _reference(enc)(x[a])[1][0], atol=1e-5, rtol=0)
        torch.testing.assert_close(vmapped[a], alone, atol=1e-6, rtol=0)


def test_gradcheck_in_double_precision() -> None:
    g = torch.Generator().manual_seed(3)
    args = [torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True)
            for s in ((2, 3, 4, 2), (2, 9, 2), (2, 9, 3), (2, 9), (2, 9))]
    assert torch.autograd.gradcheck(gru_sequence, args)


def test_inference_path_equals_the_training_path() -> None:
    """Without gradients nothing is stored for a backward; the numbers agree to the last bits
    (contiguous and strided element-wise kernels may round differently)."""
    params, _ = stack_module_state(_encoders())
    x = torch.randn(A, B, T, K, generator=torch.Generator().manual_seed(4))
    args = (x, params["weight_ih"], params["weight_hh"], params["bias_ih"], params["bias_hh"])
    with torch.no_grad():
        lean = gru_sequence(*args)
    torch.testing.assert_close(lean, gru_sequence(*args), atol=1e-6, rtol=1e-6)


def test_agents_in_blocks_give_the_same_bits_as_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many agents run in blocks of 32 (memory stays per block); on one thread every output
    and gradient is bit for bit what one call over all agents gives, the uneven last block
    included."""
    g = torch.Generator().manual_seed(5)
    n = 70  # blocks of 32, 32 and 6 agents below
    x = torch.randn(n, B, T, K, generator=g)
    weights = [0.5 * torch.randn(n, *s, generator=g) for s in ((3 * H, K), (3 * H, H), (3 * H,),
                                                                (3 * H,))]
    upstream = torch.randn(n, B, H, generator=g)

    def run() -> list[Tensor]:
        xx, *ws = (t.clone().requires_grad_(True) for t in (x, *weights))
        h = gru_sequence(xx, *ws)
        (h * upstream).sum().backward()
        with torch.no_grad():
            lean = gru_sequence(x, *weights)
        return [h.detach(), lean, xx.grad, *(w.grad for w in ws)]

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        whole = run()
        monkeypatch.setattr(gru, "BLOCK_ELEMENTS", T * B * 3 * H * gru.BLOCK_ALIGN)
        assert len(gru._blocks(n, T * B * 3 * H)) == 3
        for a, b in zip(whole, run()):
            assert torch.equal(a, b)
    finally:
        torch.set_num_threads(before)
