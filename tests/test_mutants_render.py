"""Renderer guarantees that mutation testing (benchmarks/mutation.sh render/...) showed were unchecked.

Each test asserts a property a user sees (a value, a refusal, a file as other tools decode it) and
names the bug it guards against. Sizes are tiny so that the whole file runs in a few seconds.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kaogen.errors import KaogenError
from kaogen.images import tensor_to_uint8
from kaogen.render import strokes as S
from kaogen.render.composite import composite
from kaogen.render.export import ExportOptions, export


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255 ** 2 / max(mse, 1e-12))


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


# --------------------------------------------------------------------------------------- coverage

def test_dense_evaluation_stays_on_the_strokes_device_and_reads_nothing_back():
    """Whole-canvas evaluation (what an accelerator runs for agents' actions) makes its windows and
    pixel grids on the strokes' device and reads nothing back. Without a GPU: strokes on the meta
    device under StrictDevices (mixing devices fails, as on CUDA) and SyncCounter. Guards against
    window offsets or pixel coordinates made on the default (CPU) device."""
    from sync_counter import SyncCounter
    from test_render_device import StrictDevices

    from kaogen.render.coverage import alpha_in_windows, full_windows, hard_ramp

    s = S.random_strokes(6, gen(7))
    want = alpha_in_windows(s, full_windows(s, 12, 20), 12, 20, hard_ramp)
    m = s.to("meta")
    with StrictDevices(), SyncCounter() as c:
        win = full_windows(m, 12, 20)
        a = alpha_in_windows(m, win, 12, 20, hard_ramp)
    assert c.total == 0, c.report()
    assert a.device.type == "meta" and a.shape == want.shape == (6, 12, 20)
    assert win.top.device.type == "meta" and win.top.dtype == torch.long and win.left.dtype == torch.long
    assert (win.h, win.w) == (12, 20)


def test_a_window_is_the_smallest_holding_every_strokes_box():
    """stroke_windows: the common window of a batch is the largest of the strokes' own windows (a thin
    stroke's box is not grown by a fat stroke's radius), a small stroke's window is about its box (not
    the canvas), and every covered pixel lies inside its stroke's window. Guards against the radius
    maximum taken over every stroke and a window size computed from the box's corners wrongly."""
    from kaogen.render.coverage import stroke_windows
    from kaogen.render.rasterize import rasterize

    H = W = 64
    s = S.make_strokes(x0=[0.5, 0.1, 0.8], y0=[0.5, 0.3, 0.8], x1=[0.5, 0.5, 0.81], y1=[0.5, 0.3, 0.8],
                       x2=[0.5, 0.9, 0.82], y2=[0.5, 0.3, 0.81], z0=[1.0, 0.0, 0.0], z2=[1.0, 0.0, 0.0],
                       w0=1.0, w2=1.0, r=0.0, g=0.0, b=0.0)        # a fat dot, a long hairline, a speck
    alone = [stroke_windows(s[i:i + 1], H, W) for i in range(3)]
    batch = stroke_windows(s, H, W)
    assert (batch.h, batch.w) == (max(w.h for w in alone), max(w.w for w in alone)) == (36, 54)
    speck = alone[2]
    assert speck.h <= 6 and speck.w <= 6                             # 1.3 px long, 0.25 px radius
    full = rasterize(s, H, W, dense=True)
    for i, w in enumerate(alone):
        top, left = int(w.top[0]), int(w.left[0])
        inside = torch.zeros(H, W, dtype=torch.bool)
        inside[top:top + w.h, left:left + w.w] = True
        assert full[i].sum() > 0 and full[i][~inside].abs().max() == 0
    empty = stroke_windows(torch.zeros(0, S.NUM_FIELDS), H, W)
    assert len(empty.top) == len(empty.left) == 0 and 1 <= empty.h <= H and 1 <= empty.w <= W


def test_soft_values_do_not_depend_on_tracking_gradients():
    """soft_rasterize gives the same alpha whether or not the strokes require gradients (the
    gradient path recomputes the distance with autograd): bent strokes, where the curve's x and y
    terms both matter. Guards against a sign slip in that recomputation."""
    from kaogen.render.soft import soft_rasterize

    s = S.random_strokes(10, gen(8))
    plain = soft_rasterize(s, 24, 28)
    tracked = soft_rasterize(s.clone().requires_grad_(True), 24, 28)
    assert tracked.requires_grad
    torch.testing.assert_close(tracked.detach(), plain, atol=1e-5, rtol=0)


