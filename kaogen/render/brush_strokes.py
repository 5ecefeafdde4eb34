"""The neural-brush stroke (intrinsic style transfer): a MyPaint brush action placed in a block of the canvas.

A batch is a float tensor (..., 23) in [0, 1]:

    field             index   meaning
    bx by bs          0-2     the block: left, top (canvas units) and side (of the canvas' width / height)
    x0 ... b          3-14    Nakano's 12-number action inside the block (kaogen.ist.actions)
    n0 ... n7         15-22   the neural painter's noise, stored as Phi(z) (the normal CDF) so it lies in [0, 1]

Rendering needs the neural painter the painting was made with (its checkpoint is named in the
painting's provenance; the shipped painter of the brush otherwise): each stroke's 64 px alpha is
resized to its block at the output resolution, so a painting made at 256 px renders at any size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kaogen.errors import KaogenError

ACTION = ("x0", "y0", "x1", "y1", "x2", "y2", "p0", "p2", "size", "r", "g", "b")
NOISE = tuple(f"n{i}" for i in range(8))
FIELDS = ("bx", "by", "bs") + ACTION + NOISE
NUM_FIELDS = len(FIELDS)   # 23


def color(s: torch.Tensor) -> torch.Tensor:
    return s[..., 12:15]


def noise_to_unit(z: torch.Tensor) -> torch.Tensor:
    return (0.5 * (1 + torch.erf(z / math.sqrt(2)))).clamp(1e-6, 1 - 1e-6)


def unit_to_noise(u: torch.Tensor) -> torch.Tensor:
    return math.sqrt(2) * torch.erfinv(2 * u.clamp(1e-6, 1 - 1e-6) - 1)


def load_painter(provenance: dict, device=None):
    from pathlib import Path

    from kaogen.ist.painter import NeuralPainter, shipped_painter

    ck = provenance.get("checkpoint")
    if ck and Path(ck).is_file():
        return NeuralPainter.load(ck, device or "cpu")
    brush = provenance.get("brush")
    if not brush:
        raise KaogenError("this neural-brush painting names neither its painter checkpoint nor its brush")
    return shipped_painter(brush, device or "cpu")


@torch.no_grad()
def brush_crops(s: torch.Tensor, H: int, W: int, painter) -> list:
    """StrokeCrops (alpha in the stroke's block at H x W, top, left) of neural-brush strokes (N, 23)."""
    from kaogen.render.rasterize import StrokeCrop

    if s.shape[-1] != NUM_FIELDS:
        raise KaogenError(f"neural-brush strokes have {NUM_FIELDS} fields, got {s.shape[-1]}")
    dev = next(painter.gen.parameters()).device
    s = s.to(dev)
    z = unit_to_noise(s[:, 15:15 + painter.gen.noise])
    alpha = torch.cat([painter(s[i:i + 512, 3:12], z[i:i + 512]) for i in range(0, len(s), 512)]) if len(s) else s.new_zeros(0, 64, 64)
    out = []
    for i, row in enumerate(s.tolist()):
        bx, by, bs = row[:3]
        top, left = int(round(by * H)), int(round(bx * W))
        h, w = max(1, int(round(bs * H))), max(1, int(round(bs * W)))
        a = F.interpolate(alpha[i][None, None], size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0, 0]
        out.append(StrokeCrop(a[: max(0, H - top), : max(0, W - left)], top, left))
    return out
