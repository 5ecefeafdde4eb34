"""Refine and plan at their boundaries, found by mutation testing (benchmarks/mutation.sh): refine
returns its best iterate (not its last), checks the last step even when the step count is not a
multiple of 10, and plan keeps the proposed action when it is already the best."""

from __future__ import annotations

import torch

from kaogen.l2p.config import AgentConfig
from kaogen.l2p.plan import plan_action
from kaogen.l2p.refine import _mse_exact, refine_strokes
from kaogen.l2p.stroke_model import StrokeModel, paint_exact
from kaogen.render.strokes import random_strokes


def _exact_target(s: torch.Tensor, size: int = 16, background: float = 1.0) -> torch.Tensor:
    return paint_exact(torch.full((1, 3, size, size), background), s[None])[0]


def test_refine_returns_its_best_iterate_not_its_last():
    """A painting that already is its target cannot be improved: refine must hand it back unchanged,
    whatever its steps do to the strokes (lr 1.0 moves them far)."""
    s = random_strokes(6, torch.Generator().manual_seed(3))
    target = _exact_target(s)
    for steps in (5, 10, 23):
        out = refine_strokes(s, target, steps=steps, lr=1.0)
        assert torch.equal(out, s), steps
    out = refine_strokes(s, _exact_target(s, background=0.0), steps=12, lr=1.0, background=0.0, relocate=True)
    assert torch.equal(out, s)


def test_refine_checks_its_last_step_whatever_the_step_count():
    g = torch.Generator().manual_seed(0)
    target = torch.ones(3, 16, 16)
    target[:, 4:12, 4:12] = torch.tensor([0.2, 0.3, 0.6])[:, None, None]
    s = random_strokes(6, g, max_radius=0.4)
    before = float(_mse_exact(s, target, 1.0))
    for steps in (1, 7, 13):            # 1 and 7: only the last step is checked; 13: the 10th and the last
        out = refine_strokes(s, target, steps=steps, lr=0.05)
        assert float(_mse_exact(out, target, 1.0)) < before, steps


def test_plan_keeps_an_action_that_is_already_exact():
    g = torch.Generator().manual_seed(1)
    canvas = torch.ones(2, 3, 16, 16)
    a = random_strokes(2 * 3, g).view(2, 3, 13)
    target = paint_exact(canvas, a)
    planned, after = plan_action(StrokeModel(AgentConfig(canvas=16)), canvas, target, a, steps=4, lr=0.5)
    assert torch.equal(planned, a) and torch.equal(after, target)
