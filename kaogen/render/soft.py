"""Differentiable soft rasteriser: stroke alpha with gradients for every stroke parameter.

The exact rasteriser's edge is ramp(x) = clamp(x + 1/2, 0, 1) with x = radius - distance (px).
Here it is convolved with a logistic of scale `softness` (px):

    soft_ramp(x) = s * softplus((x + 1/2) / s) - s * softplus((x - 1/2) / s)

which tends to the exact ramp as s -> 0 (|difference| <= 2 s log 2), has non-zero slope everywhere
(gradients reach strokes that miss their target by a few pixels), and lies in [0, 1].
Gradients flow to points, radii and opacities through the distance field; colour enters in
compositing. Windows (from detached parameters) carry a margin of 8 * softness px, beyond which the
logistic tail is below 4e-4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kaogen.device import float32_region
from kaogen.render import strokes as S
from kaogen.render.coverage import alpha_in_windows, full_windows, hard_ramp, stroke_windows
from kaogen.render.rasterize import _place, use_dense


def soft_ramp(x: torch.Tensor, softness: float) -> torch.Tensor:
    if softness <= 0:
        return hard_ramp(x.clone())
    return softness * (F.softplus((x + 0.5) / softness) - F.softplus((x - 0.5) / softness))


def soft_rasterize(s: torch.Tensor, H: int, W: int | None = None, softness: float = 0.5,
                   margin: float | None = None, dense: bool | None = None) -> torch.Tensor:
    """Full-canvas, differentiable alpha of every stroke.

    Args:
        s:         (..., 13) strokes (requires_grad as needed)
        H, W:      canvas size in pixels (W defaults to H)
        softness:  logistic scale of the edge in px (0 gives the exact rasteriser's values)
        margin:    px around each stroke's box that is evaluated (default 1 + 8 * softness); the
                   alpha beyond it is taken as 0. A margin >= the canvas size evaluates every pixel,
                   which makes alpha exactly continuous in the parameters (gradcheck).
        dense:     evaluate every pixel, with no host read-back of the windows (None: on an
                   accelerator when it is small, see rasterize.use_dense; values then equal a
                   margin >= the canvas size)
    Returns:
        (..., H, W) alpha in [0, 1], in the strokes' dtype (computed in float32 or float64, see rasterize.py)
    """
    W = H if W is None else W
    lead = s.shape[:-1]
    flat = S.check_strokes(s, finite=False).reshape(-1, S.NUM_FIELDS)
    with float32_region(s.device):                   # float32 (float64 for float64 strokes), never autocast
        flat = flat.to(S.compute_dtype(flat))        # differentiable: float16 strokes get float16 gradients
        if use_dense(flat, H, W, dense):
            a = alpha_in_windows(flat, full_windows(flat, H, W), H, W, lambda x: soft_ramp(x, softness), eps=1e-8)
            return a.to(s.dtype).reshape(*lead, H, W)
        win = stroke_windows(flat, H, W, margin=1.0 + 8.0 * softness if margin is None else margin)
        a = alpha_in_windows(flat, win, H, W, lambda x: soft_ramp(x, softness), eps=1e-8)
        return _place(a, win, H, W).to(s.dtype).reshape(*lead, H, W)
