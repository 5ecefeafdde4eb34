"""The renderer on every device: host syncs per painting, the strokes' device by default, CPU
generators for device strokes, SVG from device strokes, half-precision strokes, autocast, the
brush-kind seam. Device-parametrised tests run on the CPU here and on CUDA under `pytest -m cuda`.

Without a GPU the CUDA rules are checked by stand-ins: SyncCounter (what would wait for a GPU or
copy to it), the meta device as "another device" with StrictDevices (an op mixing devices fails, as
it does on CUDA) and GeneratorDevices (a generator draws only on its own device, as on CUDA).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from conftest import DEVICES
from sync_counter import SyncCounter
from torch.overrides import TorchFunctionMode

from kaogen.errors import KaogenError
from kaogen.render import strokes as S
from kaogen.render.export import ExportOptions, export
from kaogen.render.painting import Painting
from kaogen.render.rasterize import rasterize, rasterize_crops
from kaogen.render.soft import soft_rasterize

ROOT = Path(__file__).resolve().parents[1]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


class StrictDevices(TorchFunctionMode):
    """Fail any op whose tensor operands (other than 0-dim ones) live on different devices: what CUDA
    refuses and the meta device silently accepts."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        devs = set()

        def visit(x):
            if isinstance(x, torch.Tensor) and x.dim() > 0:
                devs.add(x.device.type)
            elif isinstance(x, (list, tuple)):
                for y in x:
                    visit(y)

        visit(args)
        visit(list(kwargs.values()))
        if len(devs) > 1:
            raise RuntimeError(f"{getattr(func, '__name__', func)} mixes devices {sorted(devs)}")
        return func(*args, **kwargs)


