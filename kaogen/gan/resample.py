"""Aligned resampling for StyleGAN2: upfirdn2d (upsample, FIR filter, downsample) in pure PyTorch.

    upfirdn2d(x, f, up=1, down=1, pad=(0, 0, 0, 0), gain=1)   x (B, C, H, W) -> (B, C, H', W')
        H' = (H * up + pad_top + pad_bottom - len(f) + 1) // down      (the same for W)

Upsampling inserts up - 1 zeros after every sample (a signal of H * up samples), pads (negative
pads crop), filters with the separable FIR `f` (1-D, normalised to sum 1, applied along both axes,
times `gain`), then keeps every `down`-th sample. This is the operation StyleGAN2's networks are
built on; the previous nearest-neighbour-then-blur upsampler had an effective [1, 4, 6, 4, 1]
kernel and moved the image by half a pixel at every doubling.

The StyleGAN2 uses, with f = [1, 3, 3, 1] / 8 (FIR):
    upsample2d(x)        up 2, pad (2, 1), gain 4 (2 ** 2: the zeros inserted)   -> (2H, 2W), aligned
    downsample2d(x)      pad (1, 1), down 2                                       -> (H/2, W/2), aligned
    conv + up (3 x 3)    transposed convolution, stride 2, then FIR with pad (1, 1), gain 4 (networks.py)
    conv + down (3 x 3)  FIR with pad (2, 2), then a stride-2 convolution without padding
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FIR = (1.0, 3.0, 3.0, 1.0)


def setup_filter(taps=FIR, device=None) -> torch.Tensor:
    """1-D float32 filter normalised to sum 1."""
    f = torch.as_tensor(taps, dtype=torch.float32, device=device)
    return f / f.sum()


def _fir(x: torch.Tensor, f: torch.Tensor, gain: float) -> torch.Tensor:
    """Separable 'valid' FIR filtering of (B, C, H, W) with 1-D `f` along W then H."""
    C = x.shape[1]
    f = (f * gain ** 0.5).to(x.dtype).flip(0)          # convolution, not correlation (symmetric filters: same)
    k = len(f)
    x = F.conv2d(x, f.view(1, 1, 1, k).expand(C, 1, 1, k), groups=C)
    return F.conv2d(x, f.view(1, 1, k, 1).expand(C, 1, k, 1), groups=C)


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """x (B, C, H, W); pad = (left, right, top, bottom), negative crops. See the module docstring."""
    B, C, H, W = x.shape
    if up > 1:                                           # zero insertion: each sample followed by up - 1 zeros
        x = x.reshape(B, C, H, 1, W, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(B, C, H * up, W * up)
    left, right, top, bottom = pad
    x = F.pad(x, (max(left, 0), max(right, 0), max(top, 0), max(bottom, 0)))
    x = x[:, :, max(-top, 0): x.shape[2] - max(-bottom, 0), max(-left, 0): x.shape[3] - max(-right, 0)]
    x = _fir(x, f if f.device == x.device else f.to(x.device), gain)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor | None = None, up: int = 2) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, up H, up W), aligned: the input sample i sits at output (i + 1/2) up - 1/2."""
    f = setup_filter(device=x.device) if f is None else f
    k = len(f)
    return upfirdn2d(x, f, up=up, pad=((k + up - 1) // 2, (k - up) // 2) * 2, gain=up ** 2)


def downsample2d(x: torch.Tensor, f: torch.Tensor | None = None, down: int = 2) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H / down, W / down), aligned (the adjoint of upsample2d up to the gain)."""
    f = setup_filter(device=x.device) if f is None else f
    k = len(f)
    return upfirdn2d(x, f, down=down, pad=((k - down + 1) // 2, (k - down) // 2) * 2)


def legacy_upsample2d(x: torch.Tensor) -> torch.Tensor:
    """kaogen <= 0.1's upsampler (nearest neighbour, then the [1, 3, 3, 1] blur with reflection
    padding (1, 2)): shifted by half a pixel per doubling. Kept only so that generators trained with
    it (`NetworkConfig.resample = "legacy"`, e.g. the shipped few-shot generator) still sample as trained."""
    f = setup_filter(device=x.device).to(x.dtype)
    C = x.shape[1]
    x = F.pad(F.interpolate(x, scale_factor=2, mode="nearest"), (1, 2, 1, 2), mode="reflect")
    x = F.conv2d(x, f.view(1, 1, 1, 4).expand(C, 1, 1, 4), groups=C)
    return F.conv2d(x, f.view(1, 1, 4, 1).expand(C, 1, 4, 1), groups=C)
