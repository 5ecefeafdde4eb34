"""Refine and plan at their boundaries, found by mutation testing (benchmarks/mutation.sh): refine
returns its best iterate (not its last), checks the last step even when the step count is not a
multiple of 10, and plan keeps the proposed action when it is already the best."""

from __future__ import annotations

import torch

from kaogen.l2p.config import AgentConfig
from kaogen.l2p.plan import plan_action
from kaogen.l2p.refine import _mse_exact, refine_strokes, relocate_hidden, visible_area
from kaogen.l2p.stroke_model import StrokeModel, paint_exact
from kaogen.render import strokes as S
from kaogen.render.strokes import random_strokes


def _exact_target(s: torch.Tensor, size: int = 16, background: float = 1.0) -> torch.Tensor:
    return paint_exact(torch.full((1, 3, size, size), background), s[None])[0]


def test_refine_returns_its_best_iterate_not_its_last():
    """A painting that already is its target cannot be improved: refine must hand it back unchanged,
    whatever its steps do to the strokes (lr 1.0 moves them far)."""
    s = random_strokes(6, torch.Generator().manual_seed(3))
    target = _exact_target(s)
    for steps in (5, 10, 23):
        out = refine_strokes(s, target, steps=steps, lr=1.0)
        assert torch.equal(out, s), steps
    out = refine_strokes(s, _exact_target(s, background=0.0), steps=12, lr=1.0, background=0.0, relocate=True)
    assert torch.equal(out, s)


def test_refine_checks_its_last_step_whatever_the_step_count():
    g = torch.Generator().manual_seed(0)
    target = torch.ones(3, 16, 16)
    target[:, 4:12, 4:12] = torch.tensor([0.2, 0.3, 0.6])[:, None, None]
    s = random_strokes(6, g, max_radius=0.4)
    before = float(_mse_exact(s, target, 1.0))
    for steps in (1, 7, 13):            # 1 and 7: only the last step is checked; 13: the 10th and the last
        out = refine_strokes(s, target, steps=steps, lr=0.05)
        assert float(_mse_exact(out, target, 1.0)) < before, steps


def test_plan_keeps_an_action_that_is_already_exact():
    g = torch.Generator().manual_seed(1)
    canvas = torch.ones(2, 3, 16, 16)
    a = random_strokes(2 * 3, g).view(2, 3, 13)
    target = paint_exact(canvas, a)
    planned, after = plan_action(StrokeModel(AgentConfig(canvas=16)), canvas, target, a, steps=4, lr=0.5)
    assert torch.equal(planned, a) and torch.equal(after, target)


# ------------------------------------------------------------------ relocation of hidden strokes

_ONE = torch.tensor([0.2, 0.25, 0.5, 0.25, 0.8, 0.25, 0.1, 0.1, 1.0, 1.0, 0.8, 0.1, 0.1])


