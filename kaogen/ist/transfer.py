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
from kaogen.errors import KaogenError
from kaogen.ist import actions as A
from kaogen.ist.losses import content_loss
from kaogen.ist.painter import NeuralPainter
from kaogen.render import brush_strokes as B
from kaogen.render.painting import Painting

PAPER = (0.93, 0.89, 0.80)


MIN_SIZE = A.CANVAS               # one block
SIZE_STEP = A.CANVAS // 2         # blocks overlap by half a block


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

    def __post_init__(self):
        def whole(name, lo):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise KaogenError(f"IST {name} must be a whole number >= {lo}, got {v!r}")

        whole("size", MIN_SIZE)
        if self.size % SIZE_STEP:
            raise KaogenError(f"IST canvas size must be a multiple of {SIZE_STEP} px (the blocks' half step) and at least "
                              f"{MIN_SIZE}, got {self.size}: e.g. {max(MIN_SIZE, self.size // SIZE_STEP * SIZE_STEP)}")
        whole("strokes", 1)
        whole("steps", 0)
        whole("video_every", 0)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise KaogenError(f"IST lr must be a positive number, got {self.lr!r}")
        paper = tuple(self.paper)
        if len(paper) != 3 or not all(isinstance(c, (int, float)) and 0 <= c <= 1 for c in paper):
            raise KaogenError(f"IST paper must be 3 numbers in [0, 1], got {self.paper!r}")
        self.paper = tuple(float(c) for c in paper)


