"""The MNIST CNN of McMahan et al. (2017), as used by the Holonic Learning paper (21,840 params).

conv 1→10 (5×5), max-pool, ReLU; conv 10→20 (5×5), channel dropout, max-pool, ReLU;
linear 320→50, ReLU, dropout; linear 50→10.

Dropout takes its randomness as an input (`noise`, uniform [0, 1) of shape [batch, NOISE_WIDTH])
instead of drawing it: under `vmap` over a population every agent then gets its own masks from
its own generator, so an agent's training does not depend on which agents are batched with it.
Without `noise` the model is deterministic (evaluation).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


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
