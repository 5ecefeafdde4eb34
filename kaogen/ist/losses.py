"""Content losses for intrinsic style transfer: LPIPS when its weights are on disk, an offline loss otherwise.

    loss = content_loss("auto")      # LPIPS (AlexNet) if usable offline, else "offline"
    value = loss(canvas, target)     # (B, 3, H, W) in [0, 1] -> scalar

"offline" needs no pretrained weights: mean squared error at three scales (full, 1/2, 1/4), plus
0.1 x (1 - SSIM) (11 px Gaussian window, sigma 1.5) for local structure, plus 0.05 x L1 between
Sobel edge maps so that outlines (eyes, hairlines) are drawn. SSIM and Sobel are kornia's
definitions (ssim_loss, sobel; tested equal), computed here with their kernels built once per
device: kornia builds them with host-to-device copies at every call, three per optimisation step. LPIPS needs torchvision's AlexNet
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


_KERNELS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _kernels(device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(Gaussian window (11,) sigma 1.5, sum 1; Sobel x / y (2, 1, 3, 3) normalised by 8), once per device."""
    key = (torch.device(device), dtype)
    if key not in _KERNELS:
        g = torch.exp(-(torch.arange(11, dtype=torch.float64) - 5) ** 2 / (2 * 1.5 ** 2))
        kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
        _KERNELS[key] = ((g / g.sum()).to(device, dtype), torch.stack([kx, kx.T])[:, None].to(device, dtype))
    return _KERNELS[key]


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian of (N, 1, H, W), reflection padding (same size)."""
    k = len(g) // 2
    x = F.conv2d(F.pad(x, (k, k, 0, 0), mode="reflect"), g.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, k, k), mode="reflect"), g.view(1, 1, -1, 1))


def ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean(clamp((1 - SSIM) / 2, 0, 1)), 11 px window (kornia.losses.ssim_loss(x, y, 11))."""
    B, C, H, W = x.shape
    g, _ = _kernels(x.device, x.dtype)
    a, b = x.reshape(B * C, 1, H, W), y.reshape(B * C, 1, H, W)
    mu_a, mu_b = _blur(a, g), _blur(b, g)
    s_aa, s_bb, s_ab = _blur(a * a, g) - mu_a ** 2, _blur(b * b, g) - mu_b ** 2, _blur(a * b, g) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim = (2 * mu_a * mu_b + c1) * (2 * s_ab + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (s_aa + s_bb + c2) + 1e-12)
    return ((1 - ssim) / 2).clamp(0, 1).mean()


def sobel(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Sobel gradient magnitude per channel, replicate padding (kornia.filters.sobel)."""
    B, C, H, W = x.shape
    _, k = _kernels(x.device, x.dtype)
    grad = F.conv2d(F.pad(x.reshape(B * C, 1, H, W), (1, 1, 1, 1), mode="replicate"), k)   # (B C, 2, H, W)
    return torch.sqrt(grad.square().sum(1) + eps).view(B, C, H, W)


def offline_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    loss = F.mse_loss(x, y)
    for s in (2, 4):
        loss = loss + F.mse_loss(F.avg_pool2d(x, s), F.avg_pool2d(y, s))
    loss = loss + 0.1 * ssim_loss(x, y)
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