def test_gradients_of_a_stroke_shorter_than_a_pixel():
    """Gradients of a short (0.56 px), tapered stroke against finite differences (float64): its closest
    point still moves with the parameters (the implicit-function gradient of t*), although the
    curve's speed there is small (|B'|^2 < 1 px^2). Guards against thresholds that drop or scale that
    gradient for short strokes."""
    from kaogen.render.soft import soft_rasterize

    fn = lambda x: soft_rasterize(x, 8, 8, softness=0.7, margin=8).sum(0)  # noqa: E731
    s = S.make_strokes(x0=0.45, y0=0.5, x1=0.48, y1=0.52, x2=0.52, y2=0.5, z0=0.3, z2=0.0, w0=0.9, w2=0.3,
                       r=0.1, g=0.5, b=0.9).double()[None]
    assert torch.autograd.gradcheck(fn, (s.requires_grad_(True),), eps=1e-6, atol=1e-5)


# ----------------------------------------------------------------------------------------- export

def small_painting(n: int = 12, seed: int = 21, aspect: float = 1.0):
    from kaogen.render.painting import Painting

    s = S.random_strokes(n, gen(seed), min_opacity=0.5)
    s[:, 6:8] *= 0.3
    return Painting(s, background=(0.95, 0.9, 0.8), aspect=aspect)


def stage_pixels(p, size: int, every: int) -> list[np.ndarray]:
    """The painting's stages as uint8 pictures, rounded like every other kaogen image."""
    return [tensor_to_uint8(c) for _, c in p.stages(size, every)]


def gif_frames(path) -> tuple[list[np.ndarray], list[int], dict]:
    """Decoded (H, W, 3) frames, per-frame durations (ms) and the first frame's info, as Pillow reads them."""
    frames, durations = [], []
    with Image.open(path) as im:
        info = dict(im.info)
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
            frames.append(np.asarray(im.convert("RGB")))
    return frames, durations, info


def test_frame_plan_gives_about_60_frames_or_the_strokes_per_frame_asked():
    """Strokes per frame: as asked (at least 1: 0 and negatives are refused), else ceil(N / 60) so that
    a sequence has at most about 60 frames, never 0 strokes per frame. Guards against off-by-one frame
    budgets and a refusal that lets 0 through (an endless loop of empty frames)."""
    from kaogen.render.export import frame_plan

    assert [frame_plan(n, None) for n in (0, 1, 59, 60, 61, 120, 121, 600)] == [1, 1, 1, 1, 2, 2, 3, 10]
    assert frame_plan(7, 1) == 1 and frame_plan(7, 3) == 3 and frame_plan(0, 5) == 5
    for bad in (0, -1):
        with pytest.raises(KaogenError, match="at least 1"):
            frame_plan(10, bad)


def test_default_animation_has_about_60_frames(tmp_path):
    """A GIF of 61 strokes with default options: 2 strokes per frame, so stages 0, 2, ..., 60 and the
    finished 61: 32 frames."""
    p = small_painting(61, seed=3)
    frames, _, _ = gif_frames(export(p, tmp_path / "a.gif", ExportOptions(size=16)))
    assert len(frames) == 32


@pytest.mark.parametrize("size,ok", [(7, False), (8, True), (16384, True), (16385, False), (0, False)])
def test_export_size_limits(tmp_path, size, ok):
    """--size is refused outside 8..16384 px and accepted at both ends (checked before anything is
    rendered: an accepted size reaches the next check, here the missing output folder)."""
    p = small_painting(2)
    with pytest.raises(KaogenError) as e:
        export(p, tmp_path / "missing" / "a.png", ExportOptions(size=size))
    assert ("does not exist" in str(e.value)) == ok and ("--size" in str(e.value)) != ok


