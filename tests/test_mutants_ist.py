"""Intrinsic style transfer at its boundaries, found by mutation testing (benchmarks/mutation.sh):
which options are refused and which accepted, the block grid and its phases as index tensors, the
placing of a phase's patches, and where the optimised strokes start."""

from __future__ import annotations

import math

import pytest
import torch

from kaogen.errors import KaogenError
from kaogen.ist import actions as A
from kaogen.ist.painter import Generator, NeuralPainter
from kaogen.ist.transfer import PAPER, ISTOptions, StrokeField, block_grid, grid_phases, phases, place


@pytest.fixture
def painter():
    torch.manual_seed(0)
    return NeuralPainter(Generator(noise=8, width=8), "classic/kabura")


# ------------------------------------------------------------------------------------- options

def test_ist_options_defaults_are_the_documented_ones():
    """`paint --method ist` leaves size, lr, robust and paper to ISTOptions: 256 px (7 x 7 blocks),
    294 strokes, 150 steps, lr 0.05, the auto loss, robustness transforms on, paper colour, no video,
    seed 0 (README, intrinsic style transfer). Guards against a changed default."""
    o = ISTOptions()
    assert (o.size, o.strokes, o.steps, o.lr, o.loss, o.robust, o.video_every, o.seed) == \
        (256, 294, 150, 0.05, "auto", True, 0, 0)
    assert o.paper == PAPER == (0.93, 0.89, 0.80) and len(block_grid(o.size)) == 49


@pytest.mark.parametrize("kw", [dict(size=64), dict(size=96), dict(strokes=1), dict(steps=0), dict(video_every=0),
                                dict(video_every=1), dict(lr=1), dict(lr=1e-6), dict(paper=(0, 0, 0)),
                                dict(paper=(1, 1, 1)), dict(paper=[0.5, 0, 1])])
def test_ist_options_at_their_bounds_are_accepted(kw):
    """The smallest values each option allows are accepted: one block (64 px), 1 stroke, 0 steps, no
    video (0) or every step (1), any positive lr (an int too), paper components 0 and 1 (a list
    too). Guards against a bound made strict."""
    o = ISTOptions(**kw)
    for k, v in kw.items():
        if k == "paper":
            assert o.paper == tuple(float(c) for c in v) and all(type(c) is float for c in o.paper)
        else:
            assert getattr(o, k) == v


@pytest.mark.parametrize("kw", [dict(size=None), dict(size="64"), dict(size=32), dict(strokes=True),
                                dict(strokes=2.0), dict(steps=False), dict(steps=1.0), dict(video_every=1.5),
                                dict(video_every=None), dict(lr=-0.1), dict(lr=float("nan")), dict(lr=float("inf")),
                                dict(lr="0.1"), dict(lr=None), dict(paper=(0.5, 0.5)), dict(paper=(0.5, 0.5, 0.5, 0.5)),
                                dict(paper=(-0.01, 0.5, 0.5)), dict(paper=(0.5, 1.01, 0.5)),
                                dict(paper=(0.5, 0.5, "white")), dict(paper=(0.5, 0.5, None))])
def test_ist_options_outside_their_bounds_are_refused_in_one_line(kw):
    """Every option that cannot paint is refused with one line naming IST (bools, floats and strings
    for whole numbers, a non-finite or non-positive lr, a paper of 2 or 4 numbers or outside [0, 1]).
    Guards against a check dropped or loosened."""
    with pytest.raises(KaogenError) as e:
        ISTOptions(**kw)
    assert len(str(e.value).splitlines()) == 1 and "IST" in str(e.value)


# --------------------------------------------------------------------------- the grid and phases

@pytest.mark.parametrize("size", [64, 96, 128, 160, 256])
def test_grid_phases_are_the_phases_of_the_block_grid_as_index_tensors(size):
    """grid_phases(size): the non-empty phases of phases(block_grid(size)), same blocks, same order;
    each block's (row, col) in its phase's rows x cols sub-grid puts it at (top + 64 row, left + 64 col),
    which is its place in the block grid. Guards against a phase, row or column dropped or shifted."""
    grid = block_grid(size)
    m = (size - 64) // 32 + 1
    assert grid == [(32 * i, 32 * j) for i in range(m) for j in range(m)]
    groups = [p for p in phases(grid) if p]
    ph = grid_phases(size)
    assert [p.blocks.tolist() for p in ph] == groups
    for p in ph:
        assert p.rows * p.cols == len(p.blocks) == len(p.row) == len(p.col)
        assert p.row.dtype == p.col.dtype == p.blocks.dtype == torch.long
        for b, r, c in zip(p.blocks.tolist(), p.row.tolist(), p.col.tolist()):
            assert grid[b] == (p.top + 64 * r, p.left + 64 * c)
        assert sorted(zip(p.row.tolist(), p.col.tolist())) == [(r, c) for r in range(p.rows) for c in range(p.cols)]