def block_grid(size: int, block: int = A.CANVAS) -> list[tuple[int, int]]:
    """(top, left) of every block, half-block steps."""
    pos = list(range(0, size - block + 1, block // 2))
    return [(t, l) for t in pos for l in pos]


def phases(grid: list[tuple[int, int]], block: int = A.CANVAS) -> list[list[int]]:
    """Block indices in four groups whose blocks do not overlap (a group is empty on a one-block canvas)."""
    half = block // 2
    return [[i for i, (t, l) in enumerate(grid) if (t // half) % 2 == py and (l // half) % 2 == px]
            for py in (0, 1) for px in (0, 1)]


@dataclass
class Phase:
    """One phase's blocks as index tensors on the device where the canvas is painted, built once per
    painting: `blocks` (n,) into the block grid, `row` / `col` (n,) within the phase's rows x cols
    sub-grid of adjacent blocks, whose top-left pixel is (top, left)."""

    blocks: torch.Tensor
    row: torch.Tensor
    col: torch.Tensor
    rows: int
    cols: int
    top: int
    left: int


def grid_phases(size: int, device=None, block: int = A.CANVAS) -> list[Phase]:
    """The non-empty phases of the canvas' block grid (same blocks, same order as `phases(block_grid(size))`),
    as index tensors made on `device` from `arange`: no copy from the host."""
    m = (size - block) // (block // 2) + 1                # blocks per side
    out = []
    for py in (0, 1):
        for px in (0, 1):
            if py >= m or px >= m:
                continue  # pragma: no mutate (break is the same: what is skipped is the rest of a row, m = 1)
            iy = torch.arange(py, m, 2, device=device)
            ix = torch.arange(px, m, 2, device=device)
            nr, nc = len(range(py, m, 2)), len(range(px, m, 2))
            row = torch.arange(nr, device=device).repeat_interleave(nc, output_size=nr * nc)
            col = torch.arange(nc, device=device).repeat(nr)
            out.append(Phase((iy[:, None] * m + ix[None, :]).reshape(-1), row, col, nr, nc,
                             py * block // 2, px * block // 2))
    return out


def place(patches: torch.Tensor, ph: Phase, size: int) -> torch.Tensor:
    """The phase's non-overlapping (n, C, b, b) patches into a (C, size, size) canvas (zeros elsewhere), differentiable."""
    n, C, b, _ = patches.shape
    grid = patches.new_zeros(ph.rows, ph.cols, C, b, b).index_put((ph.row, ph.col), patches)
    full = grid.permute(2, 0, 3, 1, 4).reshape(C, ph.rows * b, ph.cols * b)
    return F.pad(full, (ph.left, size - ph.left - ph.cols * b, ph.top, size - ph.top - ph.rows * b))


class StrokeField(torch.nn.Module):
    """The optimised strokes: K per block, logits (N, 12) of shape and colour, fixed noise.

    Built on the target's device. The starting strokes and the noise are drawn on the host (numpy and
    a CPU generator: the same painting for a seed on every device) and copied once; everything the
    optimisation loop indexes with is made on the device."""

    def __init__(self, target: torch.Tensor, painter: NeuralPainter, opts: ISTOptions):
        super().__init__()
        import numpy as np

        size, dev = opts.size, target.device
        self.grid = block_grid(size)
        self.phases = grid_phases(size, dev)
        nb = len(self.grid)
        self.k = max(1, math.ceil(opts.strokes / nb))
        N = nb * self.k
        g = torch.Generator().manual_seed(opts.seed)
        a = torch.from_numpy(A.random_actions(N, np.random.default_rng(opts.seed)))
        a[:, A.INDEX["size"]] = 0.5 * a[:, A.INDEX["size"]]                   # start with finer strokes
        a[:, 6:8] = 0.5 + 0.5 * a[:, 6:8]                                     # and firm pressure
        z = torch.randn(N, painter.gen.noise, generator=g)
        a, z = torch.cat([a, z], 1).to(dev).split([A.NUM_FIELDS, painter.gen.noise], 1)   # one copy to the device
        # colours start at the target's colour under the stroke's control point (block-major order)
        m = (size - A.CANVAS) // (A.CANVAS // 2) + 1
        b = torch.arange(N, device=dev) // self.k
        blk = torch.stack([b // m, b % m], 1) * (A.CANVAS // 2)                # (top, left) of the stroke's block
        mid = (blk + A.CANVAS * a[:, 2:4].flip(1)).long().clamp(0, size - 1)  # (row, col) of the control point
        col = target[:, mid[:, 0], mid[:, 1]].T.to(a.dtype)
        self.logit = torch.nn.Parameter(torch.logit(torch.cat([a[:, :9], col], 1).clamp(0.02, 0.98)))
        self.register_buffer("z", z.contiguous())
        self.register_buffer("paper_rgb", torch.tensor(opts.paper, device=dev)[:, None, None])
        # painting order (k, phase, block) -> stroke row i * K + k, and each block's (x, y, size) on the unit canvas
        order = torch.cat([ph.blocks * self.k + k for k in range(self.k) for ph in self.phases])
        self.register_buffer("order", order)
        self.register_buffer("block_xys", torch.stack([b[:: self.k] % m, b[:: self.k] // m,
                                                       torch.full_like(b[:: self.k], 2)], 1) * (A.CANVAS // 2) / size)
        self.size, self.paper = size, opts.paper

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        for ph in self.phases:                      # the phases' index tensors follow the module's device
            ph.blocks, ph.row, ph.col = (fn(t) for t in (ph.blocks, ph.row, ph.col))
        return out

    def actions(self) -> torch.Tensor:
        """(N, 12) in [0, 1], block-major: stroke k of block i is row i * K + k."""
        return torch.sigmoid(self.logit)

    def render(self, painter: NeuralPainter) -> torch.Tensor:
        """The canvas (3, S, S) after every stroke, differentiable in the actions."""
        act = self.actions()
        alpha = painter(act[:, :9], self.z).view(len(self.grid), self.k, 1, A.CANVAS, A.CANVAS)
        col = act[:, 9:12].view(len(self.grid), self.k, 3, 1, 1)
        ac = torch.cat([alpha, alpha * col], 2)                                   # (blocks, K, 1 + 3, b, b)
        canvas = self.paper_rgb.to(alpha.dtype).expand(3, self.size, self.size)
        for k in range(self.k):
            for ph in self.phases:
                placed = place(ac[:, k].index_select(0, ph.blocks), ph, self.size)   # (4, S, S)
                canvas = canvas * (1 - placed[:1]) + placed[1:]
        return canvas

    def painting(self, painter: NeuralPainter, aspect: float, provenance: dict) -> Painting:
        """The strokes in painting order (k, phase, block), as a resolution-free neural-brush Painting."""
        with torch.no_grad():
            j = self.order
            rows = torch.cat([self.block_xys[j // self.k], self.actions()[j], B.noise_to_unit(self.z[j])], 1)
            rows = rows.clamp(0, 1).float().cpu()                                  # the one copy back
        return Painting(rows, self.paper, aspect, "neural-brush", provenance, painter)


def transfer(painter: NeuralPainter, image: torch.Tensor, opts: ISTOptions | None = None, progress: bool = False,
             source: str = "") -> tuple[Painting, list[torch.Tensor]]:
    """Paint `image` (3, H, W) in [0, 1]. Returns the painting and the optimisation frames (when asked)."""
    opts = opts or ISTOptions()
    dev = next(painter.gen.parameters()).device
    target = F.interpolate(image[None].to(dev, torch.float32), size=(opts.size, opts.size), mode="bilinear", antialias=True,
                           align_corners=False)[0].clamp(0, 1)
    painter.gen.requires_grad_(False)
    field = StrokeField(target, painter, opts)
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
