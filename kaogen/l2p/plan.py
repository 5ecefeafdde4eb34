"""Planning one action: a few gradient steps on the agent's strokes through the stroke model.

    a, after = plan_action(model, canvas, target, a, steps=10, levels=4)

The agent proposes an action in one forward pass; its strokes are near, not at, the best they could
be (an amortisation gap). Planning climbs the decibels gained over a `levels`-level pyramid
(distance.py: the shipped agent's reward; used whatever reward an agent was trained on) through
the differentiable stroke model, from the proposed strokes, before they are laid. It sees only
this action and the current canvas: unlike `--refine` (all strokes of the painting at once, after
the agent), it costs a few small renders per action.
Each image keeps whichever of proposed and planned action gains more under the exact rasteriser,
so planning never makes an action worse. Nothing here reads a value back to the host: the choice is
a `torch.where`, so planning adds no host-device synchronisation to a painting.

canvas, target (B, 3, S, S) in [0, 1]; a (B, K, 13) in [0, 1] -> the action (B, K, 13) in [0, 1] and
the canvas it paints (B, 3, S, S), exactly rasterised.
"""

from __future__ import annotations

import torch

from kaogen.l2p.distance import pyramid_distance
from kaogen.l2p.optim import TensorAdam
from kaogen.l2p.stroke_model import StrokeModel, paint_exact


def plan_action(model: StrokeModel, canvas: torch.Tensor, target: torch.Tensor, a: torch.Tensor, steps: int,
                levels: int = 4, lr: float = 0.02) -> tuple[torch.Tensor, torch.Tensor]:
    if steps <= 0:
        return a, paint_exact(canvas, a)
    with torch.enable_grad():
        x = a.detach().clone().requires_grad_(True)
        opt = TensorAdam(x, lr=lr)               # torch's Adam, without its per-step .item()
        for _ in range(steps):
            # minimising log d(after) is maximising the decibels gained (d(before) is a constant)
            loss = pyramid_distance(model.paint(canvas, x), target, levels).clamp_min(1e-8).log().sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                x.clamp_(0, 1)
    x = x.detach()
    with torch.no_grad():
        planned, proposed = paint_exact(canvas, x), paint_exact(canvas, a)
        better = pyramid_distance(planned, target, levels) < pyramid_distance(proposed, target, levels)
    return torch.where(better[:, None, None], x, a), torch.where(better[:, None, None, None], planned, proposed)
