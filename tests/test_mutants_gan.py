"""The ADA controller and DiffAugment, exactly: the tests that kill what mutation testing of
kaogen/gan/augment.py left alive (p's arithmetic, the interval, the state round trip, dispatch)."""

from __future__ import annotations

import math

import pytest
import torch

from kaogen.gan.ada import augment
from kaogen.gan.augment import Augment, diffaugment


def logits(pos: int, n: int = 8) -> torch.Tensor:
    """n logits of which `pos` are positive: sign mean (2 pos - n) / n."""
    return torch.tensor([1.0] * pos + [-1.0] * (n - pos))


def test_p_moves_by_the_official_step_once_per_interval_toward_the_target():
    a = Augment("ada", target=0.6, interval=4, ada_kimg=0.5)
    step = 32 * 4 / (0.5 * 1000)                                      # batch * interval / (ada_kimg * 1000)
    for i in range(3):                                                # nothing until the 4th call
        a.observe(logits(8), batch=32)
        assert a.p == 0.0 and math.isnan(a.rt) and a.state()["calls"] == i + 1
    a.observe(logits(6), batch=32)                                    # signs: 1, 1, 1, 0.5 -> rt 0.875
    assert a.rt == pytest.approx((1 + 1 + 1 + 0.5) / 4) and a.p == pytest.approx(step)
    assert a.state() == {"p": a.p, "rt": a.rt, "sign_sum": 0.0, "sign_count": 0.0, "calls": 0}
    for _ in range(4):                                                # rt 0.25 < 0.6: down, clamped at 0
        a.observe(logits(5), batch=32)
    assert a.rt == pytest.approx(0.25) and a.p == 0.0
    for _ in range(4 * 12):                                           # far above the target: up, clamped at 1
        a.observe(logits(8), batch=32)
    assert a.p == 1.0


def test_the_state_round_trips_mid_interval():
    a, b = Augment("ada", interval=4, ada_kimg=0.5), Augment("ada", interval=4, ada_kimg=0.5)
    for pos in (8, 7):
        a.observe(logits(pos), batch=32)
    saved = a.state()
    assert saved["calls"] == 2 and saved["sign_sum"] == 8 + 6 and saved["sign_count"] == 16
    b.load(saved)
    for pos in (3, 8):
        a.observe(logits(pos), batch=32)
        b.observe(logits(pos), batch=32)
    assert a.state() == b.state() and b.rt == pytest.approx((8 + 6 - 2 + 8) / 32) and b.p > 0
    fresh = Augment("ada")
    fresh.load({"p": 0.25, "rt": 0.1, "sign_sum": 0.0, "sign_count": 0.0})        # saved between intervals
    assert fresh.state() == {"p": 0.25, "rt": 0.1, "sign_sum": 0.0, "sign_count": 0.0, "calls": 0}


def test_the_run_augmentation_dispatches_with_its_ops():
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    a = Augment("ada", ops="b")
    a.p = 1.0
    torch.manual_seed(5)
    got = a(x)
    torch.manual_seed(5)
    assert torch.equal(got, augment(x, 1.0, "b"))                      # the run's ops, not the default bgc
    torch.manual_seed(6)
    d = Augment("diffaugment")(x)
    torch.manual_seed(6)
    assert torch.equal(d, diffaugment(x)) and not torch.equal(d, x)
    assert Augment("none")(x) is x


