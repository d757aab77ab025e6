"""The MNIST CNN of McMahan et al. (2017), as used by the Holonic Learning paper (21,840 params).

conv 1→10 (5×5), max-pool, ReLU; conv 10→20 (5×5), channel dropout, max-pool, ReLU;
linear 320→50, ReLU, dropout; linear 50→10.

Dropout takes its randomness as an input (`noise`, uniform [0, 1) of shape [batch, NOISE_WIDTH])
instead of drawing it: under `vmap` over a population every agent then gets its own masks from
its own generator, so an agent's training does not depend on which agents are batched with it.
Without `noise` the model is deterministic (evaluation).

`batched_forward` runs many agents' copies at once (a `Population`'s fast path): both
convolutions as one grouped convolution (agent a = group a) in channels-last layout, where on CPU
oneDNN's convolution and max-pooling ran 2x and ~20x faster than in the default NCHW layout that
vmap's grouped convolution produces.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from osmotic.models.batched import linear


class MnistCNN(nn.Module):
    """Classifies [batch, 1, 28, 28] images into 10 logits."""

    CONV_CHANNELS = 20
    HIDDEN = 50
    NOISE_WIDTH = CONV_CHANNELS + HIDDEN  # one number per dropped channel / hidden unit

    def __init__(self, dropout: float = 0.5):
        super().__init__()
        if not 0 <= dropout < 1:
            raise ValueError(f"cnn dropout must be in [0, 1), got {dropout}")
        self.dropout = dropout
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, self.CONV_CHANNELS, kernel_size=5)
        self.fc1 = nn.Linear(320, self.HIDDEN)
        self.fc2 = nn.Linear(self.HIDDEN, 10)

    def _drop(self, h: Tensor, u: Tensor) -> Tensor:
        """Inverted dropout with uniform draws `u` broadcastable to `h`."""
        return h * (u >= self.dropout).to(h.dtype) / (1 - self.dropout)

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        h = F.relu(F.max_pool2d(self.conv1(x), 2))
        h = self.conv2(h)
        if noise is not None:  # channel dropout (Dropout2d): one draw per image and channel
            h = self._drop(h, noise[:, : self.CONV_CHANNELS, None, None])
        h = F.relu(F.max_pool2d(h, 2))
        h = F.relu(self.fc1(h.flatten(1)))
        if noise is not None:
            h = self._drop(h, noise[:, self.CONV_CHANNELS :])
        return self.fc2(h)

    def batched_forward(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor,
                        noise: Tensor | None = None) -> Tensor:
        """`forward` for agents on a leading axis: x [A, B, 1, 28, 28] (or [B, 1, 28, 28], the
        same images for every agent), noise [A, B, NOISE_WIDTH] -> logits [A, B, 10]."""
        A = params["conv1.weight"].shape[0]
        if x.dim() == 4:
            x = x.expand(A, *x.shape)
        B, C = x.shape[1], self.CONV_CHANNELS
        # agents become channel groups: [B, A, 28, 28], channels last
        h = x.transpose(0, 1).flatten(1, 2).contiguous(memory_format=torch.channels_last)
        h = F.conv2d(h, params["conv1.weight"].flatten(0, 1), params["conv1.bias"].flatten(),
                     groups=A)
        # With one agent the input has one channel, which torch reads as NCHW: make sure.
        h = F.relu(F.max_pool2d(h.contiguous(memory_format=torch.channels_last), 2))
        h = F.conv2d(h, params["conv2.weight"].flatten(0, 1), params["conv2.bias"].flatten(),
                     groups=A)  # [B, A * C, 8, 8]
        if noise is not None:
            h = self._drop(h, noise[..., :C].transpose(0, 1).reshape(B, A * C, 1, 1))
        h = F.relu(F.max_pool2d(h, 2))  # [B, A * C, 4, 4]
        h = h.reshape(B, A, -1).transpose(0, 1)  # [A, B, C * 16] in forward's flatten order
        h = F.relu(linear(h, params["fc1.weight"], params["fc1.bias"]))
        if noise is not None:
            h = self._drop(h, noise[..., C:])
        return linear(h, params["fc2.weight"], params["fc2.bias"])
