"""Stroke renderer: rasterisers against brute force, soft -> exact, gradients, recovery, compositing, exports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import DEVICES
from PIL import Image

from kaogen.cli.main import cli
from kaogen.errors import KaogenError
from kaogen.render import strokes as S
from kaogen.render.composite import composite
from kaogen.render.export import ExportOptions, export
from kaogen.render.painting import Painting
from kaogen.render.rasterize import rasterize, rasterize_crops
from kaogen.render.soft import soft_rasterize


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def brute_force_alpha(s: torch.Tensor, H: int, W: int, samples: int = 3000) -> torch.Tensor:
    """The model of coverage.py evaluated by dense sampling of the curve (float64): (M, H, W)."""
    s = s.double()
    t = torch.linspace(0, 1, samples, dtype=torch.float64)
    p0, p1, p2 = S.points(s)
    pts = ((1 - t)[:, None] ** 2 * p0[:, None] + (2 * (1 - t) * t)[:, None] * p1[:, None]
           + (t ** 2)[:, None] * p2[:, None]) * torch.tensor([W, H], dtype=torch.float64)    # (M, T, 2)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5,
                            indexing="ij")
    pix = torch.stack([xs, ys], -1).reshape(-1, 2)                                             # (P, 2)
    out = []
    for m in range(len(s)):
        d = torch.cdist(pix, pts[m])                                                           # (P, T)
        dmin, k = d.min(1)
        tk = t[k]
        r = S.radius(s[m]) * min(H, W)
        w = S.opacity(s[m])
        rad = r[0] + (r[1] - r[0]) * tk
        op = w[0] + (w[1] - w[0]) * tk
        out.append(((rad - dmin + 0.5).clamp(0, 1) * op).reshape(H, W))
    return torch.stack(out)


def test_fields_are_named_not_sliced():
    s = S.make_strokes(x0=0.1, y0=0.2, x1=0.3, y1=0.4, x2=0.5, y2=0.6, z0=0.0, z2=1.0, w0=0.7, w2=0.8,
                       r=0.9, g=0.25, b=0.5)
    p0, p1, p2 = S.points(s)
    assert p0.tolist() == pytest.approx([0.1, 0.2]) and p2.tolist() == pytest.approx([0.5, 0.6])
    assert S.radius(s).tolist() == pytest.approx([1 / 256, 65 / 256])
    assert S.opacity(s).tolist() == pytest.approx([0.7, 0.8]) and S.color(s).tolist() == pytest.approx([0.9, 0.25, 0.5])
    with pytest.raises(ValueError, match="missing"):
        S.make_strokes(x0=1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("H, W", [(32, 32), (24, 40)])
def test_exact_rasteriser_matches_brute_force(H, W, device):
    s = S.random_strokes(24, gen(1))
    s[:4, 2:4] = (s[:4, 0:2] + s[:4, 4:6]) / 2          # straight strokes: the cubic is degenerate
    s[4, 0:6] = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5, 0.5])  # a dot
    a = rasterize(s.to(device), H, W)
    assert a.device.type == device
    ref = brute_force_alpha(s, H, W)
    a = a.cpu()
    assert a.shape == (24, H, W) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert (a.double() - ref).abs().max() < 0.02
    crops = rasterize_crops(s.to(device), H, W)
    for m, c in enumerate(crops):                           # windows hold the whole stroke
        assert c.alpha.device.type == device and isinstance(c.top, int) and isinstance(c.left, int)
        c.alpha = c.alpha.cpu()
        h, w = c.alpha.shape
        inside = torch.zeros(H, W, dtype=torch.bool)
        inside[c.top:c.top + h, c.left:c.left + w] = True
        assert float((a[m] * ~inside).abs().max()) == 0.0
        assert torch.equal(a[m, c.top:c.top + h, c.left:c.left + w], c.alpha)


def test_closest_point_matches_dense_search_at_128():
    """Float32 Cardano alone strays up to 0.26 px on some of these strokes; with the Newton step the
    closest-point distance must be within 0.01 px of a dense float64 search (straight strokes too)."""
    from kaogen.render.coverage import closest_point

    H = W = 128
    s = S.random_strokes(64, gen(1))[32:]                         # holds the strokes Cardano alone misses
    s[:4, 2:4] = (s[:4, 0:2] + s[:4, 4:6]) / 2                    # exactly straight: b = 0
    s[4:8, 2:4] = (s[4:8, 0:2] + s[4:8, 4:6]) / 2 + 1e-3          # nearly straight
    M = len(s)
    xs = (torch.arange(W) + 0.5).expand(M, 1, W).float()
    ys = (torch.arange(H) + 0.5).expand(M, H).reshape(M, H, 1).float()
    t = closest_point(s, xs, ys, H, W)[0]
    p0, p1, p2 = (p.double() * W for p in S.points(s))

    def curve(tt):  # (..., T) -> (..., T, 2) points in px, per stroke along dim 0
        shape = (M,) + (1,) * (tt.dim() - 1) + (2,)
        return ((1 - tt)[..., None] ** 2 * p0.reshape(shape) + (2 * (1 - tt) * tt)[..., None] * p1.reshape(shape)
                + (tt ** 2)[..., None] * p2.reshape(shape))

    pix = torch.stack(torch.broadcast_tensors(xs.double(), ys.double()), -1)              # (M, H, W, 2)
    ours = (curve(t.double()) - pix).norm(dim=-1)
    pts = curve(torch.linspace(0, 1, 1001, dtype=torch.float64).expand(M, 1001))          # (M, T, 2)
    ref = torch.stack([torch.cdist(pix[m].reshape(-1, 2), pts[m]).min(1).values.reshape(H, W) for m in range(M)])
    assert float((ours - ref).max()) < 0.01   # one-sided: the dense search can only over-estimate


def test_degenerate_strokes_are_finite_and_exact():
    """Point strokes (all three points equal), straight and doubled-back strokes: the solver mixes
    its branches with float masks, so an inf or NaN in the unused branch would leak into alpha."""
    H = W = 48
    s = S.random_strokes(12, gen(7))
    s[0:3, 2:6] = s[0:3, 0:2].repeat(1, 2)                       # P0 = P1 = P2: a disc (untapered:
    s[3:6, 2:4] = (s[3:6, 0:2] + s[3:6, 4:6]) / 2                # exactly straight
    s[6:9, 4:6] = s[6:9, 0:2]                                    # P2 = P0: doubles back on itself (untapered:
    flat = [0, 1, 2, 6, 7, 8]                                    # t and 1 - t, or every t, are equally close)
    s[flat, 7], s[flat, 9] = s[flat, 6], s[flat, 8]
    s[9:12, 2:4] = s[9:12, 0:2] + 1e-7                           # P1 on top of P0
    for tiled in (True, False):
        a = rasterize(s, H, W, tiled=tiled)
        assert bool(torch.isfinite(a).all())
        err = (a.double() - brute_force_alpha(s, H, W)).abs().flatten(1).amax(1)
        assert float(err.max()) < 0.02, err
    # a point stroke is a disc: alpha = clamp(r - d + 1/2, 0, 1) * w at distance d from the point
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    c = S.points(s[0])[0] * W
    r, w = float(S.radius(s[0])[0]) * W, float(S.opacity(s[0])[0])
    disc = (r - ((xs - c[0]) ** 2 + (ys - c[1]) ** 2).sqrt() + 0.5).clamp(0, 1) * w
    torch.testing.assert_close(rasterize(s[:1], H, W)[0], disc, atol=1e-5, rtol=0)


def test_batched_shapes_and_resolution_free():
    s = S.random_strokes(6, gen(2)).reshape(2, 3, 13)
    assert rasterize(s, 16, 16).shape == (2, 3, 16, 16)
    # The same stroke covers the same fraction of a 64 and a 256 canvas.
    one = S.random_strokes(1, gen(3), min_opacity=1.0)
    f64, f256 = rasterize(one, 64).mean(), rasterize(one, 256).mean()
    assert abs(float(f64 - f256)) < 0.01


@pytest.mark.parametrize("device", DEVICES)
def test_soft_converges_to_exact(device):
    s = S.random_strokes(8, gen(4), device=device)
    exact = rasterize(s, 32)
    errs = [float((soft_rasterize(s, 32, softness=k) - exact).abs().max()) for k in (0.5, 0.1, 0.01)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.015
    assert torch.allclose(soft_rasterize(s, 32, softness=0.0), exact, atol=1e-5)


def test_soft_gradcheck_float64():
    """Gradients of every geometric field against finite differences (float64, tiny canvas).

    With a taper (r0 != r2 or w0 != w2), alpha jumps where two arms of a strongly bent curve are
    equally close (the closest point switches), so the random bent strokes get constant radius and
    opacity, and the tapered stroke is gently bent.
    """
    fn = lambda x: soft_rasterize(x, 8, 8, softness=0.7, margin=8).sum(0)  # noqa: E731
    bent = S.random_strokes(2, gen(5), min_opacity=0.3).double()
    bent[:, 7] = bent[:, 6] = 0.2
    bent[:, 9] = bent[:, 8]
    tapered = S.make_strokes(x0=0.15, y0=0.3, x1=0.5, y1=0.45, x2=0.85, y2=0.7, z0=0.2, z2=0.05, w0=0.9, w2=0.4,
                             r=0.1, g=0.5, b=0.9).double()
    for s in (bent, tapered):
        assert torch.autograd.gradcheck(fn, (s.requires_grad_(True),), eps=1e-6, atol=1e-5)


def test_recover_known_strokes_by_optimisation():
    """Render a target from known strokes, perturb them, optimise back through the soft rasteriser."""
    torch.manual_seed(0)
    true = S.make_strokes(x0=torch.tensor([0.2, 0.7]), y0=torch.tensor([0.2, 0.3]), x1=torch.tensor([0.5, 0.6]),
                          y1=torch.tensor([0.6, 0.5]), x2=torch.tensor([0.8, 0.3]), y2=torch.tensor([0.3, 0.8]),
                          z0=0.15, z2=0.1, w0=1.0, w2=1.0, r=torch.tensor([0.8, 0.1]), g=0.2,
                          b=torch.tensor([0.1, 0.7]))
    H = 48

    def paint(s):
        canvas = torch.ones(1, 3, H, H)
        alpha = soft_rasterize(s, H, softness=0.5)
        return composite(canvas, alpha[None], S.color(s)[None])

    target = paint(true).detach()
    guess = (true + 0.06 * torch.randn_like(true)).clamp(0, 1)
    guess[:, 8:10] = 1.0
    guess.requires_grad_(True)
    opt = torch.optim.Adam([guess], lr=0.01)
    start = float(((paint(guess) - target) ** 2).mean().detach())
    for _ in range(150):
        opt.zero_grad()
        loss = ((paint(guess) - target) ** 2).mean()
        loss.backward()
        opt.step()
        with torch.no_grad():
            guess.clamp_(0, 1)
    end = float(((paint(guess) - target) ** 2).mean().detach())
    assert end < start / 20
    assert (S.color(guess) - S.color(true)).abs().max() < 0.05


@pytest.mark.parametrize("device", DEVICES)
def test_composite_formula_and_prefix_replay(device):
    canvas = torch.rand(2, 3, 5, 5, generator=gen(6)).to(device)
    alpha = torch.rand(2, 5, 5, generator=gen(7)).to(device)
    color = torch.rand(2, 3, generator=gen(8)).to(device)
    out = composite(canvas, alpha, color)
    assert torch.allclose(out, canvas * (1 - alpha[:, None]) + alpha[:, None] * color[:, :, None, None])
    p = Painting(S.random_strokes(30, gen(9), device=device), background=(0.9, 0.85, 0.7))
    stages = dict(p.stages(64, every=10))
    assert sorted(stages) == [0, 10, 20, 30]
    assert torch.allclose(stages[0], p.blank(64, 64))
    assert torch.allclose(stages[20], p.render(64, upto=20), atol=1e-6)
    # The batched path (full canvases) paints the same picture as the windowed one.
    full = composite(p.blank(64, 64)[None], rasterize(p.strokes, 64)[None], S.color(p.strokes)[None])
    assert torch.allclose(full[0], stages[30], atol=1e-5)


def test_painting_json_round_trip_and_errors(tmp_path):
    p = Painting(S.random_strokes(5, gen(10)), background=(1.0, 0.9, 0.8), aspect=1.5, provenance={"seed": 3})
    path = p.save(tmp_path / "p.json")
    q = Painting.load(path)
    assert torch.allclose(q.strokes, p.strokes, atol=1e-6) and q.aspect == 1.5 and q.provenance == {"seed": 3}
    assert q.canvas_size(300) == (200, 300)
    good = json.loads(path.read_text())
    for mutate, msg in [
        (lambda d: d.update(format="x"), "format"),
        (lambda d: d["strokes"].append([0.5] * 12), "stroke 5 is not a list of 13"),
        (lambda d: d["strokes"].append([2.0] * 13), "outside"),
        (lambda d: d.update(stroke_kind="spray"), "unknown stroke kind"),
        (lambda d: d["canvas"].update(background=[1, 1]), "background"),
    ]:
        d = json.loads(json.dumps(good))
        mutate(d)
        (tmp_path / "bad.json").write_text(json.dumps(d))
        with pytest.raises(KaogenError, match=msg):
            Painting.load(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(KaogenError, match="not valid JSON"):
        Painting.load(tmp_path / "bad.json")


@pytest.fixture
def painting():
    s = S.random_strokes(40, gen(11))
    s[:, 6:8] *= torch.linspace(1, 0.2, 40)[:, None]
    return Painting(s, background=(0.95, 0.92, 0.85))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255 ** 2 / max(mse, 1e-12))


def test_gif_export(tmp_path, painting):
    out = export(painting, tmp_path / "a.gif", ExportOptions(size=64, fps=50, strokes_per_frame=4, hold=1.5))
    png = np.asarray(Image.open(export(painting, tmp_path / "a.png", ExportOptions(size=64))))
    with Image.open(out) as im:
        assert im.n_frames == 11
        durations, palettes, decoded = [], set(), []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
            if im.palette is not None:
                palettes.add(bytes(im.palette.palette))
            decoded.append(np.asarray(im.convert("RGB")))
        last = decoded[-1]
    # Every frame (the rectangle that changed, drawn over the previous frame) shows its stage.
    stages = [(c.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8) for _, c in painting.stages(64, 4)]
    assert len(stages) == len(decoded) and min(psnr(a, b) for a, b in zip(decoded, stages)) > 30
    assert min(durations) >= 20 and durations[-1] == 1500
    assert len(palettes) == 1                       # one global palette: no flicker
    assert psnr(last, png) > 30


def test_gif_decodes_to_frames_of_one_shape_in_every_decoder(tmp_path, painting):
    """Issue 15: imageio.v3.imread(gif, index=None) raised "all input arrays must have the same shape"
    (the first frame came back RGB, the later ones, which used a transparent index, RGBA). Every
    decoder here (imageio v3 and v2 through Pillow, Pillow itself, ffmpeg) gets the same number of
    (H, W, 3) frames showing the stages; no frame relies on transparency (which browsers and decoders
    treat differently); one global palette; a sensible size."""
    import subprocess

    import imageio.v3 as iio
    import imageio_ffmpeg

    out = export(painting, tmp_path / "a.gif", ExportOptions(size=64, fps=10, strokes_per_frame=4, hold=1.0))
    stages = [(c.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8) for _, c in painting.stages(64, 4)]
    frames = iio.imread(out, index=None)                                     # imageio's default reader
    assert frames.shape == (len(stages), 64, 64, 3) and frames.dtype == np.uint8
    assert min(psnr(a, b) for a, b in zip(frames, stages)) > 30
    v2 = imageio.mimread(out)
    assert len(v2) == len(stages) and {f.shape for f in v2} == {(64, 64, 3)}
    with Image.open(out) as im:
        assert "transparency" not in im.info and im.info.get("background", 0) < 256
        pil = []
        for i in range(im.n_frames):
            im.seek(i)
            assert "transparency" not in im.info and im.disposal_method in (0, 1)
            pil.append(np.asarray(im.convert("RGB")))
    assert np.array_equal(np.stack(pil), frames)
    ff = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(out), "-fps_mode", "passthrough",
                         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, timeout=120)
    assert ff.returncode == 0, ff.stderr.decode()[-500:]
    decoded = np.frombuffer(ff.stdout, np.uint8)
    assert decoded.size == len(stages) * 64 * 64 * 3                        # frame count and size
    assert np.array_equal(decoded.reshape(-1, 64, 64, 3), frames)
    assert out.stat().st_size < 0.25 * frames.nbytes                        # measured: 0.14


def test_mp4_webp_folder_svg_sheet(tmp_path, painting):
    mp4 = export(painting, tmp_path / "a.mp4", ExportOptions(size=63, fps=10, strokes_per_frame=8, hold=1.0))
    frames = imageio.mimread(mp4, memtest=False)
    assert frames[0].shape[:2] == (64, 64)           # odd size padded to even for yuv420p
    assert len(frames) == 6 + 10
    webp = export(painting, tmp_path / "a.webp", ExportOptions(size=32, strokes_per_frame=10))
    with Image.open(webp) as im:
        assert im.n_frames == 5
    folder = export(painting, tmp_path / "frames", ExportOptions(size=32, strokes_per_frame=10))
    assert sorted(p.name for p in folder.iterdir()) == [f"frame_{i:05d}.png" for i in range(5)]
    svg = export(painting, tmp_path / "a.svg", ExportOptions(size=100))
    root = ET.parse(svg).getroot()
    assert len(root.findall("{http://www.w3.org/2000/svg}path")) == 40
    sheet = export(painting, tmp_path / "s.png", ExportOptions(size=32, contact_sheet=True, strokes_per_frame=1))
    assert Image.open(sheet).size == (4 * 32 + 5 * 4, 3 * 32 + 4 * 4)
    target = tmp_path / "t.png"
    Image.new("RGB", (10, 20), (255, 0, 0)).save(target)
    sbs = export(painting, tmp_path / "sbs.png", ExportOptions(size=32, side_by_side=str(target)))
    assert Image.open(sbs).size == (64, 32) and Image.open(sbs).getpixel((0, 0)) == (255, 0, 0)


def test_svg_matches_the_raster(tmp_path):
    """A tapered stroke's outline polygon covers what the rasteriser covers."""
    s = S.make_strokes(x0=0.2, y0=0.3, x1=0.5, y1=0.9, x2=0.8, y2=0.3, z0=0.3, z2=0.05, w0=1, w2=1, r=0, g=0, b=0)
    from PIL import ImageDraw

    from kaogen.render.svg import stroke_outline

    d = stroke_outline(s, 128, 128, samples=64)
    pts = []
    for chunk in d.replace("Z", "").replace("M", "L").split("L")[1:]:
        head, *arc = chunk.split("A")
        pts.append(tuple(map(float, head.split(","))))
        if arc:  # "rx,ry 0 0 1 x,y": keep the arc's end point (the cap becomes a chord)
            pts.append(tuple(map(float, arc[0].split()[-1].split(","))))
    poly = Image.new("L", (128, 128), 0)
    draw = ImageDraw.Draw(poly)
    draw.polygon(pts, fill=255)
    for (x, y), r in zip([(0.2 * 128, 0.3 * 128), (0.8 * 128, 0.3 * 128)], (S.radius(s) * 128).tolist()):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=255)  # the round caps the arcs draw
    raster = rasterize(s[None], 128)[0].numpy() > 0.5
    vec = np.asarray(poly) > 127
    iou = (raster & vec).sum() / (raster | vec).sum()
    assert iou > 0.9


