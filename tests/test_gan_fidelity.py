"""StyleGAN2-ADA fidelity: the official ADA pipeline, aligned resampling, conditioning, configs, and
the lazy-regularisation step budget (issue 16). Properties, not snapshots."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kaogen.config import load_config
from kaogen.errors import KaogenError
from kaogen.gan.ada import augment, blit, colour, sample_params
from kaogen.gan.config import GANConfig, NetworkConfig
from kaogen.gan.data import RealSampler
from kaogen.gan.networks import Discriminator, Generator
from kaogen.gan.resample import downsample2d, setup_filter, upsample2d
from kaogen.gan.train import GANTrainer

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def faces(samples, n: int = 8, size: int = 256) -> torch.Tensor:
    from kaogen.images import list_images, load_rgb

    return torch.stack([load_rgb(p, size=size) for p in list_images(samples)[:n]]) * 2 - 1


def identity(batch: int) -> dict[str, torch.Tensor]:
    return sample_params(batch, 0.0, "bgc")


def high_band_energy(x: torch.Tensor) -> torch.Tensor:
    """Per image: the energy between half Nyquist and Nyquist (1/4 < |f| < 1/2 cycle per pixel, a
    ring that rotation keeps), under a Hann window (the image's edges, where shifts and turns bring
    in reflected or new content, do not count)."""
    H, W = x.shape[-2:]
    win = torch.hann_window(H, periodic=False)[:, None] * torch.hann_window(W, periodic=False)[None]
    spec = torch.fft.fft2((x - x.mean((2, 3), keepdim=True)) * win).abs().square()
    fy, fx = torch.fft.fftfreq(H), torch.fft.fftfreq(W)
    r = (fy[:, None] ** 2 + fx[None] ** 2).sqrt()
    return spec[..., (r > 0.25) & (r < 0.5)].sum((-1, -2, -3))


# ------------------------------------------------------------------------------------------ ADA
def test_p_zero_returns_the_input_itself_and_bad_ops_are_refused():
    x = torch.rand(2, 3, 16, 16)
    assert augment(x, 0.0) is x
    with pytest.raises(KaogenError, match="'b' \\(pixel blitting\\)"):
        augment(x, 0.5, ops="bgx")


def test_geometric_ops_keep_the_high_frequencies(samples):
    """One resample through a band-limited 2x intermediate keeps the detail a single bilinear
    resample at 1x loses. On the real faces at 256 px, turned by any angle and shifted by a fraction
    of a pixel (ops that keep the spectrum's ring energy in the continuum): the energy between half
    Nyquist and Nyquist keeps 0.72 of the input's on average (one bilinear resample at 1x: 0.51),
    and the identity round trip (up, sample, down) 0.93. Guards against a blurrier filter or a
    resample at 1x."""
    from kaogen.gan.ada import geometric_matrix

    x = faces(samples)
    B = len(x)
    g = torch.Generator().manual_seed(0)
    prm = identity(B)
    prm["rotate_pre"] = (torch.rand(B, generator=g) * 2 - 1) * math.pi
    prm["xfrac"] = torch.randn(B, 2, generator=g) * 0.125
    kept = (high_band_energy(augment(x, 1.0, "g", params=prm)) / high_band_energy(x)).mean().item()
    G = geometric_matrix(prm, 256, 256)                                   # the same map, bilinear at 1x
    theta = torch.cat([G[:, :2, :2] * 0.5, G[:, :2, 2:] / 256], 2)       # on the image padded to 512 px
    plain = F.grid_sample(F.pad(x, (128,) * 4, mode="reflect"), F.affine_grid(theta, [B, 3, 256, 256], align_corners=False),
                          align_corners=False)
    bilinear = (high_band_energy(plain) / high_band_energy(x)).mean().item()
    still = identity(B)
    still["xfrac"] = torch.full((B, 2), 1e-7)                             # fires, moves nothing
    round_trip = (high_band_energy(augment(x, 1.0, "g", params=still)) / high_band_energy(x)).mean().item()
    assert kept > 0.68 and kept > 1.3 * bilinear and round_trip > 0.9, (kept, bilinear, round_trip)


def test_pixel_blitting_is_exact():
    """Flips, quarter turns and whole-pixel shifts move pixels without resampling."""
    x = torch.randn(4, 3, 12, 12)
    prm = identity(4)
    prm["xflip"] = torch.tensor([1.0, 0, 0, 0])
    prm["rotate90"] = torch.tensor([0.0, 1, 2, 0])
    prm["xint"] = torch.tensor([[0, 0], [0, 0], [0, 0], [2 / 12, -1 / 12]])
    y = blit(x, prm)
    assert torch.equal(y[0], x[0].flip(-1))
    assert any(torch.equal(y[1], torch.rot90(x[1], k, (1, 2))) for k in (1, 3))
    assert torch.equal(y[2], torch.rot90(x[2], 2, (1, 2)))
    # shifted right by 2 and up by 1: output (r, c) reads input (r + 1, c - 2); borders reflect
    assert torch.equal(y[3][:, :-1, 2:], x[3][:, 1:, :-2])
    assert torch.equal(y[3][:, -1, 2:], x[3][:, -2, :-2]) and torch.equal(y[3][:, :-1, 0], x[3][:, 1:, 2])


def test_geometric_transform_is_where_it_says():
    """A 1 x 2 px fractional translation and a quarter turn through the 'g' path land where the
    exact versions do (interior, within the low-pass's small round-trip error)."""
    x = torch.rand(2, 3, 64, 64) * 4 - 2
    x = F.avg_pool2d(F.avg_pool2d(x, 5, 1, 2, count_include_pad=False), 5, 1, 2, count_include_pad=False)
    prm = identity(2)
    prm["xfrac"] = torch.tensor([[1 / 64, 2 / 64]] * 2)
    y = augment(x, 1.0, "g", params=prm)
    err = lambda dy, dx: (y - torch.roll(x, (dy, dx), (2, 3)))[..., 8:-8, 8:-8].abs().mean().item()   # noqa: E731
    assert err(2, 1) < 0.01 and err(2, 1) < 0.1 * min(err(1, 2), err(2, 0), err(1, 1), err(-2, -1))
    prm = identity(2)
    prm["rotate_pre"] = torch.full((2,), math.pi / 2)
    turned = identity(2)
    turned["rotate90"] = torch.ones(2)
    y, ref = augment(x, 1.0, "g", params=prm), blit(x, turned)
    assert (y - ref)[..., 8:-8, 8:-8].abs().mean() < 0.01 < (y - blit(x, {**turned, "rotate90": turned["rotate90"] * 3})
                                                            )[..., 8:-8, 8:-8].abs().mean()
    assert torch.equal(augment(x, 1.0, "g", params=identity(2)), x)   # nothing fired: pixels kept exactly


def test_gradient_reaches_the_images_everywhere_without_clamping():
    """Differentiable in the images, also outside [-1, 1] (kaogen's previous pipeline clamped)."""
    x = (torch.randn(4, 3, 32, 32) * 2).requires_grad_(True)
    w = torch.rand(4, 3, 32, 32)
    (augment(x, 1.0, "c", generator=torch.Generator().manual_seed(1)) * w).sum().backward()
    assert (x.grad != 0).float().mean() > 0.99
    x.grad = None
    (augment(x, 1.0, "bgc", generator=torch.Generator().manual_seed(1)) * w).sum().backward()
    reached = x.grad != 0                                # zooms and shifts leave some pixels out of view
    outside = x.detach().abs() > 1
    assert reached.float().mean() > 0.6
    assert reached[outside].float().mean() > 0.95 * reached[~outside].float().mean()   # no clamping
    y = augment(x.detach(), 1.0, "c", generator=torch.Generator().manual_seed(2))
    assert y.abs().max() > 1.5                           # not clamped


def test_sampled_parameters_have_the_official_moments():
    n, p = 200_000, 0.5
    prm = sample_params(n, 1.0, "bgc", torch.Generator().manual_seed(0))
    def close(v, want, tol):
        assert abs(v - want) < tol, (v, want)
    close(prm["xflip"].mean().item(), 0.5, 0.01)
    assert set(prm["rotate90"].unique().tolist()) == {0.0, 1.0, 2.0, 3.0}
    close(prm["xint"].abs().max().item(), 0.125, 0.001)
    close(prm["xint"].std().item(), 0.125 / math.sqrt(3), 0.002)
    close(torch.log2(prm["scale"]).std().item(), 0.2, 0.003)
    close(torch.log2(prm["aniso"]).std().item(), 0.2, 0.003)
    close(prm["xfrac"].std().item(), 0.125, 0.002)
    close(prm["brightness"].std().item(), 0.2, 0.003)
    close(torch.log2(prm["contrast"]).std().item(), 0.5, 0.006)
    close(torch.log2(prm["saturation"]).std().item(), 1.0, 0.01)
    close(prm["hue"].std().item(), math.pi / math.sqrt(3), 0.02)
    close(prm["rotate_pre"].std().item(), math.pi / math.sqrt(3), 0.02)
    close(prm["lumaflip"].mean().item(), 0.5, 0.01)
    half = sample_params(n, p, "bgc", torch.Generator().manual_seed(1))
    close((half["scale"] != 1).float().mean().item(), p, 0.01)
    close((half["brightness"] != 0).float().mean().item(), p, 0.01)
    p_rot = 1 - math.sqrt(1 - p)                         # either rotation fires: p
    close((half["rotate_pre"] != 0).float().mean().item(), p_rot, 0.01)
    close(((half["rotate_pre"] != 0) | (half["rotate_post"] != 0)).float().mean().item(), p, 0.01)


def test_the_augmented_distribution_does_not_leak():
    """ADA's non-leaking condition: below p = 0.8 the mean over draws of the augmented image stays
    closer to the image than to any of its flips, turns or luma flip (so D can only be fooled by
    the right distribution, not by a transformed one)."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(1, 3, 24, 24)
    x[:, 0, 3:10, 2:20] = 0.9
    x[:, 1, 12:22, 14:21] = -0.7
    x[:, 2, :, :5] = 0.4
    mean = torch.stack([augment(x.expand(64, -1, -1, -1), 0.6, "bgc", generator=g) for _ in range(16)]).mean((0, 1))
    d = lambda a: (mean - a[0]).square().mean().item()      # noqa: E731
    flipped = identity(1)
    flipped["lumaflip"] = torch.ones(1)
    others = [x.flip(3), x.flip(2), torch.rot90(x, 1, (2, 3)), torch.rot90(x, 2, (2, 3)), torch.rot90(x, 3, (2, 3)),
              colour(x, flipped)]
    assert all(d(x) < d(o) for o in others), (d(x), [d(o) for o in others])


# ------------------------------------------------------------------------------------------ resampling
def test_upsampling_is_aligned_and_equals_a_transposed_convolution():
    imp = torch.zeros(1, 1, 16, 16)
    imp[0, 0, 5, 9] = 1
    up = upsample2d(imp)[0, 0]
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    assert (up * ys).sum() / up.sum() == pytest.approx(2 * 5 + 0.5) and (up * xs).sum() / up.sum() == pytest.approx(2 * 9 + 0.5)
    assert up.sum() == pytest.approx(4.0)                # gain 4: the energy of 4 output pixels per input
    const = upsample2d(torch.full((1, 1, 8, 8), 0.3))[0, 0]
    torch.testing.assert_close(const[2:-2, 2:-2], torch.full((12, 12), 0.3))
    x = torch.randn(2, 3, 8, 8)
    f = setup_filter()
    k = torch.outer(f, f) * 4
    ref = F.conv_transpose2d(x.reshape(6, 1, 8, 8), k[None, None], stride=2, padding=1).reshape(2, 3, 16, 16)
    torch.testing.assert_close(upsample2d(x), ref)
    block = torch.zeros(1, 1, 32, 32)
    block[0, 0, 10:12, 18:20] = 1
    down = downsample2d(block)[0, 0]
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    assert (down * ys).sum() / down.sum() == pytest.approx(5.0) and (down * xs).sum() / down.sum() == pytest.approx(9.0)


def test_parameter_counts_are_the_official_ones_at_auto_256():
    count = lambda m: sum(p.numel() for p in m.parameters())   # noqa: E731
    cfg = NetworkConfig(resolution=256, mapping_layers=2)
    assert count(Generator(cfg)) == 23_191_522 and count(Discriminator(cfg)) == 24_001_089
    assert count(Discriminator(NetworkConfig(resolution=256, mapping_layers=2, num_classes=4))) == 26_367_040


def test_conditional_discriminator_projects_onto_the_label_mapping():
    D = Discriminator(NetworkConfig(resolution=16, z_dim=16, w_dim=16, channel_base=128, channel_max=16, num_classes=3))
    img = torch.randn(4, 3, 16, 16)
    c = F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    feats = {}
    D.out.register_forward_hook(lambda m, i, o: feats.setdefault("x", o))
    logits = D(img, c)
    cmap = D.embed(c)
    torch.testing.assert_close(logits, (feats["x"] * cmap).sum(1) / math.sqrt(cmap.shape[1]))
    assert cmap.shape == (4, 16) and len(D.embed.net) == 8


# ------------------------------------------------------------------------------------------ training
def test_configs_follow_the_official_auto_and_paper256():
    auto = load_config(GANConfig, ROOT / "configs/gan/auto256.toml")
    assert (auto.net.mapping_layers, auto.r1(), auto.ema_kimg, auto.ema_rampup, auto.ada_kimg, auto.net.mbstd_group) \
        == (2, pytest.approx(0.0002 * 256 ** 2 / 32), 32 * 10 / 32, 0.05, 500.0, 4)
    paper = load_config(GANConfig, ROOT / "configs/gan/paper256.toml")
    assert (paper.batch, paper.net.mapping_layers, paper.r1(), paper.ema_kimg, paper.ema_rampup, paper.net.mbstd_group) \
        == (64, 8, 1.0, 20.0, 0.0, 8)
    kaokore = load_config(GANConfig, ROOT / "configs/gan/kaokore256.toml")
    assert kaokore.net == auto.net and kaokore.r1() == auto.r1()


def tiny(**over) -> GANConfig:
    net = NetworkConfig(resolution=16, z_dim=16, w_dim=16, mapping_layers=2, channel_base=128, channel_max=16)
    return GANConfig(net=net, **{**dict(batch=8, kimg=0.032, snapshot_kimg=0.032, pl_weight=2.0, ema_kimg=0.05), **over})


def test_lazy_regularisation_takes_its_own_optimiser_steps(tmp_path):
    """As the official trainer: every r1_every (pl_every) steps one more Adam step on the regulariser
    alone, so the k / (k + 1) learning-rate scaling keeps the official budget (kaogen's previous
    trainer folded the regulariser into the main step: 0.8x and 0.94x of it)."""
    data = (torch.rand(16, 3, 16, 16) * 255).to(torch.uint8)
    tr = GANTrainer(tiny(r1_every=2, pl_every=3), RealSampler(data, None, 0, True), tmp_path)
    for _ in range(6):
        tr.train_step()
    steps = lambda opt: {int(s["step"]) for s in opt.state.values()}   # noqa: E731
    assert steps(tr.opt_D) == {6 + 3} and steps(tr.opt_G) == {6 + 2}


def test_ema_ramps_up_its_half_life():
    """EMA half-life at most ema_rampup x the images shown: after the first step of 8 images with
    ramp-up 0.05 the average is (almost) the generator itself; without ramp-up it barely moves."""
    data = (torch.rand(16, 3, 16, 16) * 255).to(torch.uint8)
    gap = {}
    for rampup in (0.05, 0.0):
        tr = GANTrainer(tiny(ema_rampup=rampup, ema_kimg=10.0), RealSampler(data, None, 0, True),
                        __import__("tempfile").mkdtemp(), seed=0)
        init = [p.clone() for p in tr.G_ema.parameters()]
        tr.train_step()
        moved = max((p - q).abs().max().item() for p, q in zip(tr.G.parameters(), init))
        gap[rampup] = max((e - p).abs().max().item() for e, p in zip(tr.G_ema.parameters(), tr.G.parameters())) / moved
    assert gap[0.05] < 1e-3 and gap[0.0] > 0.9


def test_training_images_are_held_as_uint8(sample_root):
    from kaogen.gan.data import load_images

    images, labels = load_images(sample_root, 32, cond="status", split="all")
    assert images.dtype == torch.uint8 and images.shape == (20, 3, 32, 32) and labels.dtype == torch.long   # 20 with a status
