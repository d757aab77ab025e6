"""One OSM-L agent's model: f_i = h_i ∘ g_i plus the private part of its preservation loss.

g_i (a GRU over the agent's k_i features) and h_i (a linear map to the shared embedding size d)
make the embedding that is sent to the diffuser. The preservation loss (paper Eq. 6) keeps that
embedding informative about the agent's own input window, so alignment to the context cannot
collapse it to a constant; its critic or decoder is private and never leaves the agent.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from osmotic.models import make_model, with_arguments
from osmotic.models.batched import batched_call, linear, sub

Params = dict[str, Tensor]


def _mlp(p: Params, x: Tensor, first: int = 0) -> Tensor:
    """`Sequential(Linear, Tanh, Linear)` per agent, its Linears at positions `first`, `first` + 2."""
    a, b = first, first + 2
    return linear(torch.tanh(linear(x, p[f"{a}.weight"], p[f"{a}.bias"])),
                  p[f"{b}.weight"], p[f"{b}.bias"])


def _per_agent_ce(logits: Tensor, target: Tensor) -> Tensor:
    """Mean cross-entropy per agent of logits [A, B, C] against targets [B] (or [A, B])."""
    ce = F.cross_entropy(logits.flatten(0, 1), target.expand(logits.shape[:2]).flatten(),
                         reduction="none")
    return ce.view(logits.shape[:2]).mean(1)



class InfoNCE(nn.Module):
    """InfoNCE bound on I(e; x): a private critic embeds the window, the matching window of the
    batch is the positive, the other windows of the batch are the negatives (temperature τ)."""

    needs_noise = False

    def __init__(self, in_features: int, window: int, dim: int, temperature: float, width: int = 32):
        super().__init__()
        self.critic = nn.Sequential(nn.Flatten(), nn.Linear(window * in_features, width),
                                    nn.Tanh(), nn.Linear(width, dim))
        self.temperature = temperature

    def forward(self, x: Tensor, e: Tensor, agent: OsmoticAgent, noise: Tensor) -> Tensor:
        logits = F.normalize(e, dim=-1) @ F.normalize(self.critic(x), dim=-1).T / self.temperature
        return F.cross_entropy(logits, torch.arange(len(e)))

    def batched(self, p: Params, b: Params, x: Tensor, e: Tensor, agent: OsmoticAgent,
                noise: Tensor) -> Tensor:
        """`forward` for agents on a leading axis (x [A, B, w, k], e [A, B, d]) -> [A];
        `p`, `b`: the whole agent's stacked parameters and buffers."""
        critic = F.normalize(_mlp(sub(p, "preserve.critic."), x.flatten(2), first=1), dim=-1)
        logits = torch.bmm(F.normalize(e, dim=-1), critic.transpose(1, 2)) / self.temperature
        return _per_agent_ce(logits, torch.arange(e.shape[1]))


class Reconstruction(nn.Module):
    """Autoencoder variant: a private decoder rebuilds the window from the embedding (MSE)."""

    needs_noise = False

    def __init__(self, in_features: int, window: int, dim: int, temperature: float, width: int = 32):
        super().__init__()
        self.decoder = nn.Sequential(nn.Linear(dim, width), nn.Tanh(),
                                     nn.Linear(width, window * in_features))

    def forward(self, x: Tensor, e: Tensor, agent: OsmoticAgent, noise: Tensor) -> Tensor:
        return F.mse_loss(self.decoder(e), x.flatten(1))

    def batched(self, p: Params, b: Params, x: Tensor, e: Tensor, agent: OsmoticAgent,
                noise: Tensor) -> Tensor:
        """`forward` for agents on a leading axis (x [A, B, w, k], e [A, B, d]) -> [A];
        `p`, `b`: the whole agent's stacked parameters and buffers."""
        return ((_mlp(sub(p, "preserve.decoder."), e) - x.flatten(2)) ** 2).mean((1, 2))


