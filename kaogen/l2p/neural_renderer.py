"""The neural renderer of Learning to Paint: a network that maps a stroke's 10 shape fields to its alpha.

    alpha = NeuralRenderer(S)(shape)      shape (B, 10) in [0, 1] -> alpha (B, S, S) in [0, 1]

Architecture as in the paper: four fully connected layers to a 16 x 16 x 16 block, then stages of
two 3x3 convolutions and a 2x pixel shuffle until S (three stages for 128 px). It is trained
(`kaogen train-renderer`) to imitate kaogen's exact rasteriser on random strokes, and is one of the
two differentiable stroke models the agent can learn through (the other is the soft rasteriser).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from kaogen.errors import KaogenError
from kaogen.render.strokes import SHAPE_FIELDS


class NeuralRenderer(nn.Module):
    def __init__(self, canvas: int = 128):
        super().__init__()
        n = int(round(math.log2(canvas / 16)))
        if canvas < 16 or 16 * 2 ** n != canvas:
            raise KaogenError(f"neural renderer canvas must be 16 x a power of 2, got {canvas}")
        self.canvas = canvas
        self.fc = nn.Sequential(
            nn.Linear(len(SHAPE_FIELDS), 512), nn.ReLU(), nn.Linear(512, 1024), nn.ReLU(),
            nn.Linear(1024, 2048), nn.ReLU(), nn.Linear(2048, 4096), nn.ReLU(),
        )
        stages, c = [], 16
        for i in range(n):
            c_out = max(4, 32 >> i)
            last = i == n - 1
            stages += [nn.Conv2d(c, c_out, 3, 1, 1), nn.ReLU(),
                       nn.Conv2d(c_out, 4 if last else 4 * (c_out // 2), 3, 1, 1)]
            if not last:
                stages.append(nn.ReLU())
            stages.append(nn.PixelShuffle(2))
            c = 1 if last else c_out // 2
        if n == 0:                       # 16 px: one convolution to a single channel
            stages.append(nn.Conv2d(16, 1, 3, 1, 1))
        self.conv = nn.Sequential(*stages)

    def forward(self, shape: torch.Tensor) -> torch.Tensor:
        """shape (B, 10) in [0, 1] -> alpha (B, S, S) in [0, 1]."""
        h = self.fc(shape).view(-1, 16, 16, 16)
        return torch.sigmoid(self.conv(h)).squeeze(1)


def renderer_error(model: NeuralRenderer, strokes: torch.Tensor, alpha: torch.Tensor) -> dict[str, float]:
    """Mean squared and mean absolute error of `model` against exact alphas (B, S, S) of `strokes`."""
    with torch.no_grad():
        pred = model(strokes[:, : len(SHAPE_FIELDS)])
    return {"mse": F.mse_loss(pred, alpha).item(), "mae": (pred - alpha).abs().mean().item()}
