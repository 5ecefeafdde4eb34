"""Compositing as in Learning to Paint: each stroke is laid over the canvas with its alpha.

    canvas <- canvas * (1 - alpha) + alpha * colour

canvas (B, 3, H, W) in [0, 1]; alpha (B, H, W) or (B, K, H, W) for K strokes laid in order;
colour (B, 3) or (B, K, 3).
"""

from __future__ import annotations

import torch


def composite(canvas: torch.Tensor, alpha: torch.Tensor, color: torch.Tensor) -> torch.Tensor:
    """Lay one stroke (alpha (B, H, W), colour (B, 3)) or K strokes in order ((B, K, H, W), (B, K, 3))."""
    if alpha.dim() == 4:
        for k in range(alpha.shape[1]):
            canvas = composite(canvas, alpha[:, k], color[:, k])
        return canvas
    if canvas.dim() != 4 or canvas.shape[1] != 3:
        raise ValueError(f"canvas must be (B, 3, H, W), got {tuple(canvas.shape)}")
    a = alpha[:, None]                                                  # (B, 1, H, W)
    return canvas * (1 - a) + a * color[:, :, None, None]


def composite_crop_(canvas: torch.Tensor, alpha: torch.Tensor, color: torch.Tensor, top: int, left: int) -> None:
    """In place, one stroke on one canvas (3, H, W) inside its window: alpha (h, w), colour (3,)."""
    h, w = alpha.shape
    region = canvas[:, top:top + h, left:left + w]
    region.mul_(1 - alpha).add_(alpha * color[:, None, None])
