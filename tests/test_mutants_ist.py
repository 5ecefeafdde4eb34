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
from kaogen.ist.transfer import PAPER, ISTOptions, StrokeField, block_grid, grid_phases, phases, place, transfer


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


# ------------------------------------------------------------------------- transfer() end to end

def _tiny(**kw):
    """A one-block canvas (64 px), few strokes, the offline loss: the cheapest painting."""
    return ISTOptions(**{**dict(size=64, strokes=6, steps=0, loss="offline", robust=False), **kw})


def test_transfer_reads_the_picture_resized_like_pil_bilinear(painter):
    """The target is the picture resized to the canvas with antialiased bilinear filtering (what PIL's
    BILINEAR resize gives, pixel centres aligned): with 0 steps every stroke starts in the colour of
    the PIL-resized picture under its control point (a noisy 150 x 200 picture, so an aliased or
    corner-aligned resize reads other colours). Guards against dropping the antialias filter or
    aligning corners."""
    import numpy as np
    from PIL import Image

    img = torch.rand(3, 150, 200, generator=torch.Generator().manual_seed(3))
    img = (img * 255).round() / 255                                            # exactly 8-bit
    pil = Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).resize((64, 64), Image.BILINEAR)
    ref = (torch.from_numpy(np.array(pil)).permute(2, 0, 1).float() / 255).clamp(0.02, 0.98)
    p, _ = transfer(painter, img, _tiny(strokes=30))
    s = p.strokes                                                               # x, y, size of block, 12 actions, noise
    assert abs(p.aspect - 200 / 150) < 1e-6
    for r in s:
        col, row = int(64 * float(r[3 + 2])), int(64 * float(r[3 + 3]))     # one block at (0, 0)
        torch.testing.assert_close(r[3 + 9:3 + 12], ref[:, row, col], atol=0.01, rtol=0)


def test_transfer_paints_a_picture_outside_0_1_as_its_clamp(painter):
    """A picture with values below 0 and above 2 is painted exactly as the same picture clamped to
    [0, 1] (the target is clamped once, after resizing), optimisation steps included. Guards against
    either bound of the clamp dropped or loosened."""
    img = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(4)) * 4 - 1.5     # in [-1.5, 2.5]
    opts = _tiny(steps=3, strokes=2)
    a, _ = transfer(painter, img, opts)
    b, _ = transfer(painter, img.clamp(0, 1), opts)
    assert torch.equal(a.strokes, b.strokes)


def test_transfer_leaves_the_painter_frozen(painter):
    """The painter is a fixed renderer: after an optimisation its weights are unchanged, need no
    gradient and have collected none (no memory or time spent on them). Guards against the painter
    left trainable."""
    before = [t.detach().clone() for t in painter.gen.parameters()]
    transfer(painter, torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(5)), _tiny(steps=2, strokes=1))
    params = list(painter.gen.parameters())
    assert all(not t.requires_grad and t.grad is None for t in params)
    assert all(torch.equal(t, u) for t, u in zip(params, before))


def test_transfer_provenance_and_progress_bar(painter, capsys):
    """The provenance names the method, checkpoint, brush, the source (empty unless given), seed, steps,
    loss and kaogen version; the progress bar ("ist: ...") is written to stderr only when asked.
    Guards against a changed default source or a bar shown by default, hidden or renamed."""
    from kaogen import __version__

    img = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(6))
    p, frames = transfer(painter, img, _tiny(steps=1, strokes=1, seed=3))
    assert p.provenance == {"method": "ist", "checkpoint": painter.source, "brush": painter.brush, "source": "",
                            "seed": 3, "steps": 1, "loss": "offline", "kaogen": __version__}
    assert frames == [] and "ist" not in capsys.readouterr().err
    transfer(painter, img, _tiny(steps=1, strokes=1), progress=True, source="a.png")
    import re
    assert re.search(r"(^|\r)ist: +100%", capsys.readouterr().err)


