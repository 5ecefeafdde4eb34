"""The neural-brush stroke (intrinsic style transfer): a MyPaint brush action placed in a block of the canvas.

A batch is a float tensor (..., 23) in [0, 1]:

    field             index   meaning
    bx by bs          0-2     the block: left, top (canvas units) and side (of the canvas' width / height)
    x0 ... b          3-14    Nakano's 12-number action inside the block (kaogen.ist.actions)
    n0 ... n7         15-22   the neural painter's noise, stored as Phi(z) (the normal CDF) so it lies in [0, 1]

Rendering needs the neural painter the painting was made with (its checkpoint is named in the
painting's provenance; the shipped painter of the brush otherwise): each stroke's 64 px alpha is
resized to its block at the output resolution, so a painting made at 256 px renders at any size.
The renderer does not know how to load painters: a painting carries its painter (`painter=`), or the
loader registered for its stroke kind (`register_brush`) loads it; `import kaogen.ist.brush_kind`
registers intrinsic style transfer's (the CLI does).
"""

from __future__ import annotations

import math
from typing import Callable

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


# stroke kind -> loader(provenance, device) -> painter. The renderer owns this seam and imports no
# painter itself: the package that trains painters registers its loader (kaogen/ist/brush_kind.py).
_LOADERS: dict[str, Callable[[dict, torch.device], object]] = {}
_PROVIDERS = {"neural-brush": "kaogen.ist.brush_kind"}     # what to import, named in the error only


def register_brush(kind: str, loader: Callable[[dict, torch.device], object]) -> None:
    """Make paintings of stroke kind `kind` renderable without a painter attached: `loader(provenance,
    device)` returns the painter (a callable (shape (n, 9), z (n, noise)) -> alpha (n, 64, 64) with a
    `gen` module) that the painting's provenance names, on `device`. Registering again replaces it."""
    if not callable(loader):
        raise KaogenError(f"the loader registered for {kind!r} strokes must be callable")
    _LOADERS[kind] = loader


def brush_loader(kind: str) -> Callable[[dict, torch.device], object]:
    try:
        return _LOADERS[kind]
    except KeyError:
        where = _PROVIDERS.get(kind)
        hint = f"import {where} first (the kaogen CLI does)" if where else "register one with register_brush()"
        raise KaogenError(f"rendering {kind} strokes needs their painter and no loader for {kind!r} is registered: "
                          f"{hint}, or pass the loaded painter as Painting(..., painter=...)") from None


def load_painter(provenance: dict, device=None, kind: str = "neural-brush"):
    """The painter a painting of `kind` was made with, through the registered loader, on `device`."""
    return brush_loader(kind)(provenance, torch.device(device if device is not None else "cpu"))


def _painter_device(painter) -> torch.device:
    gen = getattr(painter, "gen", None)
    for p in (gen.parameters() if gen is not None else ()):
        return p.device
    return torch.device("cpu")


@torch.no_grad()
def brush_crops(s: torch.Tensor, H: int, W: int, painter, device=None) -> list:
    """StrokeCrops (alpha in the stroke's block at H x W, top, left) of neural-brush strokes (N, 23),
    on `device` (default: the strokes' device), wherever the painter is.

    Host transfers: the blocks of all strokes in one, the painter's alphas to `device` in one.
    """
    from kaogen.render.rasterize import StrokeCrop

    if not isinstance(s, torch.Tensor) or s.dim() != 2 or s.shape[-1] != NUM_FIELDS:
        raise KaogenError(f"neural-brush strokes are (N, {NUM_FIELDS}), got {tuple(getattr(s, 'shape', ()))}")
    out_dev = s.device if device is None else torch.device(device)
    s = s.float()
    blocks = torch.cat([s[:, :3], torch.isfinite(s).all(-1, keepdim=True).float()], 1).tolist()
    if not all(row[3] for row in blocks):
        raise KaogenError(f"neural-brush strokes {tuple(s.shape)} hold NaN or infinite values")
    if not len(s):
        return []
    sp = s.to(_painter_device(painter))
    z = unit_to_noise(sp[:, 15:15 + painter.gen.noise])
    alpha = torch.cat([painter(sp[i:i + 512, 3:12], z[i:i + 512]) for i in range(0, len(sp), 512)])
    alpha = alpha.to(device=out_dev, dtype=torch.float32)                          # one copy, not one per stroke
    out = []
    for i, (bx, by, bs, _) in enumerate(blocks):
        top, left = int(round(by * H)), int(round(bx * W))
        h, w = max(1, int(round(bs * H))), max(1, int(round(bs * W)))
        a = F.interpolate(alpha[i][None, None], size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0, 0]
        out.append(StrokeCrop(a[: max(0, H - top), : max(0, W - left)], top, left))
    return out