@pytest.mark.parametrize("fps,ok", [(0.0, False), (-1.0, False), (1e-3, True)])
def test_export_fps_must_be_positive(tmp_path, fps, ok):
    """--fps is refused at 0 and below and accepted for any positive rate, however small (checked before
    rendering). Guards against a check that lets 0 through (a division by zero in the writers) or
    refuses slow rates."""
    p = small_painting(2)
    with pytest.raises(KaogenError) as e:
        export(p, tmp_path / "missing" / "a.gif", ExportOptions(size=16, fps=fps))
    assert ("does not exist" in str(e.value)) == ok and ("--fps" in str(e.value)) != ok


def test_export_refusals_leave_nothing_behind(tmp_path, monkeypatch):
    """Unknown suffixes, SVG of non-Bezier strokes and a folder that is not writable are refused with a
    KaogenError and write nothing; suffixes are matched case-insensitively."""
    E = importlib.import_module("kaogen.render.export")
    from kaogen.render import brush_strokes as B
    from kaogen.render.painting import Painting

    p = small_painting(3)
    for name in ("a.tiff", "a.gif.bak", "a.txt"):
        with pytest.raises(KaogenError, match="unknown output type"):
            export(p, tmp_path / name, ExportOptions(size=16))
    brush = Painting(torch.rand(3, len(B.FIELDS), generator=gen(1)), kind="neural-brush")
    with pytest.raises(KaogenError, match="needs Bezier strokes"):
        export(brush, tmp_path / "b.svg", ExportOptions(size=16))
    real = os.access                                   # tmp_path (only) made read-only; root ignores chmod
    locked = lambda path, mode: not (mode & os.W_OK and Path(path) == tmp_path) and real(path, mode)  # noqa: E731
    monkeypatch.setattr(E.os, "access", locked)
    with pytest.raises(KaogenError, match="not writable"):
        export(p, tmp_path / "c.png", ExportOptions(size=16))
    monkeypatch.setattr(E.os, "access", real)
    assert sorted(x.name for x in tmp_path.iterdir()) == []
    out = export(p, tmp_path / "UPPER.GIF", ExportOptions(size=16))
    with Image.open(out) as im:
        assert im.format == "GIF" and im.n_frames == 4


def test_png_and_folder_frames_are_the_stages_exactly(tmp_path):
    """Lossless outputs hold the painting's pixels exactly: the PNG is the finished canvas, the folder's
    numbered PNG frames are the stages (0, every, ..., N), each rounded like tensor_to_uint8. Guards
    against frame rounding (x * 255 + 0.5, clamped) and stage batching (FRAME_BATCH_BYTES) that drop,
    repeat or shift frames."""
    E = importlib.import_module("kaogen.render.export")

    p = small_painting(10)
    still = np.asarray(Image.open(export(p, tmp_path / "a.png", ExportOptions(size=24))))
    np.testing.assert_array_equal(still, tensor_to_uint8(p.render(24)))
    stages = stage_pixels(p, 24, 3)
    for batch_bytes in (E.FRAME_BATCH_BYTES, 1, 2 * 24 * 24 * 3):
        E.FRAME_BATCH_BYTES, saved = batch_bytes, E.FRAME_BATCH_BYTES
        try:
            folder = export(p, tmp_path / f"frames{batch_bytes}", ExportOptions(size=24, strokes_per_frame=3))
        finally:
            E.FRAME_BATCH_BYTES = saved
        names = sorted(x.name for x in folder.iterdir())
        assert names == [f"frame_{i:05d}.png" for i in range(len(stages))] and len(stages) == 5
        for name, want in zip(names, stages):
            np.testing.assert_array_equal(np.asarray(Image.open(folder / name)), want)


def test_frame_rounding_at_the_ends_of_the_range():
    """Canvas values round to the nearest uint8 and clamp outside [0, 1]: 0 -> 0, 1 -> 255,
    0.5/255 -> 1, values past the ends -> 0 and 255."""
    from kaogen.render.export import _uint8

    c = torch.tensor([0.0, 1.0, 0.5 / 255 + 1e-6, 0.5 / 255 - 1e-6, -0.2, 1.3, 128 / 255]).view(1, 1, 7).expand(3, 1, 7)
    assert _uint8(c)[0, :, 0].tolist() == [0, 255, 1, 0, 0, 255, 128]
    assert _uint8(c).shape == (1, 7, 3)