class Reference(nn.Module):
    """The published simulator's term, kept for comparison: cross-entropy over the logits
    [cos(e, e'), cos(e, n)] / τ with e' a second pass over the same window and n ~ N(0, I).
    Its positive logit is trivially 1/τ, so it cannot prevent collapse."""

    needs_noise = True

    def __init__(self, in_features: int, window: int, dim: int, temperature: float):
        super().__init__()
        self.temperature = temperature

    def forward(self, x: Tensor, e: Tensor, agent: OsmoticAgent, noise: Tensor) -> Tensor:
        again = agent.embed(x)
        logits = torch.stack([F.cosine_similarity(e, again, dim=-1),
                              F.cosine_similarity(e, noise, dim=-1)], dim=-1) / self.temperature
        return F.cross_entropy(logits, torch.zeros(len(e), dtype=torch.long))

    def batched(self, p: Params, b: Params, x: Tensor, e: Tensor, agent: OsmoticAgent,
                noise: Tensor) -> Tensor:
        """`forward` for agents on a leading axis (x [A, B, w, k], e [A, B, d]) -> [A];
        `p`, `b`: the whole agent's stacked parameters and buffers."""
        again = agent.batched_embed(p, b, x)
        logits = torch.stack([F.cosine_similarity(e, again, dim=-1),
                              F.cosine_similarity(e, noise, dim=-1)], dim=-1) / self.temperature
        return _per_agent_ce(logits, torch.zeros(e.shape[1], dtype=torch.long))


PRESERVE: dict[str, type[nn.Module]] = {
    "infonce": InfoNCE, "reconstruction": Reconstruction, "reference": Reference,
}


def encoder_builder(name: str, params: Mapping[str, Any], in_features: int, window: int,
                    hidden: int) -> Callable[[], nn.Module]:
    """g_i: a registered model (`gru`) or an import path, mapping windows [batch, w, k] to
    [batch, width]; it is offered `in_features` (k), `window` (w) and `hidden` (the config's
    size) where its constructor takes them."""
    offered = {"in_features": in_features, "window": window, "hidden": hidden}
    return partial(make_model, name, **with_arguments(name, params, offered))


class OsmoticAgent(nn.Module):
    """Embedding model and preservation term of one agent; batched over agents by a Population."""

    def __init__(self, in_features: int, window: int = 10, hidden: int = 20, dim: int = 5,
                 preserve: str = "infonce", temperature: float = 0.1, sphere: bool = True,
                 encoder: str = "gru", encoder_params: Mapping[str, Any] | None = None):
        super().__init__()
        self.encoder = encoder_builder(encoder, encoder_params or {}, in_features, window,
                                       hidden)()
        with torch.no_grad():  # the encoder's output width, for the projection to d
            width = self.encoder(torch.zeros(1, window, in_features)).shape[-1]
        self.project = nn.Linear(width, dim)
        self.sphere = sphere
        self.preserve = PRESERVE[preserve](in_features, window, dim, temperature)

    def embed(self, x: Tensor) -> Tensor:
        """Embeddings [batch, d] of windows [batch, w, k]. On the sphere of radius √d when
        `sphere`: every similarity OSM-L uses is a cosine, so the norm would carry nothing but
        a way to shrink the alignment loss without agreeing in direction."""
        e = self.project(self.encoder(x))
        return F.normalize(e, dim=-1) * e.shape[-1] ** 0.5 if self.sphere else e

    def forward(self, x: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        e = self.embed(x)
        return e, self.preserve(x, e, self, noise)

    # -- the same for a Population's stacked parameters (agents on a leading axis) ------------
    def batched_embed(self, p: Params, b: Params, x: Tensor) -> Tensor:
        """`embed` per agent: x [A, B, w, k] -> [A, B, d] with parameters p[name] [A, ...]."""
        h = batched_call(self.encoder, sub(p, "encoder."), sub(b, "encoder."), x)
        e = linear(h, p["project.weight"], p["project.bias"])
        return F.normalize(e, dim=-1) * e.shape[-1] ** 0.5 if self.sphere else e

    def batched_forward(self, params: Params, buffers: Params, x: Tensor,
                        noise: Tensor) -> tuple[Tensor, Tensor]:
        """`forward` for all agents at once, without vmap's per-operation dispatch."""
        e = self.batched_embed(params, buffers, x)
        return e, self.preserve.batched(params, buffers, x, e, self, noise)
