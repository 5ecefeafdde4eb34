"""Compositing as in Learning to Paint: each stroke is laid over the canvas with its alpha.

    canvas <- canvas * (1 - alpha) + alpha * colour

canvas (B, 3, H, W) in [0, 1]; alpha (B, H, W) or (B, K, H, W) for K strokes laid in order;
colour (B, 3) or (B, K, 3). `composite_all` gives the same result for K strokes in closed form (no
loop over strokes, so its backward pass is short): what optimisation over hundreds of strokes uses.
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


def visibility(alpha: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) alpha of strokes laid in order -> (B, K, H, W): how much of each stroke shows in the
    end, alpha_k * prod_{j > k} (1 - alpha_j)."""
    clear = (1 - alpha).flip(1).cumprod(1).flip(1)                      # prod_{j >= k} (1 - alpha_j)
    return alpha * torch.cat([clear[:, 1:], torch.ones_like(clear[:, :1])], 1)


def composite_all(canvas: torch.Tensor, alpha: torch.Tensor, color: torch.Tensor) -> torch.Tensor:
    """K strokes at once: canvas (B, 3, H, W), alpha (B, K, H, W), colour (B, K, 3) -> (B, 3, H, W).

    canvas * prod_k (1 - alpha_k) + sum_k visibility_k * colour_k, equal to composite() up to rounding.
    """
    shown = visibility(alpha)
    left = 1 - shown.sum(1, keepdim=True)         # = prod_k (1 - alpha_k): the canvas that still shows
    return canvas * left + torch.einsum("bkhw,bkc->bchw", shown, color)