def test_render_cli(tmp_path, painting):
    p = painting.save(tmp_path / "p.json")
    runner = CliRunner()
    r = runner.invoke(cli, ["render", str(p), "-o", str(tmp_path / "o.gif"), "--size", "48"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["render", str(p), "-o", str(tmp_path / "o.gif")])
    assert r.exit_code == 1 and "already exists" in r.output
    r = runner.invoke(cli, ["render", str(p), "-o", str(tmp_path / "o.tiff")])
    assert r.exit_code == 1 and "unknown output type" in r.output and not (tmp_path / "o.tiff").exists()
    r = runner.invoke(cli, ["render", str(p), "-o", str(tmp_path / "no" / "o.gif")])
    assert r.exit_code == 1 and "does not exist" in r.output
    (tmp_path / "bad.json").write_text('{"format": "kaogen-painting", "version": 1, "strokes": "x"}')
    r = runner.invoke(cli, ["render", str(tmp_path / "bad.json"), "-o", str(tmp_path / "b.png")])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "must be a list" in r.output
    cfg = tmp_path / "c.toml"
    cfg.write_text("size = 40\nfps = 5.0\n")
    r = runner.invoke(cli, ["render", str(p), "-o", str(tmp_path / "c.png"), "--config", str(cfg)])
    assert r.exit_code == 0 and Image.open(tmp_path / "c.png").size == (40, 40)
    cfg.write_text("sise = 40\n")
    r = runner.invoke(cli, ["render", str(p), "-o", str(tmp_path / "d.png"), "--config", str(cfg)])
    assert r.exit_code == 2 and "unknown key 'sise'" in r.output


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("H,W", [(128, 128), (37, 61), (300, 200)])
def test_tiled_fast_path_equals_the_plain_windowed_path(H, W, device):
    """The tile-culled rasteriser (default) against the plain windowed one: same alpha, crops and canvases."""
    g = torch.Generator().manual_seed(H + W)
    s = S.random_strokes(40, g, device=device)
    s[:10, 6:8] *= 0.02                                  # hairlines: most of their tiles are culled
    s[10:15, 0:6] = s[10:15, 0:6] * 0.1                  # strokes in a corner
    s[15:20, 0:6] = 1 - s[15:20, 0:6] * 0.05             # and at the far edge
    torch.testing.assert_close(rasterize(s, H, W), rasterize(s, H, W, tiled=False), atol=1e-6, rtol=0)
    for tiled in (True, False):
        out = torch.zeros(len(s), H, W, device=device)
        for i, c in enumerate(rasterize_crops(s, H, W, tiled=tiled)):
            out[i, c.top:c.top + c.alpha.shape[0], c.left:c.left + c.alpha.shape[1]] = c.alpha
        torch.testing.assert_close(out, rasterize(s, H, W, tiled=False), atol=1e-6, rtol=0)
    # culling really happens: hairlines leave most of their box's tiles untouched
    from kaogen.render.tiles import stroke_tiles
    t = stroke_tiles(s[:10], H, W)
    assert (t.alpha.flatten(1).amax(1) == 0).float().mean() > 0.3


def test_closed_form_compositing_equals_the_loop_values_and_gradients():
    """composite_all (what refinement differentiates through) against composite's stroke-by-stroke loop,
    with opaque (alpha = 1) pixels, where the closed form's running products reach zero."""
    from kaogen.render.composite import composite, composite_all, visibility

    g = torch.Generator().manual_seed(5)
    alpha = torch.rand(2, 30, 12, 12, generator=g)
    alpha[alpha > 0.6] = 1.0
    color, canvas = torch.rand(2, 30, 3, generator=g), torch.rand(2, 3, 12, 12, generator=g)
    grads = []
    for f in (composite, composite_all):
        a, c = alpha.clone().requires_grad_(True), color.clone().requires_grad_(True)
        out = f(canvas, a, c)
        (out * torch.linspace(0, 1, 12)).square().sum().backward()
        grads.append((out.detach(), a.grad, c.grad))
    for x, y in zip(*grads):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)
    shown = visibility(alpha)
    assert shown[:, -1].equal(alpha[:, -1]) and (shown <= alpha).all()
    torch.testing.assert_close(shown.sum(1), 1 - (1 - alpha).prod(1), atol=1e-6, rtol=0)
