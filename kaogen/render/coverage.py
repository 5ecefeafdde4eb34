"""Stroke coverage: how much of each pixel a stroke covers, times its opacity there.

Model (in pixels of an H x W canvas, pixel centres at i + 1/2). The stroke's centre line is the
quadratic Bézier

    B(t) = P0 + 2 t a + t^2 b,   a = P1 - P0,   b = P0 - 2 P1 + P2,   t in [0, 1]

with radius r(t) and opacity w(t) linear in t. For a pixel p let t* be the parameter of the
closest point of the curve and d = |B(t*) - p|. Then

    alpha(p) = ramp(r(t*) - d) * w(t*)

`ramp` is the anti-aliasing edge: the exact rasteriser uses clamp(x + 1/2, 0, 1) (the area a
straight edge covers in a pixel), the soft rasteriser a smoothed copy of it (soft.py). The ends of
the stroke are round caps (t* clamps to 0 or 1).

t* is found analytically: d|B(t) - p|^2/dt = 0 is a cubic in t, solved with Cardano's formula
(one or three real roots), the roots clamped to [0, 1], the closest one kept and polished by one
Newton step (float32 Cardano alone strays up to 0.26 px on some bent strokes at 128 px; with the
step, within 1e-5 px of a dense float64 search, straight strokes included). The cost per pixel is fixed, whatever the stroke's length or the
resolution, and coverage is evaluated only inside each stroke's bounding window.

t* is computed without gradients; d, r(t*), w(t*) are then evaluated with them, and t* gets its
gradient from the implicit function theorem (it moves with the curve, carrying r(t*) and w(t*)
along). Where two arms of a bent, tapered stroke are equally close, t* jumps and alpha with it:
the model is continuous everywhere else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from kaogen.render import strokes as S


@dataclass
class Windows:
    """Per-stroke pixel windows of one common size: rows top..top+h, columns left..left+w."""
    top: torch.Tensor    # (M,) long
    left: torch.Tensor   # (M,) long
    h: int
    w: int


def stroke_windows(s: torch.Tensor, H: int, W: int, margin: float = 1.0) -> Windows:
    """The smallest common window size holding every stroke's bounding box (+ margin px).

    A quadratic Bézier lies inside the triangle of its control points, so the box of the three
    points grown by the largest radius bounds the stroke. Windows are shifted to stay inside the canvas.
    """
    s = s.detach()
    p0, p1, p2 = S.points(s)
    pts = torch.stack([p0, p1, p2], dim=1)                                          # (M, 3, 2)
    scale = torch.tensor([W, H], dtype=s.dtype, device=s.device)
    grow = S.radius(s).amax(-1, keepdim=True) * min(H, W) + margin                  # (M, 1)
    lo = torch.floor(pts.amin(1) * scale - grow).clamp(min=0)
    hi = torch.minimum(torch.ceil(pts.amax(1) * scale + grow), scale)
    size = (hi - lo).clamp(min=1)
    w = min(max(int(size[:, 0].max()), 1), W) if len(s) else 1
    h = min(max(int(size[:, 1].max()), 1), H) if len(s) else 1
    left = lo[:, 0].clamp(max=W - w).long()
    top = lo[:, 1].clamp(max=H - h).long()
    return Windows(top=top, left=left, h=h, w=w)


def _curve_px(s: torch.Tensor, H: int, W: int):
    """P0, a, b of every stroke in pixels, each (M, 2)."""
    p0, p1, p2 = S.points(s)
    scale = torch.tensor([W, H], dtype=s.dtype, device=s.device)
    p0, p1, p2 = p0 * scale, p1 * scale, p2 * scale
    return p0, p1 - p0, p0 - 2 * p1 + p2


def _e(v: torch.Tensor) -> torch.Tensor:
    return v[:, None, None]


@torch.no_grad()
def closest_parameter(s: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """t* of the closest curve point for every pixel.

    Args:  s (M, 13); xs (M, 1, w) and ys (M, h, 1) pixel-centre coordinates in px.
    Returns: (M, h, w) in [0, 1].
    """
    p0, a, b = _curve_px(s, H, W)
    ax, ay, bx, by = _e(a[:, 0]), _e(a[:, 1]), _e(b[:, 0]), _e(b[:, 1])
    dx, dy = _e(p0[:, 0]) - xs, _e(p0[:, 1]) - ys                                   # (M,1,w), (M,h,1): P0 - p

    # Cubic t^3 + 3 kx t^2 + 3 ky t + kz = 0 (the derivative of |B(t) - p|^2 over 4|b|^2).
    kk = 1.0 / (b * b).sum(-1).clamp(min=1e-8)
    kx = _e((a * b).sum(-1) * kk)
    ky = _e(kk) * (2 * _e((a * a).sum(-1)) + (dx * bx + dy * by)) / 3              # (M, h, w)
    kz = _e(kk) * (dx * ax + dy * ay)
    # Depressed: with t = u - kx, u^3 + 3 P u + Q = 0.
    P = ky - kx * kx
    Q = kx * (2 * kx * kx - 3 * ky) + kz
    D = Q * Q + 4 * P * P * P
    one_root = D >= 0
    sq = torch.sqrt(D.clamp(min=0))
    r1, r2 = (sq - Q) / 2, (-sq - Q) / 2
    t_one = torch.sign(r1) * r1.abs().pow(1 / 3) + torch.sign(r2) * r2.abs().pow(1 / 3) - kx
    z = torch.sqrt((-P).clamp(min=1e-30))
    phi = torch.acos((-Q / (2 * z * z * z)).clamp(-1.0, 1.0)) / 3
    cands = [torch.where(one_root, t_one, 2 * z * torch.cos(phi + k * 2 * math.pi / 3) - kx) for k in range(3)]

    best_t, best_d2 = None, None
    for t in cands:
        t = t.clamp(0.0, 1.0)
        qx = dx + (2 * ax + bx * t) * t
        qy = dy + (2 * ay + by * t) * t
        d2 = qx * qx + qy * qy
        if best_t is None:
            best_t, best_d2 = t, d2
        else:
            closer = d2 < best_d2
            best_t, best_d2 = torch.where(closer, t, best_t), torch.minimum(d2, best_d2)
    # One Newton step on d/dt |B(t) - p|^2 = 0, kept only where it gets closer.
    t = best_t
    qx, qy = dx + (2 * ax + bx * t) * t, dy + (2 * ay + by * t) * t
    tx, ty = 2 * (ax + bx * t), 2 * (ay + by * t)
    f1 = qx * tx + qy * ty
    f2 = tx * tx + ty * ty + 2 * (qx * bx + qy * by)
    tn = (t - f1 / f2.clamp(min=1e-9)).clamp(0.0, 1.0)
    qx, qy = dx + (2 * ax + bx * tn) * tn, dy + (2 * ay + by * tn) * tn
    return torch.where((qx * qx + qy * qy < best_d2) & (f2 > 1e-9), tn, t)


def alpha_in_windows(
    s: torch.Tensor,
    win: Windows,
    H: int,
    W: int,
    ramp: Callable[[torch.Tensor], torch.Tensor],
    eps: float = 0.0,
) -> torch.Tensor:
    """Coverage x opacity of each stroke in its window.

    Args:
        s:     (M, 13) strokes (gradients flow to every field but the colour)
        win:   windows from `stroke_windows`
        ramp:  edge profile applied to radius - distance, in px
        eps:   added under the square root (> 0 keeps gradients finite at distance 0)
    Returns:
        (M, win.h, win.w) alpha in [0, 1]
    """
    xs = (win.left.to(s.dtype)[:, None] + torch.arange(win.w, device=s.device, dtype=s.dtype) + 0.5)[:, None, :]
    ys = (win.top.to(s.dtype)[:, None] + torch.arange(win.h, device=s.device, dtype=s.dtype) + 0.5)[:, :, None]
    return alpha_at(s, xs, ys, H, W, ramp, eps)


def alpha_at(s: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, H: int, W: int,
             ramp: Callable[[torch.Tensor], torch.Tensor], eps: float = 0.0) -> torch.Tensor:
    """Coverage x opacity of stroke m at pixel centres (xs[m], ys[m]) (px; (M, h, 1) / (M, 1, w) grids
    or any shapes that broadcast to (M, h, w)). Returns (M, h, w)."""
    t = closest_parameter(s.detach(), xs, ys, H, W)                                # (M, h, w)
    p0, a, b = _curve_px(s, H, W)
    if s.requires_grad:
        t = _implicit_gradient(t, p0, a, b, xs, ys)
    qx = _e(p0[:, 0]) - xs + (2 * _e(a[:, 0]) + _e(b[:, 0]) * t) * t
    qy = _e(p0[:, 1]) - ys + (2 * _e(a[:, 1]) + _e(b[:, 1]) * t) * t
    d2 = qx * qx + qy * qy
    d = torch.sqrt(d2 + eps) if eps > 0 else torch.sqrt(d2)
    rad = S.radius(s) * min(H, W)                                                   # (M, 2) px
    op = S.opacity(s)
    r = _e(rad[:, 0]) + (_e(rad[:, 1]) - _e(rad[:, 0])) * t
    w = _e(op[:, 0]) + (_e(op[:, 1]) - _e(op[:, 0])) * t
    return ramp(r - d) * w


def _implicit_gradient(t, p0, a, b, xs, ys):
    """Give t* its gradient by the implicit function theorem; its value is unchanged.

    t* solves g(t) = (B(t) - p) . B'(t) = 0, so dt*/dtheta = -(dg/dtheta) / (dg/dt). Tapered strokes
    need it: r(t*) and w(t*) move with t*. Where t* is clamped to an end (0 or 1) it does not move.
    """
    qx = _e(p0[:, 0]) - xs + (2 * _e(a[:, 0]) + _e(b[:, 0]) * t) * t
    qy = _e(p0[:, 1]) - ys + (2 * _e(a[:, 1]) + _e(b[:, 1]) * t) * t
    tx, ty = 2 * (_e(a[:, 0]) + _e(b[:, 0]) * t), 2 * (_e(a[:, 1]) + _e(b[:, 1]) * t)
    g = qx * tx + qy * ty
    gt = (tx * tx + ty * ty + 2 * (qx * _e(b[:, 0]) + qy * _e(b[:, 1]))).detach()
    interior = (t > 0) & (t < 1) & (gt > 1e-6)
    step = torch.where(interior, -g / gt.clamp(min=1e-6), torch.zeros_like(g))
    return t + (step - step.detach())


def hard_ramp(x: torch.Tensor) -> torch.Tensor:
    """The exact edge: a one-pixel linear ramp centred on the stroke's outline."""
    return (x + 0.5).clamp(0.0, 1.0)