def test_folder_export_replaces_an_old_folder_whole_and_fails_cleanly(tmp_path, monkeypatch):
    """A folder export replaces an existing folder of frames entirely (no stale frame from a longer
    earlier export), gets the user's usual folder mode (umask applied), and a failure half-way leaves
    the old folder as it was and no temporary behind."""
    from kaogen.atomic import _UMASK, TMP_MARK
    E = importlib.import_module("kaogen.render.export")

    p = small_painting(12)
    folder = export(p, tmp_path / "f", ExportOptions(size=16, strokes_per_frame=1))
    assert len(list(folder.iterdir())) == 13
    export(p, folder, ExportOptions(size=16, strokes_per_frame=6))
    assert sorted(x.name for x in folder.iterdir()) == [f"frame_{i:05d}.png" for i in range(3)]
    assert folder.stat().st_mode & 0o777 == 0o777 & ~_UMASK
    calls = []
    real_save = Image.Image.save

    def failing_save(self, fp, *a, **k):
        calls.append(Path(fp))
        if len(calls) == 2:
            raise OSError("disk full")
        return real_save(self, fp, *a, **k)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        export(p, folder, ExportOptions(size=16, strokes_per_frame=1))
    monkeypatch.undo()
    assert sorted(x.name for x in folder.iterdir()) == [f"frame_{i:05d}.png" for i in range(3)]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f"]
    # frames were written in a hidden temporary beside the folder (one rename on the same file system;
    # named so that clean_stale_temporaries finds what a killed export leaves)
    work = calls[0].parent
    assert work.parent == tmp_path and work.name.startswith(".f") and TMP_MARK in work.name
    with pytest.raises(KaogenError, match="does not exist"):
        E.write_folder([np.zeros((2, 2, 3), np.uint8)], tmp_path / "missing" / "f")


@pytest.mark.parametrize("fps,hold,delay,last", [(10, 1.5, 100, 1500), (100, 0.0, 20, 20), (12, 2.0, 80, 2000),
                                                 (4, 0.1, 250, 250), (25, 0.333, 40, 330),
                                                 (100 / 4.499, 0.10499, 40, 100)])   # 44.99 ms, 104.99 ms: round down
def test_gif_timing_as_decoders_read_it(tmp_path, fps, hold, delay, last):
    """GIF frame delays (Pillow's reading): 1/fps rounded to whole centiseconds, never under 20 ms (what
    browsers clamp to), the finished painting held `hold` seconds (never shorter than a frame); the
    animation loops forever."""
    p = small_painting(6)
    frames, durations, info = gif_frames(export(p, tmp_path / "a.gif",
                                                ExportOptions(size=16, fps=fps, hold=hold, strokes_per_frame=2)))
    assert durations == [delay] * 3 + [last]
    assert info.get("loop") == 0


def test_gif_reproduces_the_finished_painting_exactly(tmp_path):
    """With few colours, the GIF's one palette holds them all: every frame, the last (the finished
    painting) included, decodes to exactly its picture. Guards against a palette built without the
    last frame (a colour first seen there then snaps to the nearest earlier one)."""
    from kaogen.render.export import write_video

    canvases = []
    for k in range(20):
        c = torch.ones(3, 8, 8)
        c[:, : k % 8 + 1, :] = torch.tensor([0.1, 0.3, 0.7])[:, None, None]
        canvases.append(c)
    canvases[-1][:, 5:, 5:] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]     # only the last frame has red
    out = write_video(canvases, tmp_path / "v.gif", fps=10, hold=0.5)
    frames, durations, _ = gif_frames(out)
    assert len(frames) == 20 and durations == [100] * 19 + [500]
    for f, c in zip(frames, canvases):
        np.testing.assert_array_equal(f, tensor_to_uint8(c))


def test_global_palette_is_a_gif_palette():
    """global_palette (by default) makes a palette a GIF can hold: at most 256 colours, and it holds
    the colours of a picture that has few."""
    from kaogen.render.export import global_palette

    frames = [np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 200, np.uint8)]
    frames[1][0, 0] = (255, 0, 0)
    pal = global_palette(frames)
    colours = np.asarray(pal.getpalette(), np.uint8).reshape(-1, 3)
    assert len(colours) <= 256
    assert {(0, 0, 0), (200, 200, 200), (255, 0, 0)} <= {tuple(int(v) for v in c) for c in colours}


