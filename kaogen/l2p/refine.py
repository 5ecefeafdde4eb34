"""Refinement: gradient descent on a painting's strokes through the soft rasteriser.

Strokes are optimised in logit space (so they stay in [0, 1]) with Adam on the mean squared error
between the composited canvas and the target, all strokes at once, their order kept. The soft
rasteriser's smooth edge lets strokes that miss by a few pixels move toward their place. The best
iterate (by exact rendering error) is returned, so refining never makes a painting worse.
"""

from __future__ import annotations

import torch

from kaogen.render import strokes as S
from kaogen.render.composite import composite
from kaogen.render.soft import soft_rasterize
from kaogen.l2p.stroke_model import paint_exact


def _mse_exact(s: torch.Tensor, target: torch.Tensor, background: float) -> float:
    blank = torch.full_like(target, background)[None]
    return ((paint_exact(blank, s[None])[0] - target) ** 2).mean().item()


def refine_strokes(s: torch.Tensor, target: torch.Tensor, steps: int, background: float = 1.0,
                   lr: float = 0.01, softness: float = 0.5) -> torch.Tensor:
    """s (N, 13) in [0, 1], target (3, H, W) in [0, 1] -> refined (N, 13)."""
    H, W = target.shape[1:]
    logit = torch.logit(s.detach().clamp(1e-4, 1 - 1e-4)).requires_grad_(True)
    opt = torch.optim.Adam([logit], lr=lr)
    best, best_err = s.detach().clone(), _mse_exact(s.detach(), target, background)
    blank = torch.full_like(target, background)[None]
    for i in range(steps):
        cur = torch.sigmoid(logit)
        alpha = soft_rasterize(cur, H, W, softness=softness)                       # (N, H, W)
        canvas = composite(blank, alpha[None], S.color(cur)[None])
        loss = ((canvas[0] - target) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (i + 1) % 10 == 0 or i + 1 == steps:
            cand = torch.sigmoid(logit.detach())
            err = _mse_exact(cand, target, background)
            if err < best_err:
                best, best_err = cand.clone(), err
    return best
