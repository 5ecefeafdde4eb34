"""Renderer guarantees that mutation testing (benchmarks/mutation.sh render/...) showed were unchecked.

Each test asserts a property a user sees (a value, a refusal, a file as other tools decode it) and
names the bug it guards against. Sizes are tiny so that the whole file runs in a few seconds.
"""

from __future__ import annotations

import pytest
import torch

from kaogen.render import strokes as S
from kaogen.render.composite import composite


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------- composite

@pytest.mark.parametrize("shape", [(1, 1, 6, 6), (1, 4, 6, 6), (3, 6, 6)])
def test_composite_refuses_a_canvas_that_is_not_rgb(shape):
    """composite() refuses a canvas that is not (B, 3, H, W): a grey (B, 1, H, W) canvas would otherwise
    broadcast silently to RGB, and an RGBA one would be painted with an RGBA colour. Guards against the
    shape check accepting a canvas whose channel count alone is wrong (`or` weakened to `and`)."""
    canvas = torch.rand(*shape, generator=gen(1))
    channels = 4 if shape[1] == 4 else 3
    alpha = torch.rand(1, 6, 6, generator=gen(2))
    color = torch.rand(1, channels, generator=gen(3))
    with pytest.raises(ValueError, match="canvas must be"):
        composite(canvas, alpha, color)


# ------------------------------------------------------------------------------------------ tiles

def edge_strokes(n: int, seed: int) -> torch.Tensor:
    """Random strokes pushed against the canvas' far edges (x or y near 1) and its corners."""
    s = S.random_strokes(n, gen(seed))
    s[: n // 2, [0, 2, 4]] = 1 - s[: n // 2, [0, 2, 4]] * 0.03          # right edge
    s[n // 4:, [1, 3, 5]] = 1 - s[n // 4:, [1, 3, 5]] * 0.03            # bottom edge (and the corner)
    return s


@pytest.mark.parametrize("H,W", [(33, 41), (9, 17), (64, 64)])
def test_tiled_rasteriser_covers_the_last_row_and_column(H, W):
    """The tile-culled (default) rasteriser paints the canvas' last row and column like the plain one,
    at sizes one pixel past a whole number of tiles (33 = 4 x 8 + 1) too. Guards against rounding the
    tile box's far edge down (a stroke's last tile dropped: its last pixel row or column left blank)."""
    from kaogen.render.rasterize import rasterize

    s = edge_strokes(12, H * W)
    tiled, plain = rasterize(s, H, W), rasterize(s, H, W, tiled=False)
    assert plain[:, -1, :].amax() > 0.5 and plain[:, :, -1].amax() > 0.5      # the edges really are painted
    torch.testing.assert_close(tiled, plain, atol=1e-6, rtol=0)


@pytest.mark.parametrize("x,y", [(1.2, 0.5), (0.5, 1.25), (1.3, 1.3), (-0.3, 0.5), (0.5, -0.4), (-0.2, 1.4)])
def test_a_stroke_wholly_off_the_canvas_paints_nothing(x, y):
    """A stroke entirely outside the canvas (beyond any edge or corner) rasterises to zero alpha on the
    tiled path as on the plain one, and its crop lies inside the canvas. Bug fixed: beyond the right
    or bottom edge the tiled path (the default) listed tiles off the canvas and `rasterize` raised
    IndexError, while `rasterize(..., tiled=False)` gave zeros."""
    from kaogen.render.rasterize import rasterize, rasterize_crops

    H, W = 64, 40
    s = S.make_strokes(x0=x, y0=y, x1=x + 0.05, y1=y, x2=x + 0.1, y2=y + 0.05, z0=0.5, z2=0.2,
                       w0=1.0, w2=1.0, r=0.0, g=0.0, b=0.0)[None]
    for tiled in (True, False):
        assert rasterize(s, H, W, tiled=tiled).abs().max() == 0
        (c,) = rasterize_crops(s, H, W, tiled=tiled)
        h, w = c.alpha.shape
        assert 0 <= c.top and c.top + h <= H and 0 <= c.left and c.left + w <= W
        assert c.alpha.abs().sum() == 0


def test_float64_strokes_keep_float64_precision_on_the_tiled_path():
    """rasterize() computes float64 strokes in float64 (rasterize.py's promise) on the tiled path as on
    the plain one: the two agree to 1e-12, not to float32's 1e-7. Guards against the full-canvas
    buffer the tiles are scattered into defaulting to float32."""
    from kaogen.render.rasterize import rasterize

    s = S.random_strokes(16, gen(4)).double()
    tiled = rasterize(s, 40, 56)
    assert tiled.dtype == torch.float64
    torch.testing.assert_close(tiled, rasterize(s, 40, 56, tiled=False), atol=1e-12, rtol=0)


def test_tiles_to_canvas_stays_on_the_tiles_device_and_reads_nothing_back():
    """Scattering stroke tiles into full canvases happens on the tiles' device with no host read-back
    (what a GPU run needs). Without a GPU: the tiles on the meta device ("another device") under
    StrictDevices (an op mixing devices fails, as on CUDA) and SyncCounter (what would wait for the
    GPU). Guards against buffers made on the default (CPU) device and a repeat_interleave without
    its output size (a device-to-host sync per call)."""
    from sync_counter import SyncCounter
    from test_render_device import StrictDevices

    from kaogen.render.tiles import StrokeTiles, stroke_tiles, tiles_to_canvas

    s = S.random_strokes(10, gen(5))
    t = stroke_tiles(s, 24, 40)
    ref = tiles_to_canvas(t, 24, 40)
    on = lambda x: x.to("meta")  # noqa: E731
    tm = StrokeTiles(on(t.ty0), on(t.tx0), on(t.th), on(t.tw), on(t.offset), on(t.alpha), t.boxes)
    with StrictDevices(), SyncCounter() as c:
        out = tiles_to_canvas(tm, 24, 40)
    assert out.device.type == "meta" and out.shape == ref.shape and out.dtype == ref.dtype
    assert c.total == 0, c.report()
    with SyncCounter() as c:
        tiles_to_canvas(t, 24, 40)
    assert c.total == 0, c.report()


def test_a_strokes_tiles_do_not_depend_on_the_other_strokes():
    """Each stroke's crop (tile box, values) is the one it gets when rasterised alone: a small stroke's
    box is its own, not grown to the largest stroke's radius (the module's promise: a small stroke
    never pays for a large one). Guards against the radius maximum taken over every stroke."""
    from kaogen.render.rasterize import rasterize_crops

    s = S.random_strokes(12, gen(6))
    s[0, 6:8] = 1.0                                      # one fat stroke
    s[1:, 6:8] *= 0.05                                   # and thin ones
    both = rasterize_crops(s, 96, 80)
    for i in range(len(s)):
        (alone,) = rasterize_crops(s[i:i + 1], 96, 80)
        assert (both[i].top, both[i].left, both[i].alpha.shape) == (alone.top, alone.left, alone.alpha.shape)
        torch.testing.assert_close(both[i].alpha, alone.alpha, atol=0, rtol=0)
