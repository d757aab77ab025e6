"""A GRU encoder whose whole recurrence is one autograd node, batched over agents.

`torch.nn.GRU` calls a fused kernel that `vmap` cannot batch over agents. Written as plain tensor
operations (PyTorch's gate equations), the recurrence costs ~15 small operations per time step
forward and ~25 in autograd's backward, each paying vmap's and autograd's dispatch: with a
handful of agents and 50-window batches that dispatch, not arithmetic, was the time of an OSM-L
run. `gru_sequence` instead runs the recurrence over an explicit agent axis (one `baddbmm` per
step for the three recurrent gates, the input projections of all steps in one `baddbmm` before
the loop) with a hand-written backward (one `baddbmm` per step, the weight gradients of all
steps in two `bmm`s after it), into preallocated buffers. Its `vmap` rule folds the vmapped axis
into that agent axis, so a `Population` (vmap over agents) runs every agent's GRU as one batched
call, and the module alone (no vmap) is the same code with one agent.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

BLOCK_ELEMENTS = 1 << 20
"""Agents are run in blocks whose gate tensor [agents, T, B, 3H] holds about this many elements
(4 MiB): the per-block temporaries (input projections in the forward, gate factors and
gradients in the backward) then stay that size however many agents there are, where tensors
over all agents cost ~0.4 MiB per agent (1.7 GB of a 4,096-agent run's peak). The backward's
element-wise passes read what the one before wrote: at the default sizes (32 agents a block)
they ran a 1,024-agent training batch 10–25 % faster than 16 MiB blocks (128 agents). Agents
never mix, and each block runs the same kernels on the same per-agent shapes (see
`BLOCK_ALIGN`), so the block size does not change the numbers."""

BLOCK_ALIGN = 32
"""Blocks other than the last hold a multiple of this many agents. Element-wise kernels run
vectors of up to 32 floats and the last few elements of a contiguous tensor one by one, and
sigmoid or tanh round differently in the two: with whole multiples of 32 elements per block,
every element is computed the way it was in one unblocked call (on one thread; more threads
split kernels at places that depend on the tensor's size anyway)."""


def _blocks(agents: int, per_agent: int) -> list[slice]:
    """Consecutive agent ranges holding about `BLOCK_ELEMENTS` elements of `per_agent` each, in
    multiples of `BLOCK_ALIGN` agents."""
    size = max(1, BLOCK_ELEMENTS // (per_agent * BLOCK_ALIGN)) * BLOCK_ALIGN
    return [slice(a, min(a + size, agents)) for a in range(0, agents, size)]


def _forward(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor,
             keep: bool = True) -> tuple[Tensor, ...]:
    """Final hidden states [A, B, H] of windows x [A, B, T, k]; with `keep`, also what the
    backward needs: the time-major inputs [A, T·B, k], every hidden state [A, T + 1, B, H], the
    gates r|z and n and the recurrent term of the n gate [A, T, B, ·]. Without `keep` (no
    gradient wanted) nothing is stored: at 4,096 agents that is 1 GB less. Agents run in
    `_blocks`, each writing its slice of the outputs."""
    A, B, T, k = x.shape
    H = w_hh.shape[-1]
    xt = x.transpose(1, 2).reshape(A, T * B, k)  # time-major: one step is a contiguous block
    if keep:
        hs = x.new_zeros(A, T + 1, B, H)
        rz = x.new_empty(A, T, B, 2 * H)
        n = x.new_empty(A, T, B, H)
        ghn = x.new_empty(A, T, B, H)  # the n gate's recurrent term: the backward needs it
    else:
        h_last = x.new_empty(A, B, H)
    for blk in _blocks(A, T * B * 3 * H):
        gi = torch.baddbmm(b_ih[blk].unsqueeze(1), xt[blk],
                           w_ih[blk].transpose(1, 2)).view(-1, T, B, 3 * H)
        weights = (w_hh[blk].transpose(1, 2), b_hh[blk].unsqueeze(1))
        if keep:
            _recur_kept(gi, *weights, hs[blk], rz[blk], n[blk], ghn[blk])
        else:
            h_last[blk] = _recur(gi, *weights)
    if not keep:
        return (h_last,)
    return hs[:, T], xt, hs, rz, n, ghn


def _recur(gi: Tensor, w_hhT: Tensor, b_hh: Tensor) -> Tensor:
    """The recurrence over input projections gi [A, T, B, 3H], storing nothing: the final
    hidden state [A, B, H]."""
    H = w_hhT.shape[1]
    h = gi.new_zeros(gi.shape[0], gi.shape[2], H)
    for gi_rz, gi_n in zip(gi[..., : 2 * H].unbind(1), gi[..., 2 * H :].unbind(1)):
        gh = torch.baddbmm(b_hh, h, w_hhT)  # all three recurrent gates in one call
        rz = torch.add(gi_rz, gh[..., : 2 * H]).sigmoid_()
        n = torch.addcmul(gi_n, rz[..., :H], gh[..., 2 * H :]).tanh_()
        h = torch.lerp(n, h, rz[..., H:])  # (1 − z)·n + z·h
    return h


def _recur_kept(gi: Tensor, w_hhT: Tensor, b_hh: Tensor, hs: Tensor, rz: Tensor, n: Tensor,
                ghn: Tensor) -> None:
    """The recurrence over input projections gi [A, T, B, 3H], into the buffers the backward
    needs (see `_forward`; hs[:, 0] holds the initial zeros). Per-step tensors are views taken
    before the loop (`unbind`), so the loop body is a few kernels and no indexing."""
    H = w_hhT.shape[1]
    steps = zip(gi[..., : 2 * H].unbind(1), gi[..., 2 * H :].unbind(1), ghn.unbind(1),
                rz.unbind(1), rz[..., :H].unbind(1), rz[..., H:].unbind(1), n.unbind(1),
                hs.unbind(1), hs[:, 1:].unbind(1))
    for gi_rz, gi_n, ghn_t, rz_t, r, z, n_t, h, h_next in steps:
        gh = torch.baddbmm(b_hh, h, w_hhT)
        torch.add(gi_rz, gh[..., : 2 * H], out=rz_t).sigmoid_()
        ghn_t.copy_(gh[..., 2 * H :])
        torch.addcmul(gi_n, r, ghn_t, out=n_t).tanh_()
        torch.lerp(n_t, h, z, out=h_next)


def _backward(grad: Tensor, w_ih: Tensor, w_hh: Tensor, saved: tuple[Tensor, ...],
              x_shape: torch.Size, need_x: bool) -> tuple[Tensor | None, ...]:
    """Gradients for (x, w_ih, w_hh, b_ih, b_hh) given dL/d(final hidden state), agents in
    `_blocks`: each block's gate factors and gradients are temporaries of the block's size."""
    A, T, B, H = saved[3].shape  # n
    grads = [grad.new_empty(x_shape) if need_x else None, torch.empty_like(w_ih),
             torch.empty_like(w_hh), grad.new_empty(A, 3 * H), grad.new_empty(A, 3 * H)]
    for blk in _blocks(A, T * B * 3 * H):
        block = _backward_block(grad[blk], w_ih[blk], w_hh[blk],
                                tuple(s[blk] for s in saved), need_x)
        for out, g in zip(grads, block):
            if out is not None:
                out[blk] = g
    return tuple(grads)


def _backward_block(grad: Tensor, w_ih: Tensor, w_hh: Tensor, saved: tuple[Tensor, ...],
                    need_x: bool) -> tuple[Tensor | None, ...]:
    """`_backward` for one block of agents. The factors that do not depend on the incoming
    gradient are computed for all steps at once, so each step is four products and one
    `baddbmm`."""
    xt, hs, rz, n, ghn = saved
    A, T, B, H = n.shape
    r, z = rz[..., :H], rz[..., H:]
    h_prev = hs[:, :T]
    c_n = (n * n).neg_().add_(1).mul_(1 - z)  # dL/d(n pre-activation) = dh · c_n
    c_z = (h_prev - n).mul_(z).mul_(1 - z)  # dL/d(z pre-activation) = dh · c_z
    c_r = (ghn * r).mul_(1 - r)  # dL/d(r pre-activation) = dL/d(n pre-activation) · c_r
    dgh = grad.new_empty(A, T, B, 3 * H)  # recurrent pre-activation gradients
    dgi_n = grad.new_empty(A, T, B, H)  # input n-gate gradients (r|z equal the recurrent ones)
    steps = zip(c_n.unbind(1), c_z.unbind(1), c_r.unbind(1), r.unbind(1), z.unbind(1),
                dgh.unbind(1), dgh[..., :H].unbind(1), dgh[..., H : 2 * H].unbind(1),
                dgh[..., 2 * H :].unbind(1), dgi_n.unbind(1))
    dh = grad
    for cn, cz, cr, r_t, z_t, dgh_t, dr, dz, dghn, dan in reversed(list(steps)):
        torch.mul(dh, cn, out=dan)
        torch.mul(dh, cz, out=dz)
        torch.mul(dan, cr, out=dr)
        torch.mul(dan, r_t, out=dghn)
        dh = torch.baddbmm(dh * z_t, dgh_t, w_hh)
    # Input-side gradients: r|z parts are the recurrent ones (strided views, no copy), n apart.
    dgh_all = dgh.view(A, T * B, 3 * H)
    parts = (dgh_all[..., : 2 * H], dgi_n.view(A, T * B, H))
    dx = None
    if need_x:
        dx = sum(torch.bmm(p, w) for p, w in zip(parts, w_ih.split([2 * H, H], dim=1)))
        dx = dx.view(A, T, B, -1).transpose(1, 2)
    return (dx, torch.cat([torch.bmm(p.transpose(1, 2), xt) for p in parts], dim=1),
            torch.bmm(dgh_all.transpose(1, 2), h_prev.reshape(A, T * B, H)),
            torch.cat([p.sum(1) for p in parts], dim=1), dgh_all.sum(1))


class GRUSequence(torch.autograd.Function):
    """Final hidden state [A, B, H] of a GRU over windows x [A, B, T, k], agent a with its own
    weights w_ih [A, 3H, k], w_hh [A, 3H, H], b_ih [A, 3H], b_hh [A, 3H] (PyTorch's layout)."""

    @staticmethod
    def forward(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Any:
        return _forward(x, w_ih, w_hh, b_ih, b_hh)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, ...], output: Any) -> None:
        x, w_ih, w_hh, _, _ = inputs
        ctx.save_for_backward(w_ih, w_hh, *output[1:])
        ctx.x_shape = x.shape
        ctx.mark_non_differentiable(*output[1:])
        ctx.set_materialize_grads(False)  # no zero gradients for them: 0.2 MiB per agent

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        if grad is None:  # the final state was not used: no gradient flows back
            return (None,) * 5
        w_ih, w_hh, *saved = ctx.saved_tensors
        return _backward(grad.contiguous(), w_ih, w_hh, tuple(saved), ctx.x_shape,
                         ctx.needs_input_grad[0])

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, ...], *args: Tensor) -> Any:
        """Under vmap (a Population), the vmapped axis joins the agent axis: one batched call."""
        V = info.batch_size
        flat = []
        for a, d in zip(args, in_dims):
            a = a.unsqueeze(0).expand(V, *a.shape) if d is None else a.movedim(d, 0)
            flat.append(a.reshape(V * a.shape[1], *a.shape[2:]))
        out = GRUSequence.apply(*flat)
        return tuple(o.view(V, -1, *o.shape[1:]) for o in out), (0,) * len(out)


def gru_sequence(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Tensor:
    """`GRUSequence` for agents on a leading axis; returns the final hidden states [A, B, H].
    Where no gradient is wanted (evaluation), the same recurrence runs without storing
    anything for a backward."""
    args = (x, w_ih, w_hh, b_ih, b_hh)
    if torch.is_grad_enabled() and any(t.requires_grad for t in args):
        return GRUSequence.apply(*args)[0]
    return _forward(*args, keep=False)[0]


class GRUEncoder(nn.Module):
    """Reads a window [batch, w, k] and returns the last hidden state [batch, hidden]."""

    def __init__(self, in_features: int, hidden: int = 20):
        super().__init__()
        self.hidden = hidden
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden, in_features))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden, hidden))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden))
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden))
        bound = 1.0 / math.sqrt(hidden)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        one = (x, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return gru_sequence(*(t.unsqueeze(0) for t in one))[0]

    def batched_forward(self, params: dict[str, Tensor], buffers: dict[str, Tensor],
                        x: Tensor) -> Tensor:
        """`forward` for agents on a leading axis: x [A, B, w, k] -> [A, B, hidden]."""
        return gru_sequence(x, params["weight_ih"], params["weight_hh"], params["bias_ih"],
                            params["bias_hh"])
