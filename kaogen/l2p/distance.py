"""How far a canvas is from its target: squared error over a Gaussian pyramid.

    d = pyramid_distance(canvas, target, levels=4)      # (B,)

Level 0 is the image itself; each further level is blurred (binomial [1 4 6 4 1] / 16, sigma 1 px)
and halved. A coarse level's pixel is a smooth function of a stroke's position, so a stroke lying
where the picture is already painted still feels where paint is missing nearby; under the plain MSE
(levels = 1) its position has no gradient there. canvas, target: (B, 3, H, W) in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pyramid_down(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, ceil(H / 2), ceil(W / 2)): binomial blur, then every 2nd pixel."""
    d = torch.arange(-2, 3, device=x.device, dtype=x.dtype)      # [1 4 6 4 1] / 16, made on the device
    k1 = (6 - 2.25 * d ** 2 + 0.25 * d ** 4) / 16                  # (no host-to-device copy per call)
    C = x.shape[1]
    k = (k1[:, None] * k1[None, :]).expand(C, 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), k, stride=2, groups=C)


def pyramid_distance(canvas: torch.Tensor, target: torch.Tensor, levels: int = 1) -> torch.Tensor:
    """(B,) mean squared error averaged over `levels` pyramid levels (levels = 1: the plain MSE)."""
    d, c, t = 0.0, canvas, target
    for i in range(levels):
        if i:
            c, t = pyramid_down(c), pyramid_down(t)
        d = d + ((c - t) ** 2).mean((1, 2, 3))
    return d / levels