def test_grid_phases_are_made_on_the_device_asked_for():
    """Every index tensor of grid_phases(size, device) is made on that device (here the meta device,
    which stands for an accelerator: a CPU tensor mixed in is an error there). Guards against an
    index tensor made on the default device (a host-to-device copy per painting)."""
    for p in grid_phases(160, "meta"):
        assert p.blocks.device.type == p.row.device.type == p.col.device.type == "meta"
        assert p.blocks.shape == p.row.shape == p.col.shape == (p.rows * p.cols,)


def test_phases_cover_the_canvas_without_overlap_on_any_size():
    """Every block in exactly one phase; within a phase no two blocks overlap (at 96 and 160 px too,
    where a phase has fewer blocks on a side). Guards against a parity test on the wrong coordinate."""
    for size in (96, 160):
        grid = block_grid(size)
        ph = phases(grid)
        assert sorted(i for p in ph for i in p) == list(range(len(grid))) and len(ph) == 4
        for p in ph:
            cover = torch.zeros(size, size)
            for i in p:
                t, l = grid[i]
                cover[t:t + 64, l:l + 64] += 1
            assert cover.max() <= 1


def test_place_puts_each_patch_in_its_block_and_zeros_elsewhere_differentiably():
    """place(): a phase's (n, C, 64, 64) patches land in their blocks of a (C, S, S) canvas, zeros
    elsewhere, and the gradient reaches every patch. Guards against a shifted, padded or transposed
    layout."""
    size = 160
    grid = block_grid(size)
    g = torch.Generator().manual_seed(0)
    for p in grid_phases(size):
        patches = torch.rand(len(p.blocks), 2, 64, 64, generator=g).requires_grad_(True)
        out = place(patches, p, size)
        want = torch.zeros(2, size, size)
        for n, b in enumerate(p.blocks.tolist()):
            t, l = grid[b]
            want[:, t:t + 64, l:l + 64] = patches[n].detach()
        assert out.shape == (2, size, size)
        assert torch.equal(out.detach(), want)
        out.sum().backward()
        assert torch.equal(patches.grad, torch.ones_like(patches))


# ----------------------------------------------------------------------- where the strokes start

def test_stroke_field_fills_every_block_and_starts_on_the_targets_colours(painter):
    """K = ceil(strokes / blocks) strokes per block (50 strokes on 9 blocks: 6 each, 54); each starts
    fine (size at most half the range), with firm pressure (at least half), inside (0, 1), in the
    target's colour under its control point (here a target whose red is the column, green the row,
    blue constant: the colour says where it was read); the same seed starts the same, another seed
    elsewhere. Guards against a wrong K, a colour read at the wrong pixel or block, and the starting
    shape left unchanged."""
    size = 128
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    target = torch.stack([(xx + 0.5) / size, (yy + 0.5) / size, torch.full((size, size), 0.4)])
    opts = ISTOptions(size=size, strokes=50, steps=1, loss="offline")
    field = StrokeField(target, painter, opts)
    a = field.actions().detach()
    assert field.k == 6 and a.shape == (54, 12) and field.z.shape == (54, 8)
    assert float(a.min()) >= 0.02 - 1e-6 and float(a.max()) <= 0.98 + 1e-6
    assert float(a[:, A.INDEX["size"]].max()) <= 0.5 + 1e-6
    assert float(a[:, 6:8].min()) >= 0.5 - 1e-6
    torch.testing.assert_close(a[:, 11], torch.full((54,), 0.4), atol=1e-5, rtol=0)
    grid = block_grid(size)
    for i in range(54):
        t, l = grid[i // 6]                                    # block-major: stroke k of block b is row 6 b + k
        col = l + 64 * float(a[i, 2])
        row = t + 64 * float(a[i, 3])
        assert abs(float(a[i, 9]) * size - 0.5 - int(col)) < 1e-3, (i, col)      # red: the column read
        assert abs(float(a[i, 10]) * size - 0.5 - int(row)) < 1e-3, (i, row)     # green: the row read
    same = StrokeField(target, painter, opts)
    assert torch.equal(same.actions(), field.actions()) and torch.equal(same.z, field.z)
    other = StrokeField(target, painter, ISTOptions(size=size, strokes=50, steps=1, loss="offline", seed=1))
    assert not torch.equal(other.actions(), field.actions()) and not torch.equal(other.z, field.z)
    assert math.ceil(294 / 49) == 6                            # the default: 49 blocks x 6 = 294