def test_write_video_formats_and_refusals(tmp_path):
    """write_video: .gif / .mp4 / .webp (any case), one frame per canvas (+ the held last frame in an
    MP4), refuses no canvases and other suffixes without writing anything."""
    import imageio.v2 as imageio

    from kaogen.render.export import write_video

    canvases = [torch.full((3, 10, 12), v) for v in (0.0, 0.5, 1.0)]
    with pytest.raises(KaogenError, match="no frames"):
        write_video([], tmp_path / "a.gif")
    for name in ("a.png", "a", "a.svg"):
        with pytest.raises(KaogenError, match="is .gif, .mp4 or .webp"):
            write_video(canvases, tmp_path / name)
    assert list(tmp_path.iterdir()) == []
    gif = write_video(canvases, tmp_path / "a.GIF", fps=5, hold=1.0)
    assert [f.mean().round() for f in gif_frames(gif)[0]] == [0, 128, 255]
    with Image.open(write_video(canvases, tmp_path / "a.webp", fps=5, hold=1.0)) as im:
        assert im.n_frames == 3
    with Image.open(write_video(canvases, tmp_path / "d.webp")) as im:      # defaults: 12 fps, 2 s hold
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            im.load()
            durations.append(im.info["duration"])
    assert durations == [83, 83, 2000]
    mp4 = write_video(canvases, tmp_path / "a.mp4", fps=5, hold=1.0)
    assert len(imageio.mimread(mp4, memtest=False)) == 3 + 5
    one = write_video(canvases[1:2], tmp_path / "one.mp4", fps=5, hold=0.4)         # a single canvas
    frames = imageio.mimread(one, memtest=False)
    assert len(frames) == 1 + 2 and frames[0].shape == (10, 12, 3) and abs(frames[-1].mean() - 128) < 4


@pytest.mark.parametrize("fps,hold,delay,last", [(10, 1.5, 100, 1500), (100, 0.0, 20, 20), (8, 0.0456, 125, 125),
                                                 (3, 0.5, 333, 500)])
def test_webp_timing_as_decoders_read_it(tmp_path, fps, hold, delay, last):
    """Animated WebP delays (Pillow's reading): 1/fps in whole ms, never under 20 ms, the finished
    painting held `hold` seconds (never shorter than a frame); it loops forever; frames show the stages."""
    p = small_painting(6)
    out = export(p, tmp_path / "a.webp", ExportOptions(size=16, fps=fps, hold=hold, strokes_per_frame=2))
    stages = stage_pixels(p, 16, 2)
    with Image.open(out) as im:
        assert im.info.get("loop") == 0
        durations, frames = [], []
        for i in range(im.n_frames):
            im.seek(i)
            im.load()                                  # Pillow reads a WebP frame's duration on load
            durations.append(im.info["duration"])
            frames.append(np.asarray(im.convert("RGB")))
    assert durations == [delay] * 3 + [last]
    assert len(frames) == len(stages) and min(psnr(a, b) for a, b in zip(frames, stages)) > 25   # lossy, 16 px


