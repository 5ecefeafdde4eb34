"""Intrinsic style transfer (Nakano 2019): optimise brush strokes through the neural painter toward a picture.

The square canvas (S px, 256 by default) is covered by overlapping blocks of the painter's size
(64 px) at half-block steps (7 x 7 = 49 blocks at 256 px); each block holds K strokes. Stroke k of
every block is laid in order k = 0, 1, ..., and within one k the blocks go in four phases of
non-overlapping blocks (even/odd rows and columns), so each phase is one batched composite:

    canvas <- canvas * (1 - A) + A * colour,    A = the phase's stroke alphas, placed in their blocks

on a paper-coloured canvas. Actions (shape and colour, in logit space so they stay in [0, 1]) are
optimised with Adam on the content loss, through the painter; its noise is fixed per stroke. The
painting sequence is that stroke order. Optional robustness transforms (kornia: small rotation,
scale, shift, the same for canvas and target) follow Nakano.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from kaogen import __version__
from kaogen.ist import actions as A
from kaogen.ist.losses import content_loss
from kaogen.ist.painter import NeuralPainter
from kaogen.render import brush_strokes as B
from kaogen.render.painting import Painting

PAPER = (0.93, 0.89, 0.80)


@dataclass
class ISTOptions:
    size: int = 256               # canvas px of the optimisation (a multiple of 32, >= 64)
    strokes: int = 294            # at least this many strokes (rounded up to fill every block: 49 x 6)
    steps: int = 150
    lr: float = 0.05
    loss: str = "auto"            # auto | lpips | offline (losses.py)
    robust: bool = True           # kornia robustness transforms on half of the steps
    paper: tuple[float, float, float] = PAPER
    video_every: int = 0          # > 0: keep the canvas every k steps (a video of the optimisation)
    seed: int = 0


def block_grid(size: int, block: int = A.CANVAS) -> list[tuple[int, int]]:
    """(top, left) of every block, half-block steps."""
    pos = list(range(0, size - block + 1, block // 2))
    return [(t, l) for t in pos for l in pos]


def phases(grid: list[tuple[int, int]], block: int = A.CANVAS) -> list[list[int]]:
    """Block indices in four groups whose blocks do not overlap."""
    half = block // 2
    return [[i for i, (t, l) in enumerate(grid) if (t // half) % 2 == py and (l // half) % 2 == px]
            for py in (0, 1) for px in (0, 1)]


def place(patches: torch.Tensor, tops: list[int], lefts: list[int], size: int) -> torch.Tensor:
    """Non-overlapping (n, C, b, b) patches into a (C, size, size) canvas (zeros elsewhere), differentiable."""
    n, C, b, _ = patches.shape
    rows, cols = sorted(set(tops)), sorted(set(lefts))
    grid = patches.new_zeros(len(rows), len(cols), C, b, b)
    grid = grid.index_put((torch.tensor([rows.index(t) for t in tops]), torch.tensor([cols.index(l) for l in lefts])), patches)
    full = grid.permute(2, 0, 3, 1, 4).reshape(C, len(rows) * b, len(cols) * b)
    return F.pad(full, (cols[0], size - cols[0] - len(cols) * b, rows[0], size - rows[0] - len(rows) * b))


class StrokeField(torch.nn.Module):
    """The optimised strokes: K per block, logits of shape (N, 9) and colour (N, 3), fixed noise."""

    def __init__(self, target: torch.Tensor, painter: NeuralPainter, opts: ISTOptions):
        super().__init__()
        size = opts.size
        self.grid = block_grid(size)
        self.phases = phases(self.grid)
        nb = len(self.grid)
        self.k = max(1, math.ceil(opts.strokes / nb))
        N = nb * self.k
        g = torch.Generator().manual_seed(opts.seed)
        a = torch.from_numpy(A.random_actions(N, __import__("numpy").random.default_rng(opts.seed)))
        a[:, A.INDEX["size"]] = 0.5 * a[:, A.INDEX["size"]]                   # start with finer strokes
        a[:, 6:8] = 0.5 + 0.5 * a[:, 6:8]                                     # and firm pressure
        # colours start at the target's colour under the stroke's middle
        blk = torch.tensor(self.grid * 1, dtype=torch.float32).repeat_interleave(self.k, 0)   # block-major order
        mid = (blk + A.CANVAS * a[:, [3, 2]]).long().clamp(0, size - 1)       # (row, col) of the control point
        a[:, 9:12] = target[:, mid[:, 0], mid[:, 1]].T
        self.shape_logit = torch.nn.Parameter(torch.logit(a[:, :9].clamp(0.02, 0.98)))
        self.color_logit = torch.nn.Parameter(torch.logit(a[:, 9:12].clamp(0.02, 0.98)))
        self.register_buffer("z", torch.randn(N, painter.gen.noise, generator=g))
        self.size, self.paper = size, opts.paper

    def actions(self) -> torch.Tensor:
        """(N, 12) in [0, 1], block-major: stroke k of block i is row i * K + k."""
        return torch.cat([torch.sigmoid(self.shape_logit), torch.sigmoid(self.color_logit)], 1)

    def render(self, painter: NeuralPainter) -> torch.Tensor:
        """The canvas (3, S, S) after every stroke, differentiable in the actions."""
        act = self.actions()
        alpha = painter(act[:, :9], self.z).view(len(self.grid), self.k, A.CANVAS, A.CANVAS)
        col = act[:, 9:12].view(len(self.grid), self.k, 3)
        canvas = torch.tensor(self.paper, dtype=alpha.dtype, device=alpha.device)[:, None, None].expand(3, self.size, self.size)
        for k in range(self.k):
            for ph in self.phases:
                tops, lefts = [self.grid[i][0] for i in ph], [self.grid[i][1] for i in ph]
                a = alpha[ph, k][:, None]                                           # (n, 1, b, b)
                A_ = place(a, tops, lefts, self.size)
                C_ = place(a * col[ph, k][:, :, None, None], tops, lefts, self.size)
                canvas = canvas * (1 - A_) + C_
        return canvas

    def painting(self, painter: NeuralPainter, aspect: float, provenance: dict) -> Painting:
        """The strokes in painting order (k, phase, block), as a resolution-free neural-brush Painting."""
        act = self.actions().detach().cpu()
        u = B.noise_to_unit(self.z.cpu())
        rows = []
        for k in range(self.k):
            for ph in self.phases:
                for i in ph:
                    t, l = self.grid[i]
                    j = i * self.k + k
                    block = torch.tensor([l / self.size, t / self.size, A.CANVAS / self.size])
                    rows.append(torch.cat([block, act[j], u[j]]))
        return Painting(torch.stack(rows).clamp(0, 1), self.paper, aspect, "neural-brush", provenance, painter)


def transfer(painter: NeuralPainter, image: torch.Tensor, opts: ISTOptions | None = None, progress: bool = False,
             source: str = "") -> tuple[Painting, list[torch.Tensor]]:
    """Paint `image` (3, H, W) in [0, 1]. Returns the painting and the optimisation frames (when asked)."""
    opts = opts or ISTOptions()
    dev = next(painter.gen.parameters()).device
    target = F.interpolate(image[None].to(dev), size=(opts.size, opts.size), mode="bilinear", antialias=True,
                           align_corners=False)[0].clamp(0, 1)
    painter.gen.requires_grad_(False)
    field = StrokeField(target.cpu(), painter, opts).to(dev)
    loss_name, loss_fn = content_loss(opts.loss, dev)
    opt = torch.optim.Adam(field.parameters(), lr=opts.lr)
    aug = None
    if opts.robust:
        from kornia.augmentation import RandomAffine

        aug = RandomAffine(degrees=2.0, translate=(0.01, 0.01), scale=(0.98, 1.02), p=1.0, same_on_batch=True)
    torch.manual_seed(opts.seed)
    frames = []
    for step in tqdm(range(opts.steps), desc="ist", disable=not progress):
        canvas = field.render(painter)
        x, y = canvas[None], target[None]
        if aug is not None and step % 2 == 1 and step < opts.steps * 0.8:
            both = aug(torch.cat([x, y]))
            x, y = both[:1], both[1:]
        loss = loss_fn(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if opts.video_every and step % opts.video_every == 0:
            frames.append(canvas.detach().cpu())
    prov = {"method": "ist", "checkpoint": painter.source, "brush": painter.brush, "source": source,
            "seed": opts.seed, "steps": opts.steps, "loss": loss_name, "kaogen": __version__}
    return field.painting(painter, image.shape[2] / image.shape[1], prov), frames
