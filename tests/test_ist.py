"""Intrinsic style transfer: libmypaint through ctypes, stroke data sets, the GAN painter, the optimisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from kaogen.cli.main import cli
from kaogen.errors import KaogenError
from kaogen.ist import actions as A
from kaogen.ist.losses import content_loss, offline_loss
from kaogen.ist.painter import Generator, NeuralPainter
from kaogen.ist.transfer import ISTOptions, StrokeField, block_grid, phases, transfer
from kaogen.render.painting import Painting


def mypaint_or_skip():
    from kaogen.ist.mypaint import MyPaint

    try:
        return MyPaint.load()
    except KaogenError:
        pytest.skip("libmypaint is not installed (apt-get install libmypaint-1.5-1 mypaint-brushes)")


def action(**kw) -> np.ndarray:
    base = dict(x0=0.2, y0=0.5, x1=0.5, y1=0.3, x2=0.8, y2=0.5, p0=0.8, p2=0.8, size=0.5, r=0, g=0, b=0)
    base.update(kw)
    return np.array([base[f] for f in A.FIELDS], np.float32)


def test_libmypaint_draws_the_action():
    lib = mypaint_or_skip()
    from kaogen.ist.strokes import draw_alpha

    for name in ("classic/kabura", "classic/pencil"):
        brush = lib.brush(name)
        a = draw_alpha(brush, action())
        assert a.shape == (64, 64) and 0 <= a.min() and a.max() <= 1
        assert a[30:34, 30:34].max() > 0.05 or a[18:24, 30:34].max() > 0.05      # near the curve's middle
        assert a[58:, :].max() == 0 and a[:, :4].max() == 0                      # nothing far away
        light, firm = draw_alpha(brush, action(p0=0.2, p2=0.2)).sum(), draw_alpha(brush, action(p0=1, p2=1)).sum()
        assert firm > light
    ink = lib.brush("classic/kabura")
    thin, wide = draw_alpha(ink, action(size=0.1)), draw_alpha(ink, action(size=0.9))
    assert (wide > 0.1).sum() > 1.5 * (thin > 0.1).sum()
    with pytest.raises(KaogenError, match="no MyPaint brush"):
        lib.brush("no/such-brush")


def test_missing_library_is_one_line(monkeypatch):
    from kaogen.ist import mypaint

    monkeypatch.setattr(mypaint.MyPaint, "_instance", None)
    monkeypatch.setattr(mypaint, "LIBRARY_NAMES", ("libdoes-not-exist.so.9",))
    monkeypatch.setattr(mypaint.ctypes.util, "find_library", lambda name: None)
    r = CliRunner().invoke(cli, ["make-strokes", "--out", "x", "--count", "1"])
    assert r.exit_code == 1 and "apt-get install libmypaint-1.5-1 mypaint-brushes" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_make_strokes_is_deterministic_and_resumes(tmp_path):
    mypaint_or_skip()
    from kaogen.ist.strokes import load_strokes, make_strokes

    a = make_strokes("classic/kabura", 2100, tmp_path / "a", workers=2, seed=4, progress=False)
    b = make_strokes("classic/kabura", 2100, tmp_path / "b", workers=1, seed=4, progress=False)
    (acts_a, al_a), (acts_b, al_b) = load_strokes(a), load_strokes(b)
    assert acts_a.shape == (2100, 12) and al_a.shape == (2100, 64, 64)
    assert np.array_equal(acts_a, acts_b) and np.array_equal(al_a, al_b)        # worker count does not matter
    kept = (a / "shard-00000.npz").stat().st_mtime_ns
    (a / "shard-00001.npz").unlink()
    make_strokes("classic/kabura", 2100, a, workers=2, seed=4, progress=False)
    assert (a / "shard-00000.npz").stat().st_mtime_ns == kept                  # finished shards are not redone
    assert np.array_equal(load_strokes(a)[1], al_b)
    with pytest.raises(KaogenError, match="other settings"):
        make_strokes("classic/pencil", 2100, a, progress=False)


@pytest.fixture(scope="module")
def stroke_data(tmp_path_factory):
    """1100 libmypaint strokes of the ink brush pen (made once for this module's training tests)."""
    mypaint_or_skip()
    from kaogen.ist.strokes import make_strokes

    return make_strokes("classic/kabura", 1100, tmp_path_factory.mktemp("strokes"), workers=2, progress=False)


def test_painter_trains_toward_libmypaint_and_resumes(tmp_path, stroke_data):
    from kaogen.ist.train_painter import PainterTrainConfig, PainterTraining, train_painter

    data = stroke_data
    cfg = dict(batch=16, holdout=100, checkpoint_every=20, lr=1e-3, width=8)
    first = train_painter(PainterTrainConfig(steps=1, **cfg), data, tmp_path / "r0", progress=False)
    straight = train_painter(PainterTrainConfig(steps=40, **cfg), data, tmp_path / "r1", progress=False)
    assert straight["mae"] < 0.7 * first["mae"]
    train_painter(PainterTrainConfig(steps=20, **cfg), data, tmp_path / "r2", progress=False)
    resumed = train_painter(PainterTrainConfig(steps=40, **cfg), data, tmp_path / "r2", progress=False)
    assert resumed == straight
    p1, p2 = NeuralPainter.load(tmp_path / "r1" / "painter.pt"), NeuralPainter.load(tmp_path / "r2" / "painter.pt")
    for (n, a), (_, b) in zip(p1.gen.state_dict().items(), p2.gen.state_dict().items()):
        assert torch.equal(a, b), n
    assert p1.brush == "classic/kabura"
    rows = [json.loads(x) for x in (tmp_path / "r2" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [20, 40]
    assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) for r in rows)
    # the random state is saved as CPU byte tensors (kaogen.device.rng_state) ...
    from kaogen.checkpoint import load_checkpoint

    rng = load_checkpoint(tmp_path / "r2" / "state.pt").state["rng"]
    assert isinstance(rng, dict) and rng["gen.batch"].dtype == torch.uint8 and rng["gen.batch"].device.type == "cpu"
    # ... and a resumed run's Adam step counters stay CPU tensors while the moments sit with the parameters
    t = PainterTraining(PainterTrainConfig(steps=60, **cfg), data, tmp_path / "r2", device="cpu")
    assert t.step == 40
    for opt in (t.opt_g, t.opt_d):
        for group in opt.param_groups:
            for p in group["params"]:
                st = opt.state[p]
                assert torch.is_tensor(st["step"]) and st["step"].device.type == "cpu" and st["step"].item() == 40
                assert st["exp_avg"].device == p.device


def test_block_phases_cover_without_overlap():
    grid = block_grid(256)
    assert len(grid) == 49
    ph = phases(grid)
    assert sorted(i for p in ph for i in p) == list(range(49))
    for p in ph:
        cover = torch.zeros(256, 256)
        for i in p:
            t, l = grid[i]
            cover[t:t + 64, l:l + 64] += 1
        assert cover.max() == 1


@pytest.fixture
def painter():
    torch.manual_seed(0)
    return NeuralPainter(Generator(noise=8, width=8), "classic/kabura")


def test_painting_replays_the_optimised_canvas(painter, tmp_path):
    """The exported painting (stroke order, blocks, noise) renders exactly the canvas that was optimised."""
    target = torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(0))
    opts = ISTOptions(size=128, strokes=40, steps=1, loss="offline")
    field = StrokeField(target, painter, opts)
    with torch.no_grad():
        canvas = field.render(painter)
    p = field.painting(painter, 1.0, {"method": "ist", "brush": "classic/kabura"})
    assert len(p) == 9 * 5 and p.kind == "neural-brush"
    torch.testing.assert_close(p.render(128), canvas, atol=2e-4, rtol=0)
    # JSON round trip; the painter is found through the provenance's checkpoint (the loader brush_kind registers)
    import kaogen.ist.brush_kind  # noqa: F401
    ck = painter.save(tmp_path / "painter.pt")
    p.provenance["checkpoint"] = str(ck)
    q = Painting.load(p.save(tmp_path / "p.json"))
    assert q.kind == "neural-brush" and q.render(128).sub(canvas).abs().max() < 2e-3
    assert q.render(256).shape == (3, 256, 256)
    with pytest.raises(KaogenError, match="SVG"):
        from kaogen.render.export import export
        export(q, tmp_path / "x.svg")