def mp4_boxes(path) -> list[str]:
    """The MP4 file's top-level box types, in file order."""
    data, boxes, i = path.read_bytes(), [], 0
    while i + 8 <= len(data):
        size = int.from_bytes(data[i:i + 4], "big")
        boxes.append(data[i + 4:i + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[i + 8:i + 16], "big")
        if size < 8:
            break
        i += size
    return boxes


@pytest.mark.parametrize("aspect,size,shape", [(15 / 8, 15, (8, 16)), (8 / 15, 15, (16, 8)), (2.0, 16, (8, 16)),
                                               (1.0, 13, (14, 14))])
def test_mp4_pads_odd_sides_with_edge_pixels_and_holds_the_end(tmp_path, aspect, size, shape):
    """MP4 (H.264 yuv420p) needs even sides: an odd height or width (each on its own) is padded by one
    copy of the edge row or column; every frame shows its stage, and the finished painting is held
    round(hold * fps) extra frames; the file's frame rate is fps; the index (moov) comes before the
    data (faststart: browsers play it while it downloads)."""
    import imageio.v2 as imageio

    p = small_painting(6, aspect=aspect)
    H, W = p.canvas_size(size)
    out = export(p, tmp_path / "a.mp4", ExportOptions(size=size, fps=8, hold=0.5, strokes_per_frame=3))
    reader = imageio.get_reader(out, format="FFMPEG")
    try:
        assert reader.get_meta_data()["fps"] == 8
        frames = [f for f in reader]
    finally:
        reader.close()
    assert len(frames) == 3 + 4
    assert frames[0].shape[:2] == shape
    stages = [a.astype(float) for a in stage_pixels(p, size, 3)]
    nearest = [int(np.argmin([np.abs(f[:H, :W].astype(float) - a).mean() for a in stages])) for f in frames]
    assert nearest == [0, 1, 2, 2, 2, 2, 2]
    got = frames[-1].astype(float)
    if shape[0] > H:                               # the padding row repeats the last row
        assert np.abs(got[H] - got[H - 1]).mean() < 6
    if shape[1] > W:
        assert np.abs(got[:, W] - got[:, W - 1]).mean() < 6
    boxes = mp4_boxes(out)
    assert "moov" in boxes and "mdat" in boxes and boxes.index("moov") < boxes.index("mdat")


def test_mp4_with_no_hold_has_one_frame_per_stage(tmp_path):
    """--hold 0: an MP4 has exactly one frame per stage, no held extra frame (guards against a minimum
    of one held frame)."""
    import imageio.v2 as imageio

    p = small_painting(6)
    out = export(p, tmp_path / "a.mp4", ExportOptions(size=16, fps=8, hold=0.0, strokes_per_frame=3))
    assert len(imageio.mimread(out, memtest=False)) == 3


def test_contact_sheet_lays_stages_evenly_in_a_grid():
    """The contact sheet: up to 12 cells, evenly spread over the sequence, first = blank, last =
    finished, left to right and top to bottom in 4 columns, 4 px white gaps; fewer frames than cells
    give one cell per frame."""
    from kaogen.render.export import contact_sheet

    frames = [np.full((5, 7, 3), i, np.uint8) for i in range(30)]
    sheet = contact_sheet(frames)
    assert sheet.shape == (3 * 5 + 4 * 4, 4 * 7 + 5 * 4, 3)
    cells = [sheet[4 + r * 9:4 + r * 9 + 5, 4 + c * 11:4 + c * 11 + 7] for r in range(3) for c in range(4)]
    shown = []
    for cell in cells:
        assert (cell == cell[0, 0]).all()
        shown.append(int(cell[0, 0, 0]))
    assert shown == np.linspace(0, 29, 12).round().astype(int).tolist() and shown[0] == 0 and shown[-1] == 29
    mask = np.ones(sheet.shape[:2], bool)
    for r in range(3):
        for c in range(4):
            mask[4 + r * 9:4 + r * 9 + 5, 4 + c * 11:4 + c * 11 + 7] = False
    assert (sheet[mask] == 255).all()
    few = contact_sheet(frames[:5])
    assert few.shape == (2 * 5 + 3 * 4, 4 * 7 + 5 * 4, 3)
    assert [int(few[4 + r * 9, 4 + c * 11, 0]) for r, c in [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]] == [0, 1, 2, 3, 4]
    assert (few[4 + 9:4 + 9 + 5, 4 + 11:] == 255).all()                    # the rest of the last row is white
    assert contact_sheet(frames[:1]).shape == (5 + 2 * 4, 4 * 7 + 5 * 4, 3)


def test_contact_sheet_png_shows_the_stages(tmp_path):
    """export(..., contact_sheet=True) to a PNG: a white sheet whose first cell is the blank canvas and
    whose last is the finished painting, pixel for pixel (PNG is lossless)."""
    p = small_painting(30)
    sheet = np.asarray(Image.open(export(p, tmp_path / "s.png", ExportOptions(size=16, contact_sheet=True,
                                                                            strokes_per_frame=1))))
    assert sheet.shape == (3 * 16 + 4 * 4, 4 * 16 + 5 * 4, 3) and sheet.dtype == np.uint8
    np.testing.assert_array_equal(sheet[4:20, 4:20], tensor_to_uint8(p.blank(16, 16)))
    np.testing.assert_array_equal(sheet[4 + 2 * 20:4 + 2 * 20 + 16, 4 + 3 * 20:4 + 3 * 20 + 16],
                                  tensor_to_uint8(p.render(16)))
    assert (sheet[:4] == 255).all() and (sheet[:, :4] == 255).all()


def test_svg_export_has_the_size_asked(tmp_path):
    """An SVG export's canvas is --size px on its longer side (width, height, viewBox)."""
    import xml.etree.ElementTree as ET

    root = ET.parse(export(small_painting(3, aspect=2.0), tmp_path / "a.svg", ExportOptions(size=100))).getroot()
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("100", "50", "0 0 100 50")


def test_animations_side_by_side_show_the_target_left_of_every_frame(tmp_path):
    """--side-by-side: every frame of an animation (and a contact sheet's cells) is the target, resized
    to the canvas, left of the stage."""
    p = small_painting(4)
    target = tmp_path / "t.png"
    Image.new("RGB", (30, 30), (0, 0, 255)).save(target)
    frames, _, _ = gif_frames(export(p, tmp_path / "a.gif", ExportOptions(size=16, side_by_side=str(target),
                                                                          strokes_per_frame=2)))
    stages = stage_pixels(p, 16, 2)
    assert len(frames) == 3
    for f, s in zip(frames, stages):
        assert f.shape == (16, 32, 3)
        assert np.abs(f[:, :16].astype(int) - [0, 0, 255]).max() <= 8
        assert psnr(f[:, 16:], s) > 30


@pytest.mark.parametrize("dense", [False, True])
def test_no_strokes_rasterise_to_no_alpha_on_every_path(dense):
    """An empty painting (0 strokes) is valid input everywhere: the exact, tiled and soft rasterisers
    give (0, H, W) (the soft one's windowed path raised "cannot reshape tensor of 0 elements")."""
    from kaogen.render.rasterize import rasterize
    from kaogen.render.soft import soft_rasterize

    none = torch.zeros(0, S.NUM_FIELDS)
    assert rasterize(none, 12, 10).shape == (0, 12, 10)
    soft = soft_rasterize(none, 12, 10, dense=dense)
    assert soft.shape == (0, 12, 10) and soft.dtype == none.dtype


def test_stroke_tiles_of_no_strokes_is_an_empty_well_formed_set():
    """stroke_tiles of zero strokes returns the same fields as for any other count, all empty: (0,)
    long tile boxes and offsets, a (0, 8, 8) alpha, an empty list of boxes. Guards against the early
    return for zero tiles dropping a field (None where a tensor is documented)."""
    from kaogen.render.tiles import TILE, stroke_tiles

    t = stroke_tiles(torch.zeros(0, S.NUM_FIELDS), 24, 40)
    for f in (t.ty0, t.tx0, t.th, t.tw, t.offset):
        assert isinstance(f, torch.Tensor) and f.shape == (0,) and f.dtype == torch.long
    assert t.alpha.shape == (0, TILE, TILE) and t.boxes == []


@pytest.mark.parametrize("chunk", [1, 3])
def test_stroke_tiles_do_not_depend_on_the_chunk_size(monkeypatch, chunk):
    """The tiles are culled (64 * CHUNK tile centres at a time) and evaluated (CHUNK tiles at a time)
    in chunks; with chunks far smaller than the stroke set (many chunks of each kind) every field
    and alpha value is the one of a single chunk. Guards against a chunk's slice that starts at 0 or
    runs to the end (what the real CHUNK shows only beyond 262,144 tiles)."""
    from kaogen.render import tiles as T

    s = S.random_strokes(16, gen(8))
    whole = T.stroke_tiles(s, 96, 104)
    assert len(whole.alpha) > 64 * chunk * 2                           # several culling chunks too
    monkeypatch.setattr(T, "CHUNK", chunk)
    parts = T.stroke_tiles(s, 96, 104)
    assert parts.boxes == whole.boxes
    for a, b in ((parts.ty0, whole.ty0), (parts.tx0, whole.tx0), (parts.th, whole.th), (parts.tw, whole.tw),
                 (parts.offset, whole.offset), (parts.alpha, whole.alpha)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