def _rand_target(H: int, W: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(3, H, W, generator=torch.Generator().manual_seed(seed))


def test_relocated_strokes_are_fine_opaque_and_centred_on_their_pixel_on_any_canvas():
    """Every hidden stroke (min_visible above any footprint: all of them) becomes a short, fine, opaque
    stroke on a non-square canvas (12 x 20 px): centred on a pixel's centre, 1.5 px radius (of the
    shorter side), 1.5 px from its centre to either end (x in widths, y in heights), lying in every
    direction, coloured as the target at its pixel, all fields in [0, 1] (strokes at the border are
    clipped, not left outside), in float64 precision for float64 strokes. Guards against H and W
    swapped or dropped, a wrong radius or length, an off-centre or one-sided stroke, an unclipped
    field, the angle squeezed, and float32 arithmetic on float64 strokes."""
    H, W = 12, 20
    target = _rand_target(H, W).double()
    s = _ONE.double().repeat(40, 1)
    out = relocate_hidden(s, target, 1.0, min_visible=1e9, g=torch.Generator().manual_seed(0))
    assert out.shape == s.shape and out.dtype == torch.float64
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    wh = torch.tensor([W, H], dtype=torch.float64)
    p0, c, p2 = out[:, 0:2] * wh, out[:, 2:4] * wh, out[:, 4:6] * wh          # in px
    pix = c - 0.5
    assert (pix - pix.round()).abs().max() < 1e-9                               # on a pixel's centre
    x, y = pix.round().long().unbind(1)
    assert ((x >= 0) & (x < W) & (y >= 0) & (y < H)).all()
    torch.testing.assert_close(out[:, 10:13], target[:, y, x].T, atol=0, rtol=0)
    torch.testing.assert_close(out[:, 8:10], torch.ones(40, 2, dtype=torch.float64), atol=0, rtol=0)
    torch.testing.assert_close(S.radius(out) * min(H, W), torch.full((40, 2), 1.5, dtype=torch.float64),
                               atol=1e-9, rtol=0)
    inside = ((out[:, 0:2] > 0) & (out[:, 0:2] < 1) & (out[:, 4:6] > 0) & (out[:, 4:6] < 1)).all(1)
    assert inside.sum() >= 20
    torch.testing.assert_close((p0 + p2)[inside], 2 * c[inside], atol=1e-9, rtol=0)          # symmetric
    half = (p2 - p0)[inside] / 2
    torch.testing.assert_close(half.norm(dim=1), torch.full((int(inside.sum()),), 1.5, dtype=torch.float64),
                               atol=1e-9, rtol=0)
    angle = torch.atan2(half[:, 1], half[:, 0]) % torch.pi
    assert float(angle.min()) < 0.5 and float(angle.max()) > torch.pi - 0.5 and ((angle - torch.pi / 2).abs() < 0.4).any()
    # at the border the endpoints are clipped to the canvas, not left outside
    assert (~inside).any() and bool(((out == 0) | (out == 1))[~inside][:, [0, 1, 4, 5]].any())


def test_relocation_draws_distinct_pixels_while_there_are_enough_and_any_number_beyond():
    """As many hidden strokes as pixels (4 x 4): each pixel gets exactly one (drawn without
    replacement); more strokes than pixels are all relocated too (drawn with replacement), no error.
    Guards against sampling always with, or never with, replacement."""
    target = _rand_target(4, 4, 1)
    for n in (16, 23):
        out = relocate_hidden(_ONE.repeat(n, 1), target, 1.0, min_visible=1e9, g=torch.Generator().manual_seed(2))
        assert out.shape == (n, 13)
        cell = ((out[:, 3] * 4).floor() * 4 + (out[:, 2] * 4).floor()).long()
        if n == 16:
            assert sorted(cell.tolist()) == list(range(16))
        else:
            assert set(cell.tolist()) <= set(range(16))


def test_relocation_depends_only_on_its_generator_not_on_the_global_seed():
    """The same generator seed relocates the same way whatever torch's global RNG state is (a seeded
    painting is reproducible); so does refine with relocate on, for a seed. Guards against a draw
    (pixels, angles) taken from the global RNG instead of the painting's generator."""
    target = _rand_target(16, 16, 3)
    s = _ONE.repeat(12, 1)
    outs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        outs.append((relocate_hidden(s, target, 1.0, min_visible=1.0, g=torch.Generator().manual_seed(5)),
                     refine_strokes(s, target, steps=4, lr=0.05, relocate=True, min_visible=1.0, seed=7)))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    other = refine_strokes(s, target, steps=4, lr=0.05, relocate=True, min_visible=1.0, seed=8)
    assert not torch.equal(other, outs[0][1])                       # the seed is what decides


def test_only_strokes_showing_less_than_min_visible_are_relocated():
    """A stroke showing exactly `min_visible` px stays where it is; with a threshold just above its
    footprint it moves. Guards against `<=` for `<` (strokes at the threshold moved)."""
    from kaogen.render.rasterize import rasterize

    target = _rand_target(16, 16, 4)
    s = torch.tensor([[0.3, 0.5, 0.32, 0.5, 0.34, 0.5, 0.1, 0.1, 1.0, 1.0, 0.2, 0.2, 0.2]])
    shown = float(visible_area(rasterize(s, 16, 16))[0])
    g = torch.Generator().manual_seed(0)
    assert torch.equal(relocate_hidden(s, target, 1.0, min_visible=shown, g=g), s)
    assert not torch.equal(relocate_hidden(s, target, 1.0, min_visible=shown * 1.001, g=g), s)
    # nothing shows less than 0 px: min_visible 0 moves nothing, not even a stroke wholly covered
    cover = torch.tensor([[0.0, 0.5, 0.5, 0.5, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]])
    both = torch.cat([s, cover])
    assert float(visible_area(rasterize(both, 16, 16))[0]) == 0.0
    assert torch.equal(relocate_hidden(both, target, 1.0, min_visible=0.0, g=g), both)


def test_refine_relocates_four_times_in_its_first_half_starting_before_any_step(monkeypatch):
    """With relocate on, refinement moves hidden strokes in 4 rounds (steps 0, 15, 30 and 45 % of the
    way: the first half), the first on the strokes as given; off, never. Guards against a round
    dropped or moved past the end."""
    import kaogen.l2p.refine as R

    seen, put = [], []
    real = R.relocate_hidden

    def spy(cur, *args, **kw):
        seen.append(cur.clone())
        put.append(real(cur, *args, **kw))
        return put[-1]

    monkeypatch.setattr(R, "relocate_hidden", spy)
    target = _rand_target(16, 16, 5)
    s = _ONE.repeat(6, 1)
    R.refine_strokes(s, target, steps=20, lr=0.05, relocate=True, min_visible=1.0)
    assert len(seen) == 4 and torch.equal(seen[0], s)
    # every stroke hidden (min_visible above any footprint): each round re-places all of them, and
    # refinement goes on from there (3 small steps later, the next round sees them nearly unmoved)
    seen.clear(), put.clear()
    R.refine_strokes(s, target, steps=20, lr=0.01, relocate=True, min_visible=1e9)
    assert len(seen) == 4
    for before, after in zip(put, seen[1:]):
        assert (after - before).abs().max() < 0.05
    seen.clear()
    R.refine_strokes(s, target, steps=20, lr=0.05)
    assert seen == []


def test_refine_moves_fields_that_start_at_the_bounds():
    """Strokes whose colour is exactly 0 or 1 (and opacity exactly 1) on a grey target: refinement
    moves those fields off the bounds (toward grey, improving). Guards against a field at 0 or 1
    stuck there (its logit infinite: no gradient)."""
    target = torch.full((3, 16, 16), 0.5)
    s = random_strokes(4, torch.Generator().manual_seed(0), max_radius=0.4)
    s[:2, 10:13], s[2:, 10:13], s[:, 8:10] = 0.0, 1.0, 1.0
    out = refine_strokes(s, target, steps=20, lr=0.1)
    assert float(_mse_exact(out, target, 1.0)) < float(_mse_exact(s, target, 1.0))
    assert (out[:2, 10:13] > 0).all() and (out[2:, 10:13] < 1).all() and (out[:, 8:10] < 1).all()


def test_refine_defaults():
    """refine_strokes' keyword defaults, which `paint --refine` relies on for min_visible (4 px) and
    the seed (0), and the Python API for lr (0.01) and relocate (off): leaving them out gives the
    painting of passing them. Guards against a changed default."""
    target = torch.ones(3, 16, 16)
    target[:, 4:12, 4:12] = torch.tensor([0.2, 0.3, 0.6])[:, None, None]
    s = torch.cat([_ONE.repeat(3, 1), random_strokes(4, torch.Generator().manual_seed(6), max_radius=0.3)])
    from kaogen.render.rasterize import rasterize
    shown = visible_area(rasterize(s, 16, 16))
    assert ((shown >= 4.0) & (shown < 5.0)).any(), shown                        # kept at 4 px, moved at 5
    explicit = refine_strokes(s, target, steps=10, lr=0.01, relocate=False)
    assert torch.equal(refine_strokes(s, target, steps=10), explicit)
    assert not torch.equal(refine_strokes(s, target, steps=10, lr=0.02), explicit)
    explicit = refine_strokes(s, target, steps=10, lr=0.05, relocate=True, min_visible=4.0, seed=0)
    assert torch.equal(refine_strokes(s, target, steps=10, lr=0.05, relocate=True), explicit)
    for other in (dict(min_visible=5.0), dict(seed=1)):
        assert not torch.equal(refine_strokes(s, target, steps=10, lr=0.05, relocate=True, **other), explicit), other


def test_refine_paints_non_square_targets_and_honours_its_softness():
    """A 12 x 20 target (H != W) is refined like a square one (never worse, here better), with or
    without relocation; the soft rasteriser's softness is the one asked for (a softer one takes other
    steps). Guards against H and W dropped or swapped for the soft rasteriser, and the softness
    ignored."""
    target = torch.ones(3, 12, 20)
    target[:, 2:9, 3:15] = torch.tensor([0.2, 0.3, 0.6])[:, None, None]
    s = random_strokes(6, torch.Generator().manual_seed(2), max_radius=0.4)
    before = float(_mse_exact(s, target, 1.0))
    for relocate in (False, True):
        out = refine_strokes(s, target, steps=12, lr=0.05, relocate=relocate, min_visible=2.0)
        assert out.shape == s.shape and float(_mse_exact(out, target, 1.0)) < before, relocate
    soft = refine_strokes(s, target, steps=12, lr=0.05, softness=2.0)
    assert not torch.equal(soft, refine_strokes(s, target, steps=12, lr=0.05))


def test_refining_longer_is_never_worse_than_stopping_at_a_multiple_of_ten_steps():
    """Refinement checks every 10th iterate (and the last) and keeps the best: 29 steps are never worse
    than 20, nor 20 than 10, even with steps large enough to overshoot (lr 0.3 and 3.0, where some
    iterates after the 10th are worse). Guards against a check cadence that skips the 10th, 20th, ...
    iterate (checking only the last one, every 11th, the 2nd/9th of each ten, or all but the 10th)."""
    for seed, lr in ((106, 0.3), (108, 3.0)):
        g = torch.Generator().manual_seed(seed)
        target = torch.rand(3, 1, 1, generator=g).expand(3, 16, 16).clone()
        target[:, 4:12, 3:10] = torch.rand(3, 1, 1, generator=g)
        s = random_strokes(5, g, max_radius=0.4)
        e = {n: float(_mse_exact(refine_strokes(s, target, steps=n, lr=lr), target, 1.0)) for n in (10, 20, 29)}
        assert e[29] <= e[20] <= e[10], (seed, e)


def test_refine_hands_back_a_painting_it_cannot_improve_unchanged_even_on_ties():
    """A stroke too fine to show on the exact 16 px canvas (the picture is its white target): the soft
    rasteriser's steps move it (fading it), the exact picture and its error stay the same; refining
    must hand back the painting as given, not an equally good moved one. Guards against `<=` in the
    best-iterate check."""
    s = torch.tensor([[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]])
    target = torch.ones(3, 16, 16)
    assert float(_mse_exact(s, target, 1.0)) == 0.0
    out = refine_strokes(s, target, steps=10, lr=0.05)
    assert torch.equal(out, s)


# ------------------------------------------------------------------------------ planning an action

def _beside_the_missing_paint():
    """White canvas; paint is missing on the left (a black bar); a black stroke lies on the right,
    on paper already right (the multi-scale reward's example in test_l2p)."""
    S = 32
    target = torch.ones(1, 3, S, S)
    target[..., 4:28, 2:12] = 0.0
    a = torch.tensor([[[0.72, 0.5, 0.75, 0.5, 0.78, 0.5, 0.2, 0.2, 1.0, 1.0, 0.0, 0.0, 0.0]]])
    return StrokeModel(AgentConfig(canvas=S)), torch.ones_like(target), target, a


def test_plan_keeps_the_planned_action_when_it_gains_more_under_the_pyramid():
    """Planning that gains under the 4-level pyramid (the distance it climbs) is kept, even where its
    plain MSE is above the proposed action's pyramid distance; one step already plans; the pyramid's
    levels are what planning climbs (1 and 4 levels plan differently). Guards against the choice
    mixing a 1-level distance with a 4-level one, a single planning step skipped, and the levels
    dropped from the planning loss."""
    from kaogen.l2p.distance import pyramid_distance

    model, canvas, target, a = _beside_the_missing_paint()
    d = lambda x: float(pyramid_distance(x, target, 4))  # noqa: E731
    proposed = d(paint_exact(canvas, a))
    planned, after = plan_action(model, canvas, target, a, steps=10, levels=4)
    assert d(after) < proposed and not torch.equal(planned, a)
    assert float(pyramid_distance(after, target, 1)) > proposed        # its plain MSE is higher
    one, after1 = plan_action(model, canvas, target, a, steps=1, levels=4, lr=0.05)
    assert d(after1) < proposed and not torch.equal(one, a)
    mse_planned, _ = plan_action(model, canvas, target, a, steps=10, levels=1)
    assert not torch.equal(mse_planned, planned)


def test_plan_defaults_are_what_paint_plan_uses():
    """`paint --plan N` passes the steps and the agent's levels but not the step size: plan_action's
    defaults (levels 4, lr 0.02) are part of what a user gets. Guards against a changed default."""
    model, canvas, target, a = _beside_the_missing_paint()
    want, _ = plan_action(model, canvas, target, a, steps=3, levels=4, lr=0.02)
    got, _ = plan_action(model, canvas, target, a, steps=3)
    assert torch.equal(got, want)
    for other in (dict(levels=5), dict(lr=0.05)):
        assert not torch.equal(plan_action(model, canvas, target, a, steps=3, **{**dict(levels=4, lr=0.02), **other})[0],
                               want), other


def test_plan_hands_back_an_action_it_cannot_improve_unchanged_even_on_ties():
    """A stroke too fine to show on the exact canvas, on a canvas that already is its target: the soft
    model's steps move it, the exact distance stays 0; the proposed action must come back, not an
    equally good moved one. Guards against `<=` in the choice."""
    s = torch.tensor([[[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]]])
    canvas = torch.ones(1, 3, 16, 16)
    planned, after = plan_action(StrokeModel(AgentConfig(canvas=16)), canvas, canvas.clone(), s, steps=5, lr=0.002)
    assert torch.equal(planned, s) and torch.equal(after, canvas)


# ---------------------------------------------------------------------------- the pyramid distance

def test_pyramid_down_is_the_normalised_binomial_blur_then_every_second_pixel():
    """A flat image stays flat (the kernel sums to 1, replicate padding), at ceil(H/2) x ceil(W/2) for
    odd sizes too; an impulse spreads as [1 4 6 4 1] / 16 in each direction, sampled at the even
    pixels; float64 images are blurred in float64 (the same values as in float32). Guards against
    a kernel not normalised or with wrong taps, and a kernel made in another dtype than the image."""
    from kaogen.l2p.distance import pyramid_down

    for (H, W), shape in (((15, 10), (8, 5)), ((10, 15), (5, 8))):
        out = pyramid_down(torch.full((2, 3, H, W), 0.3))
        assert out.shape == (2, 3) + shape
        torch.testing.assert_close(out, torch.full_like(out, 0.3), atol=1e-6, rtol=0)
    x = torch.zeros(1, 1, 17, 17)
    x[0, 0, 8, 8] = 1.0
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    want = torch.zeros(9, 9)
    want[3:6, 3:6] = torch.outer(k[0::2], k[0::2])          # rows/cols 6, 8, 10 see taps 1, 6, 1
    torch.testing.assert_close(pyramid_down(x)[0, 0], want, atol=1e-7, rtol=0)
    x = torch.zeros(1, 1, 17, 17)
    x[0, 0, 7, 7] = 1.0
    want = torch.zeros(9, 9)
    want[3:5, 3:5] = torch.outer(k[1::2], k[1::2])          # rows/cols 6 and 8 see taps 4, 4
    torch.testing.assert_close(pyramid_down(x)[0, 0], want, atol=1e-7, rtol=0)
    img = torch.rand(2, 3, 12, 9, generator=torch.Generator().manual_seed(0))
    d64 = pyramid_down(img.double())
    assert d64.dtype == torch.float64
    torch.testing.assert_close(d64, pyramid_down(img).double(), atol=1e-6, rtol=0)


def test_pyramid_distance_is_the_mse_averaged_over_its_levels_per_image():
    """d = mean over levels l = 0 .. L-1 of the MSE between the l-times pyramid_down'ed canvas and
    target, one value per image; by default (and with 1 level) the plain MSE. Guards against a
    level skipped or repeated, a sum for a mean, the blur applied to one side only, and another
    default."""
    from kaogen.l2p.distance import pyramid_distance, pyramid_down

    g = torch.Generator().manual_seed(1)
    c, t = torch.rand(3, 3, 20, 12, generator=g), torch.rand(3, 3, 20, 12, generator=g)
    mse = ((c - t) ** 2).mean((1, 2, 3))
    torch.testing.assert_close(pyramid_distance(c, t), mse)
    torch.testing.assert_close(pyramid_distance(c, t, 1), mse)
    per_level, a, b = [], c, t
    for _ in range(4):
        per_level.append(((a - b) ** 2).mean((1, 2, 3)))
        a, b = pyramid_down(a), pyramid_down(b)
    for levels in (2, 3, 4):
        torch.testing.assert_close(pyramid_distance(c, t, levels), sum(per_level[:levels]) / levels)
    torch.testing.assert_close(pyramid_distance(c[1:2], t[1:2], 3), pyramid_distance(c, t, 3)[1:2], atol=1e-7, rtol=0)


# ------------------------------------------------------------------------ the dense actor's picks

def test_pick_free_lays_strokes_whose_spine_discs_only_meet_at_a_point():
    """Two strokes on one line whose end discs are tangent (the gap between the end points is exactly
    the sum of their radii, 2 / 256, all numbers dyadic so that it is exact) do not overlap: both are
    picked, best first, without starting afresh; a hair closer, they touch and the second pick starts
    afresh with the best. Guards against `<=` for `<` (tangent discs counted as touching)."""
    from kaogen.l2p.networks import pick_free

    def line(x0, x2):
        return [x0, 0.5, (x0 + x2) / 2, 0.5, x2, 0.5, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]

    score = torch.tensor([[2.0, 1.0]])
    for gap, want, restarted in ((0.0078125, [0, 1], False), (0.0078125 - 2 ** -12, [0, 0], True)):
        strokes = torch.tensor([[line(0.125, 0.25), line(0.25 + gap, 0.375 + gap)]])
        picks, afresh = pick_free(score, strokes, 2)
        assert picks.tolist() == [want] and afresh.tolist() == [restarted], gap


def test_pick_free_stays_on_the_device_of_its_scores():
    """The picks and the afresh flags are made where the scores are (here the meta device, which
    stands for an accelerator: a tensor left on the CPU is an error there). Guards against a
    buffer made on the default device."""
    from kaogen.l2p.networks import pick_free

    picks, afresh = pick_free(torch.empty(2, 10, device="meta"), torch.empty(2, 10, 13, device="meta"), 3)
    assert picks.device.type == afresh.device.type == "meta" and picks.shape == (2, 3) and afresh.shape == (2,)