def test_diffaugment_colour_translation_and_cutout():
    """DiffAugment 'color,translation,cutout' (Zhao et al. 2020), each part's distribution:
    brightness + U(-0.5, 0.5); saturation x U(0, 2) about the pixel's channel mean, then contrast
    x U(0.5, 1.5) about the image mean; whole-pixel translation within 1/8 of the size (borders
    repeat); a cutout square of half the size (zeros)."""
    n, H, W = 4000, 16, 16
    torch.manual_seed(0)
    out = diffaugment(torch.full((n, 3, H, W), 2.0))                  # grey: only brightness and cutout act
    b = out.amax((1, 2, 3)) - 2.0
    assert -0.5 <= b.min() < -0.49 and 0.49 < b.max() <= 0.5 and abs(b.mean().item()) < 0.02
    zero = (out == 0).all(1)                                          # (n, H, W)
    count, rows, cols = zero.sum((1, 2)), zero.any(2).sum(1), zero.any(1).sum(1)
    assert torch.equal(count, rows * cols)                            # a rectangle
    assert count.max() == (H // 2 - 1) * (W // 2 - 1) and (count > 0).all()
    assert torch.allclose(out[~zero[:, None].expand_as(out)], (2.0 + b).repeat_interleave(3 * (H * W - count)))
    cols, rows = zero.any(1), zero.any(2)                             # the centre ranges over every pixel, 0 too:
    first_cols = (cols.long().argmax(1) == 0) & (cols.sum(1) == W // 4)   # centre 0 cuts exactly columns 0..3
    first_rows = (rows.long().argmax(1) == 0) & (rows.sum(1) == H // 4)
    assert first_cols.sum() > n / W / 2 and first_rows.sum() > n / H / 2

    torch.manual_seed(1)
    colour = torch.tensor([0.5, 0.0, -0.2]).view(1, 3, 1, 1).expand(n, 3, H, W).contiguous()
    out = diffaugment(colour)
    inside = (out == 0).all(1)
    y, x = (~inside).float().flatten(1).argmax(1) // W, (~inside).float().flatten(1).argmax(1) % W
    px = out[torch.arange(n), :, y, x]                                # one pixel outside the cutout
    base = colour[0, :, 0, 0] - colour[0, :, 0, 0].mean()
    factor = (px - px.mean(1, keepdim=True)) @ base / base.square().sum()   # saturation x contrast
    assert factor.min() >= 0 and factor.max() <= 3.0
    assert abs(factor.mean().item() - 1.0) < 0.04 and 0.40 < factor.var().item() < 0.49   # E[s c]=1, Var 4/9

    torch.manual_seed(2)
    ramp = (10.0 + torch.arange(W, dtype=torch.float32)).view(1, 1, 1, W).expand(n, 3, H, W).contiguous()
    out = diffaugment(ramp)[:, 0]                                     # (n, H, W)
    full = ~(out == 0).any(2)                                         # rows the cutout missed
    r = full.float().argmax(1)
    row = out[torch.arange(n), r]                                     # (n, W)
    flat = (row[:, 1:] - row[:, :-1]).abs() < 1e-4                    # clamped border: equal neighbours
    left = flat.long().cumprod(1).sum(1)
    right = flat.flip(1).long().cumprod(1).sum(1)
    shift = right - left                                              # output x reads input x + shift
    counts = torch.bincount(shift + 2, minlength=5)
    assert shift.min() == -2 and shift.max() == 2 and (counts > 0.15 * n).all(), counts


def test_diffaugment_shifts_rows_too_and_cuts_a_quarter_each_way_at_any_size():
    """Vertical shifts are drawn like horizontal ones (within 1/8 of the height, every value), and the
    cutout's half-width is size // 4 also when the size is not a multiple of 4."""
    n, H, W = 4000, 16, 16
    torch.manual_seed(3)
    ramp = (10.0 + torch.arange(H, dtype=torch.float32)).view(1, 1, H, 1).expand(n, 3, H, W).contiguous()
    out = diffaugment(ramp)[:, 0].transpose(1, 2)                     # columns as rows
    full = ~(out == 0).any(2)
    col = out[torch.arange(n), full.float().argmax(1)]
    flat = (col[:, 1:] - col[:, :-1]).abs() < 1e-4
    shift = flat.flip(1).long().cumprod(1).sum(1) - flat.long().cumprod(1).sum(1)
    counts = torch.bincount(shift + 2, minlength=5)
    assert shift.min() == -2 and shift.max() == 2 and (counts > 0.15 * n).all(), counts
    torch.manual_seed(4)
    out = diffaugment(torch.full((2000, 3, 18, 18), 2.0))
    zero = (out == 0).all(1)
    assert zero.any(2).sum(1).max() == 2 * (18 // 4) - 1 and zero.any(1).sum(1).max() == 2 * (18 // 4) - 1
