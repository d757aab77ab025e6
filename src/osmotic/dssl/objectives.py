"""Self-supervised local objectives: SimSiam, MAE and MAR, batched over clients.

Each objective wraps a backbone with the heads its method needs into one module, whose forward
returns per-sample losses, so a `Population` trains every client's copy in one vmapped call.
Augmentations and masks are drawn from each client's own generator and enter the module as
inputs. SimSiam's normalisation uses each client's own batch statistics and keeps no running
buffers (nothing is mutated in place under vmap).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from osmotic.dssl import augment
from osmotic.models.vit import TOKENS, Block, gather_tokens, patchify
from osmotic.runtime.objectives import Objective
from osmotic.runtime.population import Population

MASK_RATIO = 0.75
VISIBLE = round(TOKENS * (1 - MASK_RATIO))  # 4 of 16 patches


def batch_norm(h: Tensor, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalise [batch, features] with this batch's statistics (no running buffers)."""
    h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + eps)
    return h if weight is None else h * weight + bias


class BNLinear(nn.Module):
    """Linear → batch-statistics normalisation (affine) → optional ReLU."""

    def __init__(self, a: int, b: int, relu: bool, affine: bool = True):
        super().__init__()
        self.fc, self.relu = nn.Linear(a, b), relu
        self.weight = nn.Parameter(torch.ones(b)) if affine else None
        self.bias = nn.Parameter(torch.zeros(b)) if affine else None

    def forward(self, h: Tensor) -> Tensor:
        h = batch_norm(self.fc(h), self.weight, self.bias)
        return F.relu(h) if self.relu else h


