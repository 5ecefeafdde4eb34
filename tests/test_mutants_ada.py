"""The ADA pipeline's ops against their closed forms: what mutation testing of kaogen/gan/ada.py
(benchmarks/mutation.sh gan/ada) found unchecked. test_gan_fidelity.py holds the pipeline's
statistical properties (moments, no leaking, high frequencies kept); here each op's value."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kaogen.gan.ada import colour, geometric_matrix, lowpass, sample_params

A = 1 / math.sqrt(3)
GREY = torch.full((3,), A)                                         # the unit grey axis


def identity(batch: int) -> dict[str, torch.Tensor]:
    return sample_params(batch, 0.0, "bgc")


def response(h: np.ndarray, w: np.ndarray) -> np.ndarray:
    """|H(w)| of a filter whose taps sit at half-integer offsets about its centre."""
    n = np.arange(len(h)) - (len(h) - 1) / 2
    return np.abs(np.exp(-1j * np.outer(w, n)) @ h)


def test_lowpass_is_a_symmetric_half_band_filter_of_unit_gain():
    """The 2x grid's low-pass: 16 taps, symmetric about its centre (no shift of the image), gain 1 at
    DC (sum 1), half gain at the cut-off (pi / 2 on the 2x grid, the original Nyquist), flat below a
    quarter of the band and closed above three quarters (measured: 0.998 and 0.0015 at the edges).
    Guards against an off-centre tap grid, another cut-off, the window divided instead of applied,
    and the taps not normalised."""
    h = lowpass().double().numpy()
    assert h.shape == (16,) and np.isfinite(h).all()
    assert np.allclose(h, h[::-1], atol=1e-7) and abs(h.sum() - 1) < 1e-6
    assert abs(response(h, np.array([np.pi / 2]))[0] - 0.5) < 0.01
    assert (np.abs(response(h, np.linspace(0, np.pi / 4, 20)) - 1) < 0.005).all()
    assert (response(h, np.linspace(3 * np.pi / 4, np.pi, 20)) < 0.005).all()


def _one(op: str, values: list[float]) -> dict[str, torch.Tensor]:
    prm = identity(len(values))
    prm[op] = torch.tensor(values)
    return prm


def _pixels(rgb: list[list[float]]) -> torch.Tensor:
    """(B, 3, 1, 1) images of one pixel each."""
    return torch.tensor(rgb)[:, :, None, None]


def test_brightness_and_contrast_alone_add_and_scale():
    """brightness b: rgb + b; contrast c: rgb * c (about 0, mid-grey in [-1, 1])."""
    x = _pixels([[0.2, -0.5, 0.9], [0.2, -0.5, 0.9], [-1.0, 0.0, 0.3]])
    torch.testing.assert_close(colour(x, _one("brightness", [0.3, -0.2, 0.0])), x + torch.tensor([0.3, -0.2, 0.0])[:, None, None, None])
    torch.testing.assert_close(colour(x, _one("contrast", [2.0, 0.5, 1.0])), x * torch.tensor([2.0, 0.5, 1.0])[:, None, None, None])


def test_luma_flip_reflects_through_the_grey_plane():
    """lumaflip: the grey component of rgb changes sign, the chroma (orthogonal to grey) stays: a grey
    pixel becomes its negative, a pure chroma pixel is unchanged, 0 leaves every pixel as it is."""
    x = _pixels([[0.4, 0.4, 0.4], [0.5, -0.5, 0.0], [0.9, 0.1, -0.3], [0.9, 0.1, -0.3]])
    y = colour(x, _one("lumaflip", [1.0, 1.0, 1.0, 0.0]))[..., 0, 0]
    torch.testing.assert_close(y[0], -x[0, :, 0, 0])
    torch.testing.assert_close(y[1], x[1, :, 0, 0])
    v = x[2, :, 0, 0]
    torch.testing.assert_close(y[2], v - 2 * (v @ GREY) * GREY)
    torch.testing.assert_close(y[3], v)


@pytest.mark.parametrize("theta", [math.pi / 2, -2.0, 0.7])
def test_hue_rotates_about_the_grey_axis_by_its_angle(theta):
    """hue theta: grey is kept; a chroma vector keeps its length and turns by theta about the grey
    axis, counter-clockwise seen from white (right-hand rule)."""
    x = _pixels([[0.3, 0.3, 0.3], [0.5, -0.5, 0.0]])
    y = colour(x, _one("hue", [theta, theta]))[..., 0, 0]
    torch.testing.assert_close(y[0], x[0, :, 0, 0])
    c, r = x[1, :, 0, 0], y[1]
    assert abs(float(r @ GREY)) < 1e-6 and abs(float(r.norm() - c.norm())) < 1e-6
    cos, sin = float(r @ c) / float(c @ c), float(torch.linalg.cross(c, r) @ GREY) / float(c @ c)
    assert abs(cos - math.cos(theta)) < 1e-5 and abs(sin - math.sin(theta)) < 1e-5


def test_saturation_scales_the_chroma_only():
    """saturation s: rgb = grey part + s * chroma part (s = 0: grey, s = 1: unchanged)."""
    x = _pixels([[0.9, 0.1, -0.3]] * 3)
    v = x[0, :, 0, 0]
    grey = (v @ GREY) * GREY
    y = colour(x, _one("saturation", [0.0, 1.0, 2.5]))[..., 0, 0]
    for got, s in zip(y, (0.0, 1.0, 2.5)):
        torch.testing.assert_close(got, grey + s * (v - grey))


def test_colour_ops_compose_in_the_official_order():
    """All five at once: brightness, then contrast, then luma flip, hue, saturation (the official
    order), on every pixel of an image, as the product of the closed forms above."""
    x = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(3))
    prm = identity(2)
    prm.update(brightness=torch.tensor([0.3, -0.1]), contrast=torch.tensor([1.7, 0.6]), lumaflip=torch.tensor([1.0, 0.0]),
               hue=torch.tensor([0.9, -2.2]), saturation=torch.tensor([0.4, 1.8]))
    vv = torch.outer(GREY, GREY)
    K = torch.tensor([[0.0, -A, A], [A, 0.0, -A], [-A, A, 0.0]])     # [grey]x: K @ u = grey x u
    want = []
    for i in range(2):
        t = float(prm["hue"][i])
        P = torch.eye(3) - 2 * vv * prm["lumaflip"][i]
        R = math.cos(t) * torch.eye(3) + math.sin(t) * K + (1 - math.cos(t)) * vv
        S = vv + (torch.eye(3) - vv) * prm["saturation"][i]
        rgb = (x[i].reshape(3, -1) + prm["brightness"][i]) * prm["contrast"][i]
        want.append((S @ R @ P @ rgb).view(3, 4, 5))
    torch.testing.assert_close(colour(x, prm), torch.stack(want), atol=1e-5, rtol=0)


def test_the_ops_run_on_the_images_device():
    """Parameters drawn for another device (meta, standing in for a GPU) land there; blitting,
    the geometric matrix and the colour map run there, and no op mixes devices (StrictDevices fails
    one, as CUDA does). Guards against constants (the grey axis, the identity, index grids) made on
    the CPU."""
    from test_render_device import StrictDevices

    from kaogen.gan.ada import blit

    x = torch.zeros(2, 3, 8, 8, device="meta")
    with StrictDevices():
        prm = sample_params(2, 1.0, "bgc", device="meta")
        assert all(v.device.type == "meta" for v in prm.values())
        assert blit(x, prm).device.type == "meta"
        assert geometric_matrix(prm, 8, 8).device.type == "meta"
        assert colour(x, prm).device.type == "meta"


@pytest.mark.parametrize("op,value", [("rotate_pre", math.pi / 4), ("rotate_pre", 1.4), ("rotate_pre", 2.0),
                                      ("rotate_post", -0.6), ("scale", 0.8), ("scale", 1.3), ("aniso", 0.8),
                                      ("xfrac", (0.15, -0.1)), ("xfrac", (0.15, 0.0)), ("xfrac", (0.0, -0.11))])
def test_a_flat_image_stays_flat_under_the_geometric_ops(op, value):
    """A flat 24 x 32 image is flat after any moderate geometric op, up to its border rows and
    corners: the image is padded by reflection as far as the sampled region reaches (plus the
    filter's support), and the 2x grid is sampled beyond the output so that the downsampling filter
    never reads zeros. Bug fixed: the border rows came out 5 % darker, the corners 11 % (no output
    margin); guards too against a padding that does not reach the corners."""
    from kaogen.gan.ada import augment

    x = torch.full((1, 3, 24, 32), 0.7)
    prm = identity(1)
    prm[op] = torch.tensor([value])                                 # (1,) or, for xfrac, (1, 2)
    y = augment(x, 1.0, "g", params=prm)
    assert (y - 0.7).abs().max() < 1e-5


def test_reflection_indices_mirror_without_repeating_the_edge():
    """_reflect maps any index into [0, n - 1] as ..., 2, 1, 0, 1, 2, ..., n - 2, n - 1, n - 2, ...;
    a 1-px side maps everything to 0, a 2-px side alternates."""
    from kaogen.gan.ada import _reflect

    i = torch.arange(-6, 9)
    assert _reflect(i, 4).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]
    assert _reflect(i, 2).tolist() == [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
    assert _reflect(i, 1).tolist() == [0] * 15


def test_quarter_turns_go_one_way_and_shifts_work_on_oblong_images():
    """Three quarter turns are one quarter turn the other way (with one and two turns, every k is
    pinned); on an oblong 6 x 10 image a whole-pixel shift moves the pixels as on a square one."""
    from kaogen.gan.ada import blit

    x = torch.randn(4, 3, 12, 12, generator=torch.Generator().manual_seed(5))
    prm = identity(4)
    prm["rotate90"] = torch.tensor([0.0, 1, 2, 3])
    y = blit(x, prm)
    d = 1 if torch.equal(y[1], torch.rot90(x[1], 1, (1, 2))) else 3
    assert torch.equal(y[0], x[0]) and torch.equal(y[1], torch.rot90(x[1], d, (1, 2)))
    assert torch.equal(y[2], torch.rot90(x[2], 2, (1, 2))) and torch.equal(y[3], torch.rot90(x[3], 4 - d, (1, 2)))
    oblong = torch.randn(1, 3, 6, 10, generator=torch.Generator().manual_seed(6))
    prm = identity(1)
    prm["xint"] = torch.tensor([[3 / 10, 0.0]])                        # 3 px to the right
    z = blit(oblong, prm)
    assert z.shape == oblong.shape and torch.equal(z[..., 3:], oblong[..., :-3])
    prm["xflip"] = torch.ones(1)
    prm["xint"] = torch.zeros(1, 2)
    assert torch.equal(blit(oblong, prm), oblong.flip(-1))


def test_the_geometric_matrix_is_each_ops_inverse_in_the_official_order():
    """geometric_matrix maps output to input pixels (centred): scale s -> diag(1/s, 1/s); aniso a ->
    diag(1/a, a); a rotation by theta -> the rotation by theta; a fraction t -> the shift by
    (-t_x W, -t_y H); all five composed as S R_pre A R_post T (the official order)."""
    def rot(t):
        return torch.tensor([[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0], [0.0, 0.0, 1.0]])

    def diag(a, b):
        return torch.diag(torch.tensor([a, b, 1.0]))

    prm = identity(1)
    prm.update(scale=torch.tensor([1.25]), rotate_pre=torch.tensor([0.4]), aniso=torch.tensor([0.8]),
               rotate_post=torch.tensor([-1.1]), xfrac=torch.tensor([[0.1, -0.05]]))
    shift = torch.tensor([[1.0, 0.0, -0.1 * 32], [0.0, 1.0, 0.05 * 24], [0.0, 0.0, 1.0]])
    want = diag(0.8, 0.8) @ rot(0.4) @ diag(1.25, 0.8) @ rot(-1.1) @ shift
    torch.testing.assert_close(geometric_matrix(prm, 24, 32)[0], want, atol=1e-6, rtol=0)
    for op, value, single in (("scale", 2.0, diag(0.5, 0.5)), ("aniso", 2.0, diag(0.5, 2.0)), ("rotate_post", 0.3, rot(0.3))):
        one = identity(1)
        one[op] = torch.tensor([value])
        torch.testing.assert_close(geometric_matrix(one, 24, 32)[0], single, atol=1e-6, rtol=0)


def test_augment_applies_each_group_asked_and_only_to_the_images_whose_ops_fired():
    """augment() at p > 0 without parameters draws them (the images change); each of 'b', 'g', 'c'
    runs when asked, alone too (an 'b'-only draw has no colour parameters to apply); within a batch
    an image none of whose geometric ops fired keeps its pixels exactly while its neighbour, moved by
    a single op of any kind, changes."""
    from kaogen.gan.ada import augment

    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(9)) * 2 - 1
    assert not torch.equal(augment(x, 1.0, "c", generator=torch.Generator().manual_seed(1)), x)
    b = sample_params(2, 0.0, "b")
    b["xflip"] = torch.tensor([1.0, 0.0])
    y = augment(x, 0.0, "b", params=b)
    assert torch.equal(y[0], x[0].flip(-1)) and torch.equal(y[1], x[1])
    c = sample_params(2, 0.0, "c")
    c["brightness"] = torch.tensor([0.25, 0.0])
    torch.testing.assert_close(augment(x, 0.0, "c", params=c), x + torch.tensor([0.25, 0.0])[:, None, None, None])
    for op, value in (("scale", 1.2), ("rotate_pre", 0.5), ("aniso", 1.2), ("rotate_post", 0.5), ("xfrac", (0.1, 0.0))):
        g = sample_params(2, 0.0, "g")
        g[op] = g[op].clone()
        g[op][0] = torch.tensor(value)
        y = augment(x, 0.0, "g", params=g)
        assert not torch.allclose(y[0], x[0], atol=1e-3), op
        assert torch.equal(y[1], x[1]), op


def test_sample_params_default_to_all_three_groups_on_the_cpu():
    prm = sample_params(3, 0.5, generator=torch.Generator().manual_seed(0))
    assert set(prm) == {"xflip", "rotate90", "xint", "scale", "rotate_pre", "aniso", "rotate_post", "xfrac",
                        "brightness", "contrast", "lumaflip", "hue", "saturation"}
    assert all(v.device.type == "cpu" and v.shape[0] == 3 for v in prm.values())


def test_draws_are_reproducible_independent_and_of_the_documented_shapes():
    """sample_params: the same generator seed gives the same draws (both the uniform and the normal
    ones), another seed others; xint and xfrac are (B, 2), the rest (B,); every op fires and draws
    its value independently of every other op (the official pipeline): over 100,000 draws at p = 0.5
    no two ops' firing or values correlate (|r| < 0.02), which two ops sharing a column of the draws
    would break; both rotations and the hue stay within a half turn, with the official spread
    (uniform: pi / sqrt 3)."""
    a = sample_params(64, 0.5, generator=torch.Generator().manual_seed(3))
    b = sample_params(64, 0.5, generator=torch.Generator().manual_seed(3))
    c = sample_params(64, 0.5, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(a[k], b[k]) for k in a) and all(not torch.equal(a[k], c[k]) for k in ("scale", "hue", "xfrac"))
    assert a["xint"].shape == a["xfrac"].shape == (64, 2)
    assert all(v.shape == (64,) for k, v in a.items() if k not in ("xint", "xfrac"))
    n = 100_000
    prm = sample_params(n, 0.5, generator=torch.Generator().manual_seed(0))
    identity_of = {"scale": 1.0, "aniso": 1.0, "contrast": 1.0, "saturation": 1.0}
    cols, names = [], []
    for k, v in prm.items():
        for j, col in enumerate(v.T if v.dim() == 2 else [v]):
            fired = (col != identity_of.get(k, 0.0)).double()
            cols += [fired, col.double()]
            names += [(k, "fired"), (k + str(j), "value")]
    r = torch.corrcoef(torch.stack(cols))
    for i in range(len(cols)):
        for j in range(i + 1, len(cols)):
            if names[i][0].rstrip("01") == names[j][0].rstrip("01"):
                continue                                       # an op's own firing, value and components
            assert abs(float(r[i, j])) < 0.02, (names[i], names[j], float(r[i, j]))
    for k in ("rotate_pre", "rotate_post", "hue"):
        v = prm[k][prm[k] != 0]
        assert v.abs().max() <= math.pi and abs(v.std().item() - math.pi / math.sqrt(3)) < 0.02, k
