"""Painting pictures with a trained agent: whole-image pass, optional K x K patch pass, optional refinement.

    paintings = paint(agent, [img0, img1, ...], PaintOptions(divide=4, refine=100))

Images are float32 (3, H, W) in [0, 1], any size and aspect; they are painted in one batch. The
agent observes canvas and target at its training size S; the exact rasteriser lays its strokes.
The result is a resolution-free Painting per image (stroke order = painting order), with
the image's aspect ratio (the agent paints the image stretched to a square, as the reference does).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from kaogen import __version__
from kaogen.l2p.agent import Agent
from kaogen.l2p.ddpg import actor_input
from kaogen.l2p.plan import plan_action
from kaogen.l2p.refine import refine_strokes
from kaogen.l2p.stroke_model import StrokeModel, paint_exact
from kaogen.render import strokes as S
from kaogen.render.painting import Painting


@dataclass
class PaintOptions:
    steps: int | None = None    # actions per pass (default: the agent's, 40 = 200 strokes)
    divide: int = 1             # K > 1: after the whole image, paint a K x K grid of patches
    plan: int = 0               # gradient steps on each action's strokes before they are laid (plan.py)
    refine: int = 0             # gradient steps on all strokes through the soft rasteriser
    refine_size: int | None = None   # canvas px of refinement (default: 2 * S * divide, 128 for the shipped agent)
    refine_lr: float = 0.05
    refine_relocate: bool = True     # move strokes the painting hides to where it is most wrong


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, size, size), antialiased."""
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


@torch.no_grad()
def run_agent(agent: Agent, target: torch.Tensor, canvas: torch.Tensor, steps: int,
              plan: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Paint `steps` actions: target, canvas (B, 3, S, S) -> strokes (B, steps, K, 13), final canvas.

    Beyond the agent's own number of steps it starts a new pass on its canvas (the step input counts
    from 0 again), so 400 strokes are two passes of 200. plan > 0: each action is planned (plan.py).
    """
    out = []
    B = target.shape[0]
    model = StrokeModel(replace(agent.cfg, renderer="soft")) if plan else None   # no renderer file needed
    for t in range(steps):
        step = torch.full((B,), t % agent.cfg.steps, device=target.device)
        a = agent.actor(actor_input(canvas, target, step, agent.cfg.steps))
        if plan:
            a, canvas = plan_action(model, canvas, target, a, plan, agent.cfg.reward_scales)
        else:
            canvas = paint_exact(canvas, a)
        out.append(a)
    return torch.stack(out, 1), canvas


def to_full_canvas(s: torch.Tensor, row: int, col: int, k: int) -> torch.Tensor:
    """Strokes of patch (row, col) of a k x k grid -> canvas units of the whole picture.

    Radii shrink by k; the field can't go below the renderer's smallest radius (1/256 of the
    canvas), so the finest patch strokes are clamped there.
    """
    s = s.clone()
    for f in ("x0", "x1", "x2"):
        s[..., S.INDEX[f]] = (col + s[..., S.INDEX[f]]) / k
    for f in ("y0", "y1", "y2"):
        s[..., S.INDEX[f]] = (row + s[..., S.INDEX[f]]) / k
    for f in ("z0", "z2"):
        s[..., S.INDEX[f]] = (((1 + 64 * s[..., S.INDEX[f]]) / k - 1) / 64).clamp(0, 1)
    return s


def paint(agent: Agent, images: list[torch.Tensor], opts: PaintOptions | None = None,
          sources: list[str] | None = None) -> list[Painting]:
    opts = opts or PaintOptions()
    cfg, dev = agent.cfg, agent.device
    Sz, steps, k = cfg.canvas, opts.steps or cfg.steps, max(1, opts.divide)
    B = len(images)
    full = torch.stack([resize(im[None].to(dev), Sz * k)[0] for im in images])        # (B, 3, kS, kS)
    blank = torch.full((B, 3, Sz, Sz), cfg.background, device=dev)
    strokes, _ = run_agent(agent, resize(full, Sz), blank, steps, opts.plan)               # (B, steps, K, 13)
    per_image = [strokes[b].reshape(-1, S.NUM_FIELDS) for b in range(B)]
    if k > 1:
        big = torch.full((B, 3, Sz * k, Sz * k), cfg.background, device=dev)
        canvas = paint_exact(big, torch.stack(per_image))                          # (B, 3, kS, kS)
        patches = lambda x: x.unfold(2, Sz, Sz).unfold(3, Sz, Sz).permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, Sz, Sz)  # noqa: E731
        ps, _ = run_agent(agent, patches(full), patches(canvas), steps, opts.plan)      # (B*k*k, steps, K, 13)
        ps = ps.view(B, k, k, steps, -1, S.NUM_FIELDS)
        for b in range(B):
            mapped = torch.stack([torch.stack([to_full_canvas(ps[b, r, c], r, c, k) for c in range(k)]) for r in range(k)])
            # painting order: step by step, every patch in reading order within a step
            per_image[b] = torch.cat([per_image[b], mapped.permute(2, 0, 1, 3, 4).reshape(-1, S.NUM_FIELDS)])
    if opts.refine > 0:
        size = opts.refine_size or 2 * Sz * k      # finer than the agent sees: relocated strokes fit detail
        per_image = [refine_strokes(per_image[b], resize(images[b][None].to(dev), size)[0], opts.refine, cfg.background,
                                    lr=opts.refine_lr, relocate=opts.refine_relocate) for b in range(B)]
    paintings = []
    for b, im in enumerate(images):
        prov = {"method": "l2p", "checkpoint": agent.source, "source": (sources or [""] * B)[b],
                "steps": steps, "divide": k, "plan": opts.plan, "refine": opts.refine,
                "relocate": bool(opts.refine and opts.refine_relocate), "kaogen": __version__}
        paintings.append(Painting(per_image[b].detach().cpu().clamp(0, 1), (cfg.background,) * 3,
                                  aspect=im.shape[2] / im.shape[1], provenance=prov))
    return paintings