class SimSiamNet(nn.Module):
    """Backbone → projector (2 layers, 128 hidden → 64) → predictor (64 → 32 → 64)."""

    def __init__(self, backbone: nn.Module, hidden: int = 128, out: int = 64,
                 bottleneck: int = 32):
        super().__init__()
        self.backbone = backbone
        d = backbone.feature_dim
        self.projector = nn.Sequential(BNLinear(d, hidden, True), BNLinear(hidden, out, False,
                                                                            affine=False))
        self.predictor = nn.Sequential(BNLinear(out, bottleneck, True), nn.Linear(bottleneck, out))

    def forward(self, v1: Tensor, v2: Tensor) -> Tensor:
        """Per-sample loss −½[cos(p₁, sg z₂) + cos(p₂, sg z₁)] for two views [batch, ...]."""
        z1, z2 = self.projector(self.backbone(v1)), self.projector(self.backbone(v2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        return -0.5 * (F.cosine_similarity(p1, z2.detach(), dim=-1)
                       + F.cosine_similarity(p2, z1.detach(), dim=-1))


class MAENet(nn.Module):
    """Backbone encoder over the visible patches → light decoder (one block, width 32) with
    mask tokens → pixels of every patch; loss: MSE on the masked patches only."""

    def __init__(self, backbone: nn.Module, width: int = 32, depth: int = 1, heads: int = 4):
        super().__init__()
        if not hasattr(backbone, "encode"):
            raise ValueError(f"MAE needs a backbone with encode(x, keep) over visible patches "
                             f"(vit); {type(backbone).__name__} has none")
        self.backbone = backbone
        self.embed = nn.Linear(backbone.feature_dim, width)
        self.mask_token = nn.Parameter(torch.zeros(width))
        self.pos = nn.Parameter(torch.randn(TOKENS, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads, 2 * width) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, patchify(torch.zeros(1, 1, 28, 28)).shape[-1])

    def forward(self, x: Tensor, order: Tensor) -> tuple[Tensor, Tensor]:
        """`order` [batch, 16]: a permutation of patches per image, the first `VISIBLE` seen.
        Returns per-sample losses [batch] and pooled latents of the visible patches."""
        keep, masked = order[:, :VISIBLE], order[:, VISIBLE:]
        latent = self.backbone.encode(x, keep)
        t = self.embed(latent)
        t = torch.cat([t, self.mask_token.expand(x.shape[0], TOKENS - VISIBLE, -1)], 1)
        t = gather_tokens(t, torch.argsort(order, dim=1)) + self.pos  # back to patch order
        for block in self.blocks:
            t = block(t)
        pred = self.head(self.norm(t))
        return masked_mse(pred, patchify(x), masked), latent.mean(1)


def masked_mse(pred: Tensor, target: Tensor, masked: Tensor) -> Tensor:
    """Per-sample mean squared error over the patches at `masked` [batch, k] only."""
    err = ((pred - target) ** 2).mean(-1)  # [batch, patches]
    return torch.gather(err, 1, masked).mean(1)


def mmd2(a: Tensor, b: Tensor, valid: Tensor | None = None) -> Tensor:
    """Squared MMD (biased estimate) between point sets a [..., n, d] and b [..., m, d] under a
    Gaussian kernel whose bandwidth σ is the mean pairwise distance within `a` (no gradient
    through σ): mean k(a, a) + mean k(b, b) − 2 mean k(a, b), k = exp(−‖x − y‖² / 2σ²).
    `valid` [..., m]: the rows of `b` that exist (the others may hold anything, NaN included);
    a set with none gives 0."""

    def sq(x: Tensor, y: Tensor) -> Tensor:
        d = (x * x).sum(-1, keepdim=True) - 2 * x @ y.transpose(-2, -1) \
            + (y * y).sum(-1).unsqueeze(-2)
        return d.clamp_min(0)

    daa = sq(a, a)
    n = a.shape[-2]
    with torch.no_grad():
        sigma = daa.sqrt().sum((-2, -1)) / max(n * (n - 1), 1)
        scale = (2 * sigma.clamp_min(1e-12) ** 2)[..., None, None]
    if valid is None:
        k = [torch.exp(-d / scale).mean((-2, -1)) for d in (daa, sq(b, b), sq(a, b))]
        return k[0] + k[1] - 2 * k[2]
    w = valid.to(a.dtype)
    total = w.sum(-1)
    w = w / total.clamp_min(1)[..., None]  # each valid row of b weighs 1 / (valid rows)
    b = torch.where(valid[..., None], b, torch.zeros((), dtype=b.dtype))  # NaN * 0 is NaN
    kaa = torch.exp(-daa / scale).mean((-2, -1))
    kbb = (torch.exp(-sq(b, b) / scale) * w[..., :, None] * w[..., None, :]).sum((-2, -1))
    kab = (torch.exp(-sq(a, b) / scale).mean(-2) * w).sum(-1)
    return torch.where(total > 0, kaa + kbb - 2 * kab, torch.zeros((), dtype=a.dtype))


class _SSL(Objective):
    """Shared by the self-supervised objectives: padding rows (epochs counted, a client's last
    partial batch) repeat the client's own samples and are weighted out of the loss."""

    net: ClassVar[Callable[[nn.Module], nn.Module]]

    def build(self, backbone: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        return lambda: type(self).net(backbone())

    @staticmethod
    def mean(per_sample: Tensor, weight: Tensor) -> Tensor:
        return (per_sample * weight).sum(1) / weight.sum(1)


class SimSiam(_SSL):
    """Two augmented views per image (`augment`); `pixels`: the images' standardisation
    (default MNIST's), so that geometry and erasing see raw pixels."""

    name = "simsiam"
    net = SimSiamNet

    def __init__(self, pixels: augment.Pixels | None = None):
        self.pixels = pixels

    def loss(self, pop: Population, x: Tensor, y: Tensor, weight: Tensor,
             agents: Tensor) -> Tensor:
        gens = [pop.generators[i] for i in agents.tolist()]
        flat = x.flatten(0, 1)
        shape = tuple(x.shape[2:])
        views = [augment.augment(flat, *(r.flatten(0, 1) for r in
                                         augment.draw(gens, x.shape[1], shape)), self.pixels)
                 .view_as(x) for _ in range(2)]
        return self.mean(pop(*views, agents=agents), weight)


def mask_orders(gens: list[torch.Generator], batch: int) -> Tensor:
    """A random patch order per image [agents, batch, 16], from each agent's generator."""
    return torch.stack([torch.rand(batch, TOKENS, generator=g).argsort(-1) for g in gens])


class MAE(_SSL):
    name = "mae"
    net = MAENet

    def loss(self, pop: Population, x: Tensor, y: Tensor, weight: Tensor,
             agents: Tensor) -> Tensor:
        return self.mean(pop(x, self.orders(pop, x, agents), agents=agents)[0], weight)

    @staticmethod
    def orders(pop: Population, x: Tensor, agents: Tensor) -> Tensor:
        """This step's patch orders, drawn from the generators of the clients at `agents`."""
        return mask_orders([pop.generators[i] for i in agents.tolist()], x.shape[1])


class MAR(MAE):
    """MAE + γ·MMD²(the client's latents of its batch, a target set).

    Target `reference`: latents other clients sent (`set_reference`, [clients, R, d]; none
    before the first exchange, so round 1 is plain MAE). Rows of NaN in a reference set are
    latents that did not come (a neighbour that did not report this round, with partial
    participation): the MMD weighs only the others, and a client whose new set is all NaN keeps
    the set it had. Target `model`: the latents of the
    same visible patches under the model the client last received (`set_anchor`), detached.
    The MMD sees a batch's padding rows too (epochs counted): they repeat the client's own
    samples, so they reweight its latents rather than add foreign ones."""

    name = "mar"

    def __init__(self, target: str = "model"):
        if target not in ("reference", "model"):
            raise ValueError(f"mar_target must be reference or model, got {target!r}")
        self.target = target
        self.gamma = 0.0
        self.reference: Tensor | None = None
        self.anchor: dict[str, Tensor] | None = None

    def set_reference(self, reference: Tensor) -> None:
        new = reference.detach().clone()
        if self.reference is not None and self.reference.shape == new.shape:
            stale = torch.isnan(new).flatten(1).all(1)  # nothing came for these clients
            new[stale] = self.reference[stale]
        self.reference = new

    def set_anchor(self, params: dict[str, Tensor]) -> None:
        self.anchor = {k: v.detach().clone() for k, v in params.items()}

    def loss(self, pop: Population, x: Tensor, y: Tensor, weight: Tensor,
             agents: Tensor) -> Tensor:
        order = self.orders(pop, x, agents)
        per_sample, latent = pop(x, order, agents=agents)
        loss = self.mean(per_sample, weight)
        if self.gamma == 0:
            return loss
        if self.target == "model" and self.anchor is not None:
            with torch.no_grad():
                _, target = pop(x, order, agents=agents, params=self.anchor)
        elif self.target == "reference" and self.reference is not None:
            target = self.reference[agents]
            valid = ~torch.isnan(target).any(-1)
            if not bool(valid.all()):  # partial participation: some latents did not come
                return loss + self.gamma * mmd2(latent, target, valid)
        else:
            return loss
        return loss + self.gamma * mmd2(latent, target)

    @staticmethod
    @torch.no_grad()
    def latents(pop: Population, x: Tensor, keep: Tensor) -> Tensor:
        """Pooled latents [agents, m, d] of images `x` [agents, m, ...], every image seen
        through the same visible patches `keep` [VISIBLE] (the round's shared pattern)."""
        rest = torch.tensor([i for i in range(TOKENS) if i not in set(keep.tolist())])
        order = torch.cat([keep, rest]).expand(*x.shape[:2], TOKENS)
        return pop(x, order)[1]

    def state(self, ids: list[str]) -> dict[str, Tensor]:
        """Reference sets and anchors, keyed per client (γ is set by the driver each round)."""
        out: dict[str, Tensor] = {}
        for i, a in enumerate(ids):
            if self.reference is not None:
                out[f"{a}/mar/reference"] = self.reference[i].clone()
            if self.anchor is not None:
                out.update({f"{a}/mar/anchor.{k}": v[i].clone() for k, v in self.anchor.items()})
        return out

    def load_state(self, state: dict[str, Tensor], ids: list[str]) -> None:
        """What `state` saved, and nothing else: a rewind to round 0 drops a later reference."""
        self.reference = self.anchor = None
        if f"{ids[0]}/mar/reference" in state:
            self.reference = torch.stack([state[f"{a}/mar/reference"] for a in ids])
        prefix = f"{ids[0]}/mar/anchor."
        names = [k.removeprefix(prefix) for k in state if k.startswith(prefix)]
        if names:
            self.anchor = {n: torch.stack([state[f"{a}/mar/anchor.{n}"] for a in ids])
                           for n in names}


def gamma_at(round_: int, rounds: int, gamma_max: float = 0.1, gamma_min: float = 1e-3,
             schedule: str = "cosine") -> float:
    """γ for round `round_` (1-based): cosine from γ_max (round 1) to γ_min (last round)."""
    if schedule == "constant" or rounds == 1:
        return gamma_max
    return gamma_min + 0.5 * (gamma_max - gamma_min) * (1 + math.cos(math.pi * (round_ - 1)
                                                                      / (rounds - 1)))


OBJECTIVES: dict[str, type[Objective]] = {o.name: o for o in (SimSiam, MAE, MAR)}
