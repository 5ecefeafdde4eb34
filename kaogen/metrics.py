"""Image similarity for painting quality reports: PSNR, SSIM, and the block-mosaic baseline.

Images are float (B, 3, H, W) in [0, 1]; every function returns a (B,) tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB (peak 1)."""
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp(min=1e-10)
    return -10 * torch.log10(mse)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM (11 x 11 Gaussian window, as Wang et al. 2004), via kornia."""
    from kornia.metrics import ssim as kssim

    return kssim(a, b, window_size=11).flatten(1).mean(1)


def mosaic(x: torch.Tensor, blocks: int) -> torch.Tensor:
    """The blocks x blocks mosaic of x (block means), upsampled back: the baseline a painting should beat."""
    H, W = x.shape[-2:]
    small = F.adaptive_avg_pool2d(x, blocks)
    return F.interpolate(small, size=(H, W), mode="nearest")
