"""Content losses for intrinsic style transfer: LPIPS when its weights are on disk, an offline loss otherwise.

    loss = content_loss("auto")      # LPIPS (AlexNet) if usable offline, else "offline"
    value = loss(canvas, target)     # (B, 3, H, W) in [0, 1] -> scalar

"offline" needs no pretrained weights: mean squared error at three scales (full, 1/2, 1/4), plus
0.1 x (1 - SSIM) (kornia, 11 px window) for local structure, plus 0.05 x L1 between Sobel edge
maps (kornia) so that outlines (eyes, hairlines) are drawn. LPIPS needs torchvision's AlexNet
ImageNet weights (alexnet-owt-7be5be79.pth in $TORCH_HOME/hub/checkpoints) besides the lpips
package's own linear layers; kaogen never downloads them at run time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from kaogen.errors import KaogenError

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


def offline_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    from kornia.filters import sobel
    from kornia.losses import ssim_loss

    loss = F.mse_loss(x, y)
    for s in (2, 4):
        loss = loss + F.mse_loss(F.avg_pool2d(x, s), F.avg_pool2d(y, s))
    loss = loss + 0.1 * ssim_loss(x, y, window_size=11)
    return loss + 0.05 * F.l1_loss(sobel(x), sobel(y))


def alexnet_weights() -> Path | None:
    home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    p = home / "hub" / "checkpoints" / ALEXNET_FILE
    return p if p.is_file() else None


def lpips_loss(device="cpu") -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if alexnet_weights() is None:
        raise KaogenError(f"LPIPS needs torchvision's AlexNet weights ({ALEXNET_FILE} in $TORCH_HOME/hub/checkpoints); "
                          "use --loss offline")
    import lpips

    net = lpips.LPIPS(net="alex", verbose=False).to(device).eval().requires_grad_(False)
    return lambda x, y: net(x * 2 - 1, y * 2 - 1).mean() + F.mse_loss(x, y)


def content_loss(kind: str = "auto", device="cpu") -> tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """(name actually used, loss function)."""
    if kind == "offline" or (kind == "auto" and alexnet_weights() is None):
        return "offline", offline_loss
    if kind in ("auto", "lpips"):
        return "lpips", lpips_loss(device)
    raise KaogenError(f"unknown content loss {kind!r}: use auto, lpips or offline")
