"""A greedy stroke planner the actor can imitate: strokes where the painting is most wrong.

    strokes = plan_strokes(canvas, target, k=5, iters=5)    # (B, k, 13)
    loss = matched_stroke_loss(actor_strokes, strokes)       # (B,)

Learning to Paint's actor must learn *where* to paint from the reward's gradient alone, and that
gradient only reaches a stroke's position through its edge: an undertrained actor settles on a few
broad strokes and repeats them. The planner finds the k most wrong places directly (peaks of the
local squared error, at least two radii apart), tries four stroke sizes there (24, 12, 6 and 3 px
wide on the agent's canvas) in the target's local colour, keeps the size that lowers the error most,
and refines the strokes by `iters` Adam steps through the soft rasteriser. Imitating it
(TrainConfig.imitation) gives the actor a supervised signal for placement; the reward still shapes
the rest. canvas, target: (B, 3, S, S) in [0, 1].
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from kaogen.l2p.distance import pyramid_distance
from kaogen.l2p.stroke_model import paint_exact
from kaogen.render import strokes as S
from kaogen.render.composite import composite
from kaogen.render.soft import soft_rasterize

RADII_PX = (12.0, 6.0, 3.0, 1.5)        # stroke half-widths tried, in px of the agent's canvas
REVERSED = [4, 5, 2, 3, 0, 1, 7, 6, 9, 8, 10, 11, 12]   # the same stroke drawn from its other end


def error_peaks(err: torch.Tensor, k: int, min_dist: float) -> torch.Tensor:
    """err (B, H, W) >= 0 -> (B, k, 2) pixel (x, y) of k maxima, each at least min_dist px from the earlier ones."""
    B, H, W = err.shape
    ys, xs = torch.meshgrid(torch.arange(H, dtype=err.dtype), torch.arange(W, dtype=err.dtype), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    e, out = err.reshape(B, H * W).clone(), []
    for _ in range(k):
        i = e.argmax(1)
        x, y = xs[i], ys[i]
        out.append(torch.stack([x, y], 1))
        e = e * (((xs - x[:, None]) ** 2 + (ys - y[:, None]) ** 2) >= min_dist ** 2)
    return torch.stack(out, 1)


def strokes_at_peaks(canvas: torch.Tensor, target: torch.Tensor, k: int, r_px: float) -> torch.Tensor:
    """k short horizontal strokes of half-width r_px px, opaque, at the error peaks, in the target's local colour."""
    B, _, H, W = canvas.shape
    win = 2 * int(r_px) + 1
    pool = lambda x: F.avg_pool2d(x, win, 1, win // 2, count_include_pad=False)  # noqa: E731
    peaks = error_peaks(pool(((canvas - target) ** 2).sum(1, keepdim=True))[:, 0], k, 2 * r_px)
    centre = (peaks + 0.5) / torch.tensor([W, H], dtype=canvas.dtype)
    half = torch.tensor([r_px / W, 0.0], dtype=canvas.dtype)
    s = torch.empty(B, k, S.NUM_FIELDS, dtype=canvas.dtype)
    s[..., 0:2], s[..., 2:4], s[..., 4:6] = centre - half, centre, centre + half
    s[..., 6:8] = (r_px / min(H, W) - S.MIN_RADIUS) / S.RADIUS_SPAN
    s[..., 8:10] = 1.0
    b = torch.arange(B)[:, None].expand(B, k)
    s[..., 10:13] = pool(target)[b, :, peaks[..., 1].long(), peaks[..., 0].long()]
    return s.clamp(0, 1)


def plan_strokes(canvas: torch.Tensor, target: torch.Tensor, k: int = 5, iters: int = 5, levels: int = 3,
                 lr: float = 0.05, softness: float = 0.5) -> torch.Tensor:
    """(B, 3, S, S) canvas and target -> (B, k, 13) strokes in [0, 1] that lower the error greedily."""
    B, _, H, W = canvas.shape
    canvas, target = canvas.detach().cpu(), target.detach().cpu()
    with torch.no_grad():
        options = torch.stack([strokes_at_peaks(canvas, target, k, r) for r in RADII_PX], 1)      # (B, R, k, 13)
        scores = torch.stack([pyramid_distance(paint_exact(canvas, options[:, i]), target, levels)
                              for i in range(len(RADII_PX))], 1)
        s = options[torch.arange(B), scores.argmin(1)]
    if iters > 0:
        logit = torch.logit(s.clamp(1e-3, 1 - 1e-3)).requires_grad_(True)
        opt = torch.optim.Adam([logit], lr=lr)
        with torch.enable_grad():
            for _ in range(iters):
                cur = torch.sigmoid(logit)
                alpha = soft_rasterize(cur.reshape(-1, S.NUM_FIELDS), H, W, softness=softness).view(B, k, H, W)
                loss = pyramid_distance(composite(canvas, alpha, S.color(cur)), target, levels).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        s = torch.sigmoid(logit.detach())
    return s


def matched_stroke_loss(pred: torch.Tensor, plan: torch.Tensor) -> torch.Tensor:
    """(B, k, 13) each -> (B,) mean L1 between fields under the best pairing of strokes, a stroke
    and its reverse counting as the same. k <= 6 (the pairing tries every permutation)."""
    k = pred.shape[1]
    cost = torch.minimum((pred[:, :, None] - plan[:, None]).abs().mean(-1),
                         (pred[:, :, None] - plan[:, None][..., REVERSED]).abs().mean(-1))      # (B, k, k)
    perms = torch.tensor(list(itertools.permutations(range(k))), device=pred.device)            # (k!, k)
    return cost[:, torch.arange(k, device=pred.device)[None], perms].sum(-1).min(1).values / k