def test_optimisation_gets_closer_to_the_target(painter):
    yy, xx = torch.meshgrid(torch.arange(128), torch.arange(128), indexing="ij")
    target = torch.ones(3, 128, 128) * torch.tensor([0.9, 0.85, 0.75])[:, None, None]
    target[:, ((xx - 64) ** 2 + (yy - 64) ** 2) < 900] = 0.1                     # a dark disc on paper
    start, _ = transfer(painter, target, ISTOptions(size=128, strokes=40, steps=0, loss="offline", robust=False))
    done, frames = transfer(painter, target, ISTOptions(size=128, strokes=40, steps=40, loss="offline", video_every=10))
    err = lambda p: ((p.render(128) - target) ** 2).mean().item()  # noqa: E731
    assert err(done) < 0.6 * err(start)
    assert len(frames) == 4 and frames[0].shape == (3, 128, 128)
    assert done.provenance["loss"] == "offline" and done.provenance["method"] == "ist"


def test_content_losses(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    name, fn = content_loss("auto")
    assert name == "offline" and fn is offline_loss
    with pytest.raises(KaogenError, match="AlexNet"):
        content_loss("lpips")
    x = torch.rand(1, 3, 32, 32)
    assert offline_loss(x, x).item() < 1e-6 and offline_loss(x, 1 - x).item() > 0.1


def test_paint_ist_cli(painter, tmp_path):
    ck = painter.save(tmp_path / "painter.pt")
    img = tmp_path / "in.png"
    from PIL import Image
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), np.uint8)).save(img)
    r = CliRunner().invoke(cli, ["paint", "--method", "ist", str(img), "-o", str(tmp_path / "o.gif"), "--checkpoint", str(ck),
                                 "--steps", "2", "--strokes", "49", "--loss", "offline", "--size", "64",
                                 "--optimisation-video", str(tmp_path / "opt.gif"), "--save-strokes", str(tmp_path / "p.json")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o.gif").is_file() and (tmp_path / "opt.gif").is_file()
    assert Painting.load(tmp_path / "p.json").aspect == pytest.approx(1.5)
    for flag in ("--divide", "--plan", "--refine"):
        r = CliRunner().invoke(cli, ["paint", "--method", "ist", str(img), "-o", str(tmp_path / "x.gif"), "--checkpoint",
                                     str(ck), flag, "2"])
        assert r.exit_code == 1 and "--plan" in r.output and not (tmp_path / "x.gif").exists(), (flag, r.output)


def test_train_painter_cli_device_and_amp(tmp_path, stroke_data):
    """--device and --amp/--no-amp reach the training; a device that is not there is a one-line error."""
    base = ["train-painter", "--strokes", str(stroke_data), "--no-progress"]
    cfg = tmp_path / "p.toml"
    cfg.write_text("steps = 2\nbatch = 8\nholdout = 100\ncheckpoint_every = 2\nwidth = 8\namp = true\n")
    r = CliRunner().invoke(cli, base + ["--out", str(tmp_path / "a"), "--config", str(cfg), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "(cpu, bf16 autocast)" in r.output
    from kaogen.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "a" / "state.pt").config["amp"] is True            # the config's amp
    r = CliRunner().invoke(cli, base + ["--out", str(tmp_path / "b"), "--config", str(cfg), "--no-amp"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(tmp_path / "b" / "state.pt").config["amp"] is False           # the flag wins
    if not torch.cuda.is_available():
        r = CliRunner().invoke(cli, base + ["--out", str(tmp_path / "c"), "--device", "cuda"])
        assert r.exit_code == 1 and "no CUDA GPU" in r.output and r.output.strip().count("\n") == 0 and not (tmp_path / "c").exists(), r.output


def test_train_painter_amp_is_close_to_float32(tmp_path, stroke_data):
    """bfloat16 autocast on the CPU: finite losses and fidelity close to the float32 run's, yet really bf16."""
    from kaogen.ist.train_painter import PainterTrainConfig, train_painter

    cfg = dict(steps=12, batch=16, holdout=100, checkpoint_every=6, lr=1e-3, width=8, adv_after=6)
    f32 = train_painter(PainterTrainConfig(**cfg), stroke_data, tmp_path / "f32", progress=False)
    bf16 = train_painter(PainterTrainConfig(amp=True, **cfg), stroke_data, tmp_path / "bf16", progress=False)
    for k in ("d_loss", "g_loss", "mae", "mse", "psnr"):
        assert np.isfinite(bf16[k]), k
        assert bf16[k] == pytest.approx(f32[k], rel=0.05, abs=0.02), (k, bf16[k], f32[k])
    assert bf16 != f32                                                   # autocast was on: not bit-equal


@pytest.mark.parametrize("size", [64, 96, 128, 160, 192, 224, 256, 288])
def test_every_accepted_canvas_size_paints(painter, size):
    """From one block (64 px: three empty phases) up: each accepted size paints, and the painting replays it."""
    target = torch.rand(3, 50, 70, generator=torch.Generator().manual_seed(size))
    opts = ISTOptions(size=size, strokes=1, steps=2, loss="offline")
    p, _ = transfer(painter, target, opts)
    m = (size - 64) // 32 + 1
    assert len(p) == m * m and torch.isfinite(p.strokes).all()
    field = StrokeField(target[:, :1, :1].expand(3, size, size).contiguous(), painter, opts)
    with torch.no_grad():
        canvas = field.render(painter)
    torch.testing.assert_close(field.painting(painter, 1.0, {}).render(size), canvas, atol=2e-4, rtol=0)


@pytest.mark.parametrize("kw", [dict(size=0), dict(size=32), dict(size=63), dict(size=65), dict(size=100),
                                dict(size=64.0), dict(size=True), dict(strokes=0), dict(steps=-1), dict(lr=0.0),
                                dict(video_every=-2), dict(paper=(1, 2, 3))])
def test_unpaintable_options_are_refused_in_one_line(kw):
    with pytest.raises(KaogenError) as e:
        ISTOptions(**kw)
    assert len(str(e.value).splitlines()) == 1 and "IST" in str(e.value)


def test_ist_host_syncs_per_step_do_not_grow_with_strokes(painter):
    """Index tensors are built once, on the canvas' device: an optimisation step copies nothing per stroke."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from sync_counter import SyncCounter

    target = torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(0))
    transfer(painter, target, ISTOptions(size=128, strokes=9, steps=2, loss="offline"))       # imports, caches
    counts = {}
    for strokes in (9, 72):                                                  # 1 and 8 strokes per block
        for steps in (0, 2, 6):
            with SyncCounter() as c:
                transfer(painter, target, ISTOptions(size=128, strokes=strokes, steps=steps, loss="offline"))
            counts[strokes, steps] = c.counts["sync"] + c.counts["h2d"], c.report()
    for strokes in (9, 72):
        per_step = (counts[strokes, 6][0] - counts[strokes, 2][0]) / 4
        assert per_step <= 20, (strokes, per_step, counts[strokes, 6][1])       # kornia's kernels and affine only
        assert counts[strokes, 0][0] <= 40, counts[strokes, 0][1]               # set-up and the painting's export
    assert [counts[9, s][0] for s in (0, 2, 6)] == [counts[72, s][0] for s in (0, 2, 6)], counts