class GeneratorDevices(TorchFunctionMode):
    """Fail a random draw on another device than its generator's (CUDA: "Expected a 'cuda' device type
    for generator but found 'cpu'"; the CPU and meta devices let it pass)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        g, dev = kwargs.get("generator"), kwargs.get("device")
        if isinstance(g, torch.Generator) and dev is not None and torch.device(dev).type != g.device.type:
            raise RuntimeError(f"{func.__name__} on {dev} with a {g.device.type} generator")
        return func(*args, **kwargs)


def demo(n: int, device="cpu") -> Painting:
    s = S.random_strokes(n, gen(n))
    s[:, 6:8] *= torch.linspace(1.0, 0.1, n)[:, None]
    return Painting(s.to(device), background=(0.93, 0.89, 0.8))


# ------------------------------------------------------------------------------------------ host syncs

@pytest.mark.parametrize("suffix", [".gif", ".png", ".svg", ".mp4"])
def test_export_host_syncs_do_not_grow_with_the_stroke_count(tmp_path, suffix):
    """Exporting N or 4N strokes makes the same few host synchronisations and no host-to-device copy
    (it was 5 per stroke: int() of every tile box; the SVG writer 110 per stroke). Counts for a
    200-stroke GIF export: 1105 syncs + 6 copies before, 4 syncs + 0 copies after."""
    counts = []
    for n in (50, 200):                                       # the same 51 frames (1 and 4 strokes per frame)
        p = demo(n)
        with SyncCounter() as c:
            export(p, tmp_path / f"p{n}{suffix}", ExportOptions(size=64, hold=0.5))
        counts.append((dict(c.counts), c.report()))
    assert counts[0][0] == counts[1][0], counts
    assert counts[1][0].get("h2d", 0) == 0, counts[1][1]
    assert sum(counts[1][0].values()) <= 6, counts[1][1]


def test_render_and_rasterise_syncs_are_per_call(tmp_path):
    """Painting.render, rasterize_crops and soft_rasterize: a fixed number of syncs per call."""
    for fn, bound in [(lambda p: p.render(64), 4), (lambda p: rasterize_crops(p.strokes, 64, 64), 2),
                      (lambda p: rasterize(p.strokes, 64, tiled=False), None),
                      (lambda p: soft_rasterize(p.strokes, 64), 1)]:
        totals = []
        for n in (16, 64):
            p = demo(n)
            with SyncCounter() as c:
                fn(p)
            totals.append(c.total)
        if bound is not None:
            assert totals[0] == totals[1] <= bound, totals
        else:                                                 # the plain path: per window group, not per stroke
            assert totals[1] < 64, totals


# --------------------------------------------------------------------------------- the strokes' device

@pytest.mark.parametrize("device", DEVICES)
def test_render_follows_the_strokes_device(device):
    p = demo(30, device)
    canvas = p.render(48)
    assert canvas.device.type == device and canvas.shape == (3, 48, 48)
    ref = demo(30).render(48)
    torch.testing.assert_close(canvas.cpu(), ref, atol=1e-5, rtol=0)
    assert p.render(48, device="cpu").device.type == "cpu"
    stages = list(p.stages(48, every=10))
    assert [k for k, _ in stages] == [0, 10, 20, 30] and all(c.device.type == device for _, c in stages)


class FakePainter:
    """The interface brush_crops needs: painter(shape (n, 9), z (n, noise)) -> alpha (n, 64, 64), `gen`."""

    def __init__(self, device="cpu"):
        self.gen = torch.nn.Linear(17, 1).to(device)
        self.gen.noise = 8
        with torch.no_grad():
            self.gen.weight.fill_(0.1)
            self.gen.bias.fill_(-0.5)
        yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
        self.grid = torch.stack([xx, yy]).to(device)

    def __call__(self, shape, z):
        d = (self.grid[None] - shape[:, 0:2, None, None]).square().sum(1)         # a blob at (x0, y0)
        return torch.exp(-d / (0.02 + 0.1 * shape[:, 8, None, None])) * torch.sigmoid(self.gen(torch.cat([shape, z], 1)))[..., None]


def brush_painting(device="cpu", painter_device="cpu", n=12) -> Painting:
    from kaogen.render import brush_strokes as B

    s = torch.rand(n, B.NUM_FIELDS, generator=gen(3))
    s[:, 2] = 0.25 + 0.5 * s[:, 2]                                                  # block side
    return Painting(s.to(device), (0.9, 0.9, 0.8), kind="neural-brush", painter=FakePainter(painter_device))


@pytest.mark.parametrize("device", DEVICES)
def test_neural_brush_renders_where_asked_wherever_the_painter_is(device):
    """Crops come from the painter's device but land on the canvas' (they stayed on the painter's and
    the default canvas was the CPU: a painting made on a GPU crashed when rendered). The meta device
    stands in for the other device on a CPU-only machine."""
    other = "meta" if device == "cpu" else "cpu"
    ref = brush_painting().render(40)
    with StrictDevices():
        canvas = brush_painting(device, device).render(40)             # default: the strokes' device
        assert canvas.device.type == device
        elsewhere = brush_painting(device, device).render(40, device=other)
        assert elsewhere.device.type == other and elsewhere.shape == (3, 40, 40)
        if device != "cpu":                                            # a GPU painter, CPU strokes (the crash)
            mixed = brush_painting("cpu", device).render(40)
            assert mixed.device.type == "cpu"
            torch.testing.assert_close(mixed, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(canvas.cpu(), ref, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------ random strokes

@pytest.mark.parametrize("device", DEVICES)
def test_random_strokes_from_a_cpu_generator_on_any_device(device):
    """A CPU generator draws on the CPU and the strokes are moved: the same strokes on every device."""
    with GeneratorDevices():
        s = S.random_strokes(20, gen(5), device=device)
        assert s.device.type == device and s.shape == (20, 13)
        assert S.random_strokes(4, gen(5), device="meta").device.type == "meta"   # "another device"
    assert torch.equal(s.cpu(), S.random_strokes(20, gen(5)))
    if device != "cpu":
        g = torch.Generator(device=device).manual_seed(5)
        assert S.random_strokes(3, g).device.type == device


# -------------------------------------------------------------------------------------------- SVG

@pytest.mark.parametrize("device", DEVICES)
def test_svg_export_of_device_strokes(tmp_path, device):
    """The SVG of strokes on any device is the CPU's, byte for byte (it created CPU tensors and
    crashed on CUDA strokes); the strokes are copied to the host once."""
    p, q = demo(25), demo(25, device)
    a = export(p, tmp_path / "a.svg", ExportOptions(size=90)).read_text()
    with SyncCounter() as c:
        b = export(q, tmp_path / "b.svg", ExportOptions(size=90)).read_text()
    assert a == b and len(ET.fromstring(b).findall("{http://www.w3.org/2000/svg}path")) == 25
    assert c.counts.get("h2d", 0) == 0 and c.total <= 6, c.report()


# ---------------------------------------------------------------------------- precision and autocast

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_strokes_rasterise_like_float32(device, dtype):
    """float16 strokes gave NaN alphas (the cubic's coefficients overflow) and bfloat16 ones were off
    by a whole alpha at 512 px: the rasterisers compute in float32, so the alpha of half strokes is
    the float32 alpha of the same (rounded) strokes, returned in the strokes' dtype."""
    s = S.random_strokes(12, gen(8), device=device).to(dtype)
    exact = s.float()
    for fn, H in [(rasterize, 512), (lambda x, H: rasterize(x, H, tiled=False), 256), (soft_rasterize, 128)]:
        a = fn(s, H)
        assert a.dtype == dtype and bool(torch.isfinite(a).all())
        torch.testing.assert_close(a.float(), fn(exact, H), atol=4e-3, rtol=0)
    crops = rasterize_crops(s, 128, 128)
    assert all(c.alpha.dtype == dtype and bool(torch.isfinite(c.alpha).all()) for c in crops)
    x = s.clone().requires_grad_(True)                     # gradients reach float16 / bfloat16 strokes
    soft_rasterize(x, 64).sum().backward()
    assert x.grad.dtype == dtype and bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0


@pytest.mark.parametrize("device", DEVICES)
def test_autocast_does_not_change_the_rasterisers(device):
    """Inside a bfloat16 autocast region (kaogen.device.autocast, as the agents train) the exact
    rasteriser gives the plain float32 result bit for bit, and strokes that a layer emits in bfloat16
    there rasterise like their float32 copy."""
    from kaogen.device import autocast

    s = S.random_strokes(10, gen(9), device=device)
    plain, soft = rasterize(s, 256), soft_rasterize(s, 96)
    layer = torch.nn.Linear(13, 13).to(device)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(13))
        layer.bias.zero_()
    with autocast(device):
        assert torch.equal(rasterize(s, 256), plain)
        torch.testing.assert_close(soft_rasterize(s, 96), soft, atol=1e-6, rtol=0)
        emitted = layer(s).clamp(0, 1)                     # bfloat16 under autocast
        assert emitted.dtype == torch.bfloat16
        a = rasterize(emitted, 512)
        b = soft_rasterize(emitted, 128)
    torch.testing.assert_close(a.float(), rasterize(emitted.float(), 512), atol=4e-3, rtol=0)
    torch.testing.assert_close(b.float(), soft_rasterize(emitted.float(), 128), atol=4e-3, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_non_finite_strokes_are_refused_in_one_line(device):
    s = S.random_strokes(6, gen(10), device=device)
    s[3, 4] = float("nan")
    t = S.random_strokes(6, gen(10), device=device)
    t[0, 6] = float("inf")
    for bad in (s, t, s.half()):
        for call in (lambda: S.check_strokes(bad), lambda: rasterize(bad, 32), lambda: rasterize(bad, 32, tiled=False),
                     lambda: rasterize_crops(bad, 32, 32), lambda: soft_rasterize(bad, 32)):
            with pytest.raises(KaogenError, match="NaN or infinite") as e:
                call()
            assert "\n" not in str(e.value)
    with pytest.raises(ValueError):                        # still a ValueError / TypeError for old callers
        S.check_strokes(torch.zeros(2, 12))
    with pytest.raises(TypeError):
        S.check_strokes(torch.zeros(2, 13, dtype=torch.long))


# -------------------------------------------------------------------------------- the brush-kind seam

def test_the_renderer_imports_no_painting_method():
    """kaogen.render sits below kaogen.ist, kaogen.l2p and kaogen.gan: none of its modules imports
    them (brush_strokes.py imported kaogen.ist.painter); neural-brush painters come in through
    register_brush."""
    upper = ("kaogen.ist", "kaogen.l2p", "kaogen.gan", "kaogen.cli")
    bad = []
    for path in sorted((ROOT / "kaogen" / "render").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            bad += [f"{path.name}:{node.lineno} {n}" for n in names if n.startswith(upper)]
    assert not bad, bad


def test_replaying_a_saved_neural_brush_painting(tmp_path):
    """In a fresh interpreter: without a registered loader, rendering a saved neural-brush painting is
    a one-line KaogenError that names the module to import; `kaogen render` registers it itself; after
    `import kaogen.ist.brush_kind` the public API renders it."""
    from kaogen.ist.painter import Generator, NeuralPainter

    torch.manual_seed(0)
    ck = NeuralPainter(Generator(noise=8, width=8), "classic/kabura").save(tmp_path / "painter.pt")
    p = brush_painting()
    p.provenance = {"method": "ist", "checkpoint": str(ck)}
    path = p.save(tmp_path / "p.json")
    script = f"""
import sys
from click.testing import CliRunner
from kaogen.errors import KaogenError
from kaogen.render.painting import Painting
p = Painting.load({str(path)!r})
try:
    p.render(32)
    print("RENDERED WITHOUT A LOADER")
except KaogenError as e:
    print("ERROR", str(e))
assert not any(m.startswith("kaogen.ist") for m in sys.modules), "kaogen.render imported kaogen.ist"
from kaogen.cli.main import cli
r = CliRunner().invoke(cli, ["render", {str(path)!r}, "-o", {str(tmp_path / "o.png")!r}, "--size", "32", "--device", "cpu"])
print("CLI", r.exit_code, r.output.strip())
print("AFTER", tuple(Painting.load({str(path)!r}).render(32).shape))
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in r.stdout.strip().splitlines())
    assert "import kaogen.ist.brush_kind" in lines["ERROR"] and "neural-brush" in lines["ERROR"], r.stdout
    assert lines["CLI"].startswith("0 wrote"), r.stdout
    assert lines["AFTER"] == "(3, 32, 32)"
    assert (tmp_path / "o.png").is_file()


def test_register_brush_seam():
    from kaogen.render import brush_strokes as B

    seen = []

    def loader(provenance, device):
        seen.append((provenance.get("tag"), device.type))
        return FakePainter(device)

    old = B._LOADERS.get("neural-brush")
    try:
        B.register_brush("neural-brush", loader)
        p = brush_painting()
        p.painter, p.provenance = None, {"tag": "x"}
        assert p.render(24).shape == (3, 24, 24) and seen == [("x", "cpu")]
        with pytest.raises(KaogenError, match="callable"):
            B.register_brush("neural-brush", "not a loader")
        with pytest.raises(KaogenError, match="register_brush"):
            B.load_painter({}, None, kind="spray")
    finally:
        if old is None:
            B._LOADERS.pop("neural-brush", None)
        else:
            B._LOADERS["neural-brush"] = old
    assert json.dumps(p.to_dict())                         # the painter is never saved


def test_dense_evaluation_equals_culling_and_reads_nothing_back():
    """On an accelerator a small call evaluates whole canvases with no host read-back (an agent's
    action: per action no sync at all); its values are the culled path's (culling skips zeros)."""
    from sync_counter import SyncCounter

    from kaogen.render.rasterize import DENSE_BUDGET, rasterize, use_dense
    from kaogen.render.soft import soft_rasterize
    from kaogen.render.strokes import random_strokes

    s = random_strokes(40, torch.Generator().manual_seed(3))
    culled, soft = rasterize(s, 64), soft_rasterize(s, 64, margin=64.0)
    with SyncCounter() as c:
        dense, dense_soft = rasterize(s, 64, dense=True), soft_rasterize(s, 64, dense=True)
    assert c.counts["sync"] == 0 and c.counts["h2d"] == 0, c.report()
    torch.testing.assert_close(dense, culled, atol=1e-6, rtol=0)
    torch.testing.assert_close(dense_soft, soft, atol=1e-6, rtol=0)
    meta = torch.empty(5 * 256, 13, device="meta")
    assert use_dense(meta, 64, 64) and not use_dense(s, 64, 64)      # accelerators only (an action of 256 agents)
    assert not use_dense(torch.empty(DENSE_BUDGET // 4096 + 1, 13, device="meta"), 64, 64)   # too large: cull