def test_robust_transforms_are_small_shared_and_on_odd_steps(painter, monkeypatch):
    """robust=True (Nakano): on the odd steps of the first 80 % (steps 1, 3, ..., 15 of 20), canvas and
    target go through one random affine transform, the same for both, never the identity: a rotation
    within 2 degrees, a scale within 2 %, a shift within 1 % of the canvas, each of the three present.
    Guards against transforms dropped, applied on other steps, drawn separately for canvas and target,
    only sometimes applied, or of another range."""
    import kornia.augmentation as KA

    calls = []

    class Spy(KA.RandomAffine):
        def forward(self, x, *a, **k):
            out = super().forward(x, *a, **k)
            calls.append((x.detach().clone(), self.transform_matrix.detach().clone()))
            return out

    monkeypatch.setattr(KA, "RandomAffine", Spy)
    img = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(7))
    _, frames = transfer(painter, img, _tiny(steps=20, strokes=1, robust=True, video_every=1))
    steps = [next(i for i, f in enumerate(frames) if torch.equal(f, x[0])) for x, _ in calls]
    assert steps == [1, 3, 5, 7, 9, 11, 13, 15]
    c = torch.tensor([31.5, 31.5, 1.0])
    angles, scales, shifts = [], [], []
    for x, M in calls:
        assert x.shape == (2, 3, 64, 64) and M.shape == (2, 3, 3)
        assert torch.equal(M[0], M[1])                                       # the same for canvas and target
        m = M[0]
        assert not torch.allclose(m, torch.eye(3), atol=1e-6)                # every time
        s = float(torch.linalg.det(m[:2, :2])) ** 0.5
        angles.append(math.degrees(math.atan2(float(m[1, 0]), float(m[0, 0]))))
        scales.append(s - 1)
        shifts.append(float((m @ c - c)[:2].abs().max()))
    assert max(map(abs, angles)) <= 2 + 1e-4 and max(map(abs, scales)) <= 0.02 + 1e-5
    assert max(shifts) <= 0.01 * 64 + 1e-3
    assert max(map(abs, angles)) > 0.05 and max(map(abs, scales)) > 1e-4 and max(shifts) > 1e-2


def test_stroke_field_moves_with_its_phases(painter):
    """StrokeField.to(device) returns the field with its parameters, buffers and the phases' index
    tensors all on that device (here the meta device, standing for an accelerator), the index tensors
    still whole numbers. Guards against the phases left behind (a host-to-device copy per stroke)."""
    field = StrokeField(torch.rand(3, 64, 64), painter, _tiny(strokes=3))
    moved = field.to("meta")
    assert moved is field
    assert all(t.device.type == "meta" for t in [*field.parameters(), *field.buffers()])
    for ph in field.phases:
        assert all(t.device.type == "meta" and t.dtype == torch.long for t in (ph.blocks, ph.row, ph.col))


def test_stroke_field_is_built_on_its_targets_device(painter):
    """A StrokeField made for a target on another device (the meta device, standing for a GPU) has
    every parameter, buffer and phase index tensor there, and no op mixes devices while it is built
    (StrictDevices fails one, as CUDA does). Guards against the strokes, the block indices, the
    phases or the paper colour made on the CPU (a device mismatch, or a copy per step, on a GPU)."""
    from test_render_device import StrictDevices

    with StrictDevices():
        field = StrokeField(torch.rand(3, 64, 64).to("meta"), painter, _tiny(strokes=3))
    assert all(t.device.type == "meta" for t in [*field.parameters(), *field.buffers()])
    for ph in field.phases:
        assert all(t.device.type == "meta" for t in (ph.blocks, ph.row, ph.col))


def test_stroke_field_of_a_float64_target_is_float32(painter):
    """The strokes keep float32 whatever the target's dtype: a float64 target (e.g. from numpy) gives
    the same float32 logits as its float32 copy. Guards against the starting colours taking the
    target's dtype (a float64 parameter the float32 painter cannot run)."""
    img = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(2))
    a = StrokeField(img.double(), painter, _tiny(strokes=3))
    b = StrokeField(img, painter, _tiny(strokes=3))
    assert a.logit.dtype == torch.float32
    torch.testing.assert_close(a.logit, b.logit, atol=1e-6, rtol=0)


def test_stroke_pressures_start_firm_but_varied(painter):
    """Both pressure fields start uniform over [0.5, 1) (firm, not all saturated, drawn apart): their
    median near 0.75 and the two fields different. Guards against a pressure start pushed to the
    clamp, or one field copied into the other."""
    field = StrokeField(torch.rand(3, 64, 64), painter, _tiny(strokes=200))
    p = field.actions().detach()[:, 6:8]
    med = p.median(0).values
    assert ((0.65 < med) & (med < 0.85)).all(), med
    assert not torch.allclose(p[:, 0], p[:, 1], atol=0.05)


def test_transfer_paints_a_float64_picture(painter):
    """A float64 picture (e.g. from numpy) paints like its float32 copy: the strokes take the field's
    dtype, not the picture's. Guards against the starting colours keeping the picture's dtype (a
    float64 field that the float32 painter cannot run)."""
    img = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(8))
    a, _ = transfer(painter, img.double(), _tiny(steps=1, strokes=2))
    b, _ = transfer(painter, img, _tiny(steps=1, strokes=2))
    assert a.strokes.dtype == torch.float32
    torch.testing.assert_close(a.strokes, b.strokes, atol=1e-5, rtol=0)
