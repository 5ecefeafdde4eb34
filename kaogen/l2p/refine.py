"""Refinement: gradient descent on a painting's strokes through the soft rasteriser, and relocation
of the strokes the painting does not show.

Strokes are optimised in logit space (so they stay in [0, 1]) with Adam on the mean squared error
between the composited canvas and the target, all strokes at once (composite_all), in their order.

An agent's painting often repeats itself: later strokes repaint earlier ones, which end up hidden.
With `relocate` on, a few times during the first half of the steps every stroke whose visible
footprint (its alpha times the transparency of all strokes above it, summed over pixels) is below
`min_visible` px is moved to the end of the order as a short, fine, opaque stroke where the painting
is most wrong, coloured as the target there; gradient descent then fits it. The best iterate (by
exact rendering error) is returned, so refining never makes a painting worse.

Host-device synchronisation: the best iterate is kept on the device (`torch.where`), and Adam's step
count is a Python int (optim.TensorAdam), so the gradient steps read nothing back; only each of the
(at most 4) relocation rounds does, a few times (how many strokes are hidden, the error map for
the CPU generator's draws): a bound per painting, whatever its stroke count or step count.
"""

from __future__ import annotations

import torch

from kaogen.l2p.optim import TensorAdam
from kaogen.l2p.stroke_model import paint_exact
from kaogen.render import strokes as S
from kaogen.render.composite import composite_all, visibility
from kaogen.render.rasterize import rasterize
from kaogen.render.soft import soft_rasterize


def _mse_exact(s: torch.Tensor, target: torch.Tensor, background: float) -> torch.Tensor:
    """() on the device of `s`: the mean squared error of the exactly rendered strokes."""
    blank = torch.full_like(target, background)[None]
    return ((paint_exact(blank, s[None])[0] - target) ** 2).mean()


def visible_area(alpha: torch.Tensor) -> torch.Tensor:
    """alpha (N, H, W) of strokes laid in order -> (N,) px each shows in the final canvas."""
    return visibility(alpha[None])[0].sum((1, 2))


def relocate_hidden(s: torch.Tensor, target: torch.Tensor, background: float, min_visible: float,
                    g: torch.Generator, radius_px: float = 1.5) -> torch.Tensor:
    """s (N, 13) -> (N, 13): hidden strokes moved to the end, re-placed where the error is largest."""
    H, W = target.shape[1:]
    s = s.detach()
    alpha = rasterize(s, H, W)
    hidden = visible_area(alpha) < min_visible
    n = int(hidden.sum())
    if n == 0:
        return s
    canvas = composite_all(torch.full_like(target, background)[None], alpha[None], S.color(s)[None])[0]
    err = ((canvas - target) ** 2).sum(0).flatten().cpu() + 1e-12     # CPU: the generator `g` is a CPU one
    pix = torch.multinomial(err, n, replacement=err.numel() < n, generator=g)
    angle = torch.rand(n, generator=g) * torch.pi
    pix, angle = pix.to(s.device), angle.to(s.device, s.dtype)       # the draws: one transfer each
    y, x = (pix // W).to(s.dtype), (pix % W).to(s.dtype)
    half = radius_px * torch.stack([angle.cos() / W, angle.sin() / H], 1)          # canvas units
    centre = torch.stack([(x + 0.5) / W, (y + 0.5) / H], 1)
    new = torch.empty(n, S.NUM_FIELDS, device=s.device, dtype=s.dtype)
    new[:, 0:2], new[:, 2:4], new[:, 4:6] = centre - half, centre, centre + half
    new[:, 6:8] = ((radius_px / min(H, W) - S.MIN_RADIUS) / S.RADIUS_SPAN)
    new[:, 8:10] = 1.0
    new[:, 10:13] = target.to(s)[:, pix // W, pix % W].T
    return torch.cat([s[~hidden], new.clamp(0, 1)])


def refine_strokes(s: torch.Tensor, target: torch.Tensor, steps: int, background: float = 1.0,
                   lr: float = 0.01, softness: float = 0.5, relocate: bool = False,
                   min_visible: float = 4.0, seed: int = 0) -> torch.Tensor:
    """s (N, 13) in [0, 1], target (3, H, W) in [0, 1] -> refined (N, 13), same N."""
    H, W = target.shape[1:]
    g = torch.Generator().manual_seed(seed)
    rounds = {int(steps * f) for f in (0.0, 0.15, 0.3, 0.45)} if relocate else set()
    best, best_err = s.detach().clone(), _mse_exact(s.detach(), target, background)
    blank = torch.full_like(target, background)[None]
    cur = s.detach()
    for i in range(steps):
        if i in rounds:
            cur = relocate_hidden(cur, target, background, min_visible, g)
        if i == 0 or i in rounds:         # relocated strokes start with fresh Adam moments
            logit = torch.logit(cur.clamp(1e-4, 1 - 1e-4)).requires_grad_(True)
            opt = TensorAdam(logit, lr=lr)
        x = torch.sigmoid(logit)
        alpha = soft_rasterize(x, H, W, softness=softness)                         # (N, H, W)
        loss = ((composite_all(blank, alpha[None], S.color(x)[None])[0] - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        cur = torch.sigmoid(logit.detach())
        if (i + 1) % 10 == 0 or i + 1 == steps:
            err = _mse_exact(cur, target, background)
            better = err < best_err                 # on the device: no read-back per check
            best, best_err = torch.where(better, cur, best), torch.minimum(err, best_err)
    return best
