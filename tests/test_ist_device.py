"""Intrinsic style transfer on every device: painting and train-painter (fresh, amp, resumed).

The CPU cases run everywhere; the CUDA cases (`pytest -m cuda`) where a GPU is present."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from conftest import DEVICES  # noqa: E402
from sync_counter import SyncCounter  # noqa: E402

from kaogen.errors import KaogenError  # noqa: E402
from kaogen.ist.painter import Generator, NeuralPainter  # noqa: E402
from kaogen.ist.transfer import ISTOptions, StrokeField, transfer  # noqa: E402


@pytest.fixture(scope="module")
def stroke_data(tmp_path_factory):
    from kaogen.ist.mypaint import MyPaint
    from kaogen.ist.strokes import make_strokes

    try:
        MyPaint.load()
    except KaogenError:
        pytest.skip("libmypaint is not installed")
    return make_strokes("classic/kabura", 1100, tmp_path_factory.mktemp("strokes"), workers=2, progress=False)


def _painter(device) -> NeuralPainter:
    torch.manual_seed(0)
    return NeuralPainter(Generator(noise=8, width=8), "classic/kabura").to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", [64, 128])
def test_ist_paints_on_device(device, size):
    """The optimisation runs where the painter is (one block up), copies nothing per stroke, and paints
    what the CPU paints from the same seed."""
    painter = _painter(device)
    target = torch.rand(3, 40, 60, generator=torch.Generator().manual_seed(1))       # a CPU picture
    opts = ISTOptions(size=size, strokes=2 * ((size - 32) // 32) ** 2, steps=3, loss="offline")
    with SyncCounter() as c:
        p, frames = transfer(painter, target, ISTOptions(**{**opts.__dict__, "video_every": 2}))
    assert c.total <= 40 + 3 * 20 + 2, c.report()                  # set-up + kornia per step + 2 frames back
    assert p.strokes.device.type == "cpu" and p.strokes.dtype == torch.float32 and torch.isfinite(p.strokes).all()
    assert len(frames) == 2 and all(f.device.type == "cpu" for f in frames)
    field = StrokeField(target.to(device)[:, :1, :1].expand(3, size, size).contiguous(), painter, opts)
    assert all(t.device == torch.device(device) or t.device.type == torch.device(device).type
               for t in [*field.parameters(), *field.buffers()] + [ph.blocks for ph in field.phases])
    if device != "cpu":
        ref, _ = transfer(_painter("cpu"), target, opts)
        torch.testing.assert_close(p.strokes, ref.strokes, atol=2e-2, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_train_painter_resumes_exactly_on_device(device, stroke_data, tmp_path, monkeypatch):
    """amp on: an interrupted run resumed on the device continues exactly; states load to the CPU, RNG
    states are CPU bytes, Adam's step counters CPU tensors and its moments on the device."""
    from kaogen.checkpoint import load_checkpoint
    from kaogen.ist.train_painter import PainterTrainConfig, PainterTraining, train_painter

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    cfg = dict(batch=16, holdout=100, checkpoint_every=4, lr=1e-3, width=8, adv_after=2, amp=True)
    straight = train_painter(PainterTrainConfig(steps=8, **cfg), stroke_data, tmp_path / "a", progress=False, device=device)
    train_painter(PainterTrainConfig(steps=4, **cfg), stroke_data, tmp_path / "b", progress=False, device=device)
    ck = load_checkpoint(tmp_path / "b" / "state.pt")
    assert all(t.device.type == "cpu" and t.dtype == torch.uint8 for t in ck.state["rng"].values())
    t = PainterTraining(PainterTrainConfig(steps=8, **cfg), stroke_data, tmp_path / "b", device=device)
    dev = torch.device(device)
    for opt in (t.opt_g, t.opt_d):
        for p, st in opt.state.items():
            assert p.device.type == dev.type and st["exp_avg"].device == p.device
            assert torch.is_tensor(st["step"]) and st["step"].device.type == "cpu" and st["step"].item() == 4
    assert t.shape.device.type == dev.type and t.g.device.type == dev.type
    resumed = t.train(progress=False)
    assert resumed == straight
    for (n, a), (_, b) in zip(t.gen.state_dict().items(),
                              NeuralPainter.load(tmp_path / "a" / "painter.pt").gen.state_dict().items()):
        assert torch.equal(a.cpu(), b), n


def test_train_painter_written_on_cuda_resumes_on_the_cpu(stroke_data, tmp_path):
    """A state written on CUDA (its batch generator's state is 16 bytes, a CPU one 5,056) resumes on a
    CPU-only machine: weights and optimisers exact, the batch generator derived from (seed, step),
    with a warning saying so. Emulated by rewriting a CPU state as a CUDA run writes it."""
    from kaogen.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from kaogen.ist.train_painter import PainterTrainConfig, PainterTraining, train_painter

    cfg = dict(batch=16, holdout=100, checkpoint_every=4, lr=1e-3, width=8, adv_after=2)
    train_painter(PainterTrainConfig(steps=4, **cfg), stroke_data, tmp_path, progress=False, device="cpu")
    ck = load_checkpoint(tmp_path / "state.pt")
    ck.state["rng"]["gen.batch"] = torch.randint(0, 256, (16,), dtype=torch.uint8)   # a CUDA generator's state
    save_checkpoint(tmp_path / "state.pt", Checkpoint(ck.kind, ck.config, ck.state, {**ck.meta, "rng_device": "cuda"}))
    with pytest.warns(UserWarning, match="written on cuda; resuming on cpu"):
        t = PainterTraining(PainterTrainConfig(steps=6, **cfg), stroke_data, tmp_path, device="cpu")
    assert t.step == 4
    t.train(progress=False)
    assert t.step == 6


def test_offline_loss_is_kornias_without_per_call_copies():
    """The offline loss's SSIM and Sobel equal kornia's (values and gradients), with their kernels
    built once per device: no host-to-device copy per optimisation step (kornia makes three)."""
    import kornia
    from sync_counter import SyncCounter

    from kaogen.ist.losses import offline_loss, sobel, ssim_loss

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 40, 48, generator=g).requires_grad_(True), torch.rand(2, 3, 40, 48, generator=g)
    ours, ref = ssim_loss(x, y) + sobel(x).mean(), kornia.losses.ssim_loss(x, y, window_size=11) + kornia.filters.sobel(x).mean()
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)
    ga, = torch.autograd.grad(ours, x)
    gb, = torch.autograd.grad(ref, x)
    torch.testing.assert_close(ga, gb, atol=1e-6, rtol=1e-5)
    offline_loss(x, y)
    with SyncCounter() as c:
        offline_loss(x, y).backward()
    assert c.counts["h2d"] == 0 and c.counts["sync"] == 0, c.report()
