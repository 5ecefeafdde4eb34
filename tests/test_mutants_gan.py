"""The ADA controller and DiffAugment, exactly: the tests that kill what mutation testing of
kaogen/gan/augment.py left alive (p's arithmetic, the interval, the state round trip, dispatch)."""

from __future__ import annotations

import math

import numpy as np

import pytest
import torch

from kaogen.errors import KaogenError
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


def test_the_controllers_defaults_are_the_official_ones():
    """Augment("ada") alone: target 0.6, interval 4, ada_kimg 500, ops 'bgc' (StyleGAN2-ADA's defaults):
    r_t 0.875 > 0.6 moves p up by batch * 4 / 500000 on the 4th call only."""
    a = Augment("ada")
    for _ in range(3):
        a.observe(logits(8), batch=64)
    assert a.p == 0.0
    a.observe(logits(6), batch=64)
    assert a.rt == pytest.approx(0.875) and a.p == pytest.approx(64 * 4 / 500_000, rel=1e-12) and a.ops == "bgc"
    b = Augment("ada")
    for _ in range(4):
        b.observe(logits(6), batch=64)                                # r_t 0.5 < 0.6: down (stays at 0)
    assert b.p == 0.0 and b.rt == pytest.approx(0.5)

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



def test_diffaugment_and_adas_statistics_stay_on_the_inputs_device():
    """Every draw of DiffAugment and ADA's running sums are made on the images' (logits') device:
    on a GPU a CPU tensor in the mix is an error or a host copy per step. Checked on the meta device,
    which refuses a CPU operand as CUDA does (and any read-back), on this CPU-only machine."""
    x = torch.zeros(2, 3, 8, 8, device="meta")
    out = diffaugment(x)
    assert out.device.type == "meta" and out.shape == x.shape and out.dtype == torch.float32
    a = Augment("ada", interval=4)
    for _ in range(3):                                                # no read-back before the interval ends
        a.observe(torch.zeros(8, device="meta"), batch=8)
    assert a.p == 0.0 and math.isnan(a.rt)
    b = Augment("ada", interval=4)                                    # resumed mid-interval (sums on the CPU),
    b.load({"p": 0.5, "rt": 0.0, "sign_sum": 3.0, "sign_count": 8.0, "calls": 1})
    b.observe(torch.zeros(8, device="meta"), batch=8)                 # then logits on the device
    assert b.p == 0.5 and b._calls == 2


def test_rt_is_the_mean_sign_even_of_a_single_logit_and_p_goes_through_a_process_group(tmp_path):
    """r_t is the mean of sign(D(real)) over the interval, also when the interval saw one logit
    (batch 1, interval 1); under torchrun the statistics are all-reduced over the process group:
    with a group of one process, p and r_t are what they are without one."""
    a = Augment("ada", interval=1, ada_kimg=0.001)
    a.observe(torch.tensor([3.0]), batch=1)
    assert a.rt == 1.0 and a.p == 1.0
    a.observe(torch.tensor([-2.0]), batch=1)
    assert a.rt == -1.0 and a.p == 0.0

    import torch.distributed as dist

    alone = Augment("ada", interval=2, ada_kimg=0.5)
    grouped = Augment("ada", interval=2, ada_kimg=0.5)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        for pos in (8, 6, 8, 7):
            grouped.observe(logits(pos), batch=32)
    finally:
        dist.destroy_process_group()
    for pos in (8, 6, 8, 7):
        alone.observe(logits(pos), batch=32)
    assert grouped.state() == alone.state() and grouped.p > 0

# ------------------------------------------------------------------ kaogen/gan/sample.py

def tiny_bundle(classes: int = 0, seed: int = 0):
    """A generator of 8 x 8 images with its noise inputs switched on (noise strength 1: a wrong
    noise mode shows), conditional on `classes` classes when > 0."""
    from kaogen.gan.config import NetworkConfig
    from kaogen.gan.networks import Generator
    from kaogen.gan.sample import GeneratorBundle

    torch.manual_seed(seed)
    G = Generator(NetworkConfig(resolution=8, z_dim=8, w_dim=8, mapping_layers=1, channel_base=64, channel_max=8,
                                num_classes=classes))
    with torch.no_grad():
        for layer in G.layers:
            layer.noise_strength.fill_(1.0)
        G.mapping.w_avg.normal_()
    names = ["noble", "warrior", "incarnation", "commoner"][:classes]
    return GeneratorBundle(G, "status" if classes else "none", names)


def test_a_seed_latent_is_numpy_randomstate_of_that_seed():
    """A seed's latent is RandomState(seed).randn(z_dim), as the reference implementation draws it,
    float32, one row per seed in order (seeds shared with other StyleGAN tools give the same z)."""
    import numpy as np

    from kaogen.gan.sample import seed_latents

    z = seed_latents([3, 0, 3], 8)
    assert z.dtype == torch.float32 and z.shape == (3, 8)
    assert torch.equal(z[0], torch.from_numpy(np.random.RandomState(3).randn(8)).float())
    assert torch.equal(z[1], torch.from_numpy(np.random.RandomState(0).randn(8)).float())
    assert torch.equal(z[0], z[2])


def test_parse_seeds_takes_ranges_and_lists_and_refuses_the_rest():
    """'a-b' is inclusive, lists keep their order, spaces and a trailing comma are fine; nothing,
    a backward range, a non-number or a seed outside numpy's 0 .. 2**32 - 1 is refused with a
    KaogenError (exit 1 at the command line; -5 was a ValueError traceback from RandomState)."""
    from kaogen.errors import KaogenError
    from kaogen.gan.sample import parse_seeds

    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_seeds("5") == [5]
    assert parse_seeds("4-4") == [4]
    assert parse_seeds(" 2 - 4 , 9,") == [2, 3, 4, 9]
    assert parse_seeds("9,1-2") == [9, 1, 2]
    assert parse_seeds("10-12") == [10, 11, 12]
    assert parse_seeds("0") == [0] and parse_seeds(f"{2 ** 32 - 2}-{2 ** 32 - 1}") == [2 ** 32 - 2, 2 ** 32 - 1]
    for bad in ("", ",", "3-1", "3-1,5", "3--1,5", "x", "1-x", "1.5", "1-2-3", "-5", "2,-1", "-2-3",
                str(2 ** 32), f"{2 ** 32 - 1}-{2 ** 32}", f"0-{2 ** 40}"):   # refused before the range is built
        with pytest.raises(KaogenError):
            parse_seeds(bad)


def test_a_class_is_a_one_hot_label_and_wrong_classes_are_refused():
    """Conditional generators take exactly one of their class names (a one-hot row per image) and
    refuse none or an unknown one; unconditional ones refuse any class."""
    from kaogen.errors import KaogenError

    g = tiny_bundle(classes=4)
    c = g.label("incarnation", 3)
    assert torch.equal(c, torch.tensor([[0.0, 0.0, 1.0, 0.0]] * 3))
    for bad in (None, "king"):
        with pytest.raises(KaogenError):
            g.label(bad, 1)
    z = torch.from_numpy(__import__("numpy").random.RandomState(4).randn(1, 8)).float()
    want = ((g.G.synthesis(g.G.mapping(z, torch.tensor([[0.0, 1.0, 0.0, 0.0]])), noise="const") + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(g.generate([4], label="warrior"), want.detach(), atol=1e-6, rtol=0)
    assert not torch.allclose(g.generate([4], label="warrior"), g.generate([4], label="noble"))
    m = tiny_bundle(classes=4)                                        # on another device (meta, standing in for a GPU)
    m.G.to("meta")
    assert m.label("noble", 2).device.type == "meta"
    u = tiny_bundle()
    assert u.label(None, 2) is None
    with pytest.raises(KaogenError):
        u.label("warrior", 1)


def test_generated_images_are_the_networks_output_in_0_1_deterministic_in_any_batch():
    """generate(): the generator's [-1, 1] output mapped to [0, 1] and clipped there (values beyond
    either end become 0 or 1), with the networks' fixed noise (the same seed twice is the same
    image, whatever the batch size), truncation toward the average latent (0: every seed the same)."""
    g = tiny_bundle()
    with torch.no_grad():
        for t in g.G.torgbs:                                            # raw output well inside (-1, 1),
            t.conv.weight.mul_(0.02)
        g.G.torgbs[-1].bias.copy_(torch.tensor([5.0, -5.0, 0.0]))      # but red beyond 1, green below -1
    seeds = [0, 1, 2, 3, 4]
    imgs = g.generate(seeds, batch=2)
    assert imgs.shape == (5, 3, 8, 8) and imgs.device.type == "cpu"
    assert (imgs[:, 0] == 1).all() and (imgs[:, 1] == 0).all()
    raw = g.G.synthesis(g.ws(seeds), noise="const").detach()
    torch.testing.assert_close(imgs[:, 2], (raw[:, 2] + 1) / 2, atol=1e-6, rtol=0)
    assert raw[:, 2].abs().max() < 1 and raw[:, 2].std() > 1e-3
    torch.testing.assert_close(g.generate(seeds, batch=16), imgs, atol=1e-5, rtol=0)
    assert torch.equal(g.generate([3]), g.generate([3]))
    assert torch.equal(g.generate([3], device="cpu"), g.generate([3])) and g.device.type == "cpu"
    flat = g.generate(seeds, truncation=0.0)
    assert (flat - flat[:1]).abs().max() < 1e-6
    half = g.generate(seeds, truncation=0.5)
    assert (half - half[:1]).abs().max() > 1e-3 and not torch.allclose(half, imgs)


def test_a_saved_generator_loads_back_as_it_was(tmp_path, monkeypatch):
    """save/load: the same images, class names and condition; the meta (kimg, p) stored; half=True
    stores fp16 (a smaller file, nearly the same images); generators saved before the aligned
    upsampler (no `resample` in their config) sample with the legacy one; weights that do not fit
    the config, a foreign checkpoint and a missing shipped generator are refused; without a path the
    shipped checkpoints/gan-kaokore.pt ($KAOGEN_CHECKPOINTS) is loaded."""
    from kaogen.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from kaogen.errors import KaogenError
    from kaogen.gan.sample import GeneratorBundle

    g = tiny_bundle(classes=4)
    want = g.generate([1, 2], label="commoner")
    p = g.save(tmp_path / "g.pt", {"kimg": 1.5, "augment_p": 0.25})
    back = GeneratorBundle.load(p)
    assert back.class_names == g.class_names and back.cond == "status" and back.source == str(p)
    assert back.G.cfg.resample == "aligned"
    assert torch.equal(back.generate([1, 2], label="commoner"), want)
    assert GeneratorBundle.load(p, device="meta").device.type == "meta"   # loaded onto the device asked for
    plain = GeneratorBundle(tiny_bundle().G)                              # a bare generator: unconditional
    assert plain.cond == "none" and plain.class_names == [] and plain.label(None, 1) is None and plain.source == ""
    assert GeneratorBundle.load(plain.save(tmp_path / "u.pt")).cond == "none"
    meta = load_checkpoint(p).meta
    assert meta["kimg"] == 1.5 and meta["augment_p"] == 0.25 and meta["half"] is False
    h = g.save(tmp_path / "h.pt", half=True)
    assert load_checkpoint(h).meta["half"] is True and h.stat().st_size < 0.8 * p.stat().st_size
    torch.testing.assert_close(GeneratorBundle.load(h).generate([1, 2], label="commoner"), want, atol=2e-2, rtol=0)
    assert not torch.equal(GeneratorBundle.load(h).generate([1, 2], label="commoner"), want)

    ck = load_checkpoint(p)
    old = dict(ck.config, net={k: v for k, v in ck.config["net"].items() if k != "resample"})
    save_checkpoint(tmp_path / "old.pt", Checkpoint("gan", old, ck.state, {}))
    assert GeneratorBundle.load(tmp_path / "old.pt").G.cfg.resample == "legacy"

    net = dict(ck.config["net"], w_dim=16)
    save_checkpoint(tmp_path / "misfit.pt", Checkpoint("gan", dict(ck.config, net=net), ck.state, {}))
    save_checkpoint(tmp_path / "nokey.pt", Checkpoint("gan", ck.config, {"G": ck.state["G_ema"]}, {}))
    save_checkpoint(tmp_path / "agent.pt", Checkpoint("l2p-agent", {}, {}))
    for bad in ("misfit.pt", "nokey.pt", "agent.pt"):
        with pytest.raises(KaogenError):
            GeneratorBundle.load(tmp_path / bad)

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setenv("KAOGEN_CHECKPOINTS", str(shipped))
    with pytest.raises(KaogenError, match="no shipped generator"):
        GeneratorBundle.load()
    (shipped / "gan-kaokore.pt").write_bytes(p.read_bytes())
    assert torch.equal(GeneratorBundle.load().generate([1, 2], label="commoner"), want)


# ------------------------------------------------------------------ kaogen/gan/train.py: snapshots and resume

def tiny_trainer(run, seed: int = 0, **over):
    """A GAN trainer of 8 x 8 images, batch 4, ADA moving fast, no regularisers (a step is cheap)."""
    from kaogen.gan.config import GANConfig, NetworkConfig
    from kaogen.gan.data import RealSampler
    from kaogen.gan.train import GANTrainer

    net = NetworkConfig(resolution=8, z_dim=8, w_dim=8, mapping_layers=1, channel_base=64, channel_max=8)
    base = dict(batch=4, kimg=0.016, snapshot_kimg=0.004, keep=2, ema_kimg=0.01, ada_kimg=0.02, ada_interval=1,
                pl_weight=0.0, r1_gamma=0.0, amp=False, style_mixing=0.0)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 8, 8), generator=g, dtype=torch.uint8)
    return GANTrainer(GANConfig(net=net, **{**base, **over}), RealSampler(images, None, 0, True), run, seed=seed)


def rows_of(run):
    import json

    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]


def test_snapshots_keep_the_newest_and_a_resume_restores_everything_from_the_newest(tmp_path):
    """Every snapshot_kimg a snapshot named by its image count (the last `keep` kept) and generator.pt
    with its kimg and p; resume() takes the newest snapshot and restores the image count, the step,
    the networks, ADA's p and statistics, the path-length mean and every random state; an empty run
    folder is no resume."""
    import json

    from kaogen.checkpoint import load_checkpoint

    assert not tiny_trainer(tmp_path / "empty").resume()
    run = tmp_path / "run"
    a = tiny_trainer(run, seed=3, keep=3)
    a.train(progress=False)
    assert sorted(p.name for p in run.glob("snapshot-*.pt")) == [f"snapshot-0000000{n:02d}.pt" for n in (8, 12, 16)]
    meta = load_checkpoint(run / "generator.pt").meta
    assert meta["kimg"] == 0.016 and meta["augment_p"] == a.augment.p and a.augment.p > 0
    assert [r["kimg"] for r in rows_of(run)] == [0.004, 0.008, 0.012, 0.016]
    torch_state, data_state = torch.get_rng_state(), a.gen.get_state()
    a.pl_mean.fill_(0.5)
    a.augment.interval = 2
    a.augment.observe(torch.ones(3), 4)                               # statistics mid-interval are saved too
    assert a.augment.state()["calls"] == 1
    a.snapshot()

    b = tiny_trainer(run, seed=3, kimg=0.024)
    assert b.resume() and b.nimg == 16 and b.step == 4
    assert torch.equal(torch.get_rng_state(), torch_state) and torch.equal(b.gen.get_state(), data_state)
    assert b.augment.state() == a.augment.state() and float(b.pl_mean) == 0.5
    for name in ("G", "D", "G_ema"):
        for (k, p), q in zip(getattr(a, name).state_dict().items(), getattr(b, name).state_dict().values()):
            assert torch.equal(p, q), (name, k)
    for oa, ob in ((a.opt_G, b.opt_G), (a.opt_D, b.opt_D)):
        sa, sb = oa.state_dict()["state"], ob.state_dict()["state"]
        assert sa.keys() == sb.keys() and all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)


def test_a_resume_drops_metrics_rows_newer_than_its_snapshot(tmp_path):
    """A run killed after writing a metrics row but before its snapshot: the resume keeps the rows
    up to and including its snapshot's kimg and drops the later ones (and blank lines), also one
    image later (batch 1, a row every image)."""
    run = tmp_path / "run"
    tiny_trainer(run, batch=1, kimg=0.003, snapshot_kimg=0.001).train(progress=False)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('\n{"kimg": 0.004, "g_loss": 1.0}\n')
    b = tiny_trainer(run, batch=1, kimg=0.004, snapshot_kimg=0.001)
    assert b.resume() and b.nimg == 3
    assert [r["kimg"] for r in rows_of(run)] == [0.001, 0.002, 0.003]
    assert (run / "metrics.jsonl").read_text().count("\n") == 3
    b.train(progress=False)
    assert [r["kimg"] for r in rows_of(run)] == [0.001, 0.002, 0.003, 0.004]


def test_a_resume_refuses_other_networks_or_conditioning(tmp_path):
    """The newest snapshot must hold this config's networks and conditioning: anything else is a
    KaogenError (start a new run), not a silently mixed run."""
    from kaogen.errors import KaogenError

    run = tmp_path / "run"
    tiny_trainer(run, kimg=0.004).train(progress=False)
    other = tiny_trainer(run)
    other.cfg.net.channel_max = 16
    with pytest.raises(KaogenError, match="other networks"):
        other.resume()
    cond = tiny_trainer(run)
    cond.cfg.cond = "gender"
    with pytest.raises(KaogenError, match="other networks"):
        cond.resume()
    assert tiny_trainer(run).resume()
    from kaogen.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

    g = load_checkpoint(run / "generator.pt")                       # a generator named like a snapshot
    save_checkpoint(run / "snapshot-000000099.pt", Checkpoint(g.kind, g.config, g.state, g.meta))
    with pytest.raises(KaogenError):
        tiny_trainer(run).resume()


def test_random_states_across_snapshot_formats_and_process_counts(tmp_path):
    """The saved random state is restored when the snapshot was written by as many processes (also
    by snapshots that do not record the count, and by kaogen <= 0.1's rng_torch / rng_data); with
    another number of processes each rank's state is derived from (seed, rank, step): not the saved
    one, the same on every resume, different for another seed or rank."""
    from kaogen.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    a = tiny_trainer(run, seed=2, kimg=0.008)
    a.train(progress=False)
    saved = torch.get_rng_state(), a.gen.get_state()
    snap = sorted(run.glob("snapshot-*.pt"))[-1]
    ck = load_checkpoint(snap)

    def states(seed=2, rank=0):
        t = tiny_trainer(run, seed=seed)
        t.rank = rank
        assert t.resume()
        return torch.get_rng_state(), t.gen.get_state()

    def same(x, y):
        return torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])

    assert same(states(), saved)
    save_checkpoint(snap, Checkpoint(ck.kind, ck.config, ck.state, {k: v for k, v in ck.meta.items() if k != "world"}))
    assert same(states(), saved)                                      # no count recorded: one process
    old = {k: v for k, v in ck.state.items() if k != "rng"}
    old.update(rng_torch=ck.state["rng"]["0"]["torch"], rng_data=ck.state["rng"]["0"]["gen.data"])
    save_checkpoint(snap, Checkpoint(ck.kind, ck.config, old, ck.meta))
    assert same(states(), saved)                                      # kaogen <= 0.1

    save_checkpoint(snap, ck)
    a.world = 2                                                       # as if written by two processes
    a.snapshot()
    two = load_checkpoint(snap).state["rng"]["0"]
    saved = two["torch"], two["gen.data"]
    derived = states()
    assert not same(derived, saved) and same(states(), derived)
    assert not same(states(seed=5), derived) and not same(states(rank=1), derived)
    assert not torch.equal(derived[0], saved[0]) and not torch.equal(derived[1], saved[1])


def test_the_loop_snapshots_every_interval_and_at_the_end_with_its_rows(tmp_path):
    """train(): a metrics row + snapshot + grid each time the image count crosses a multiple of
    snapshot_kimg, and at the end of the run also off that grid; a row holds the means of the losses
    over the steps since the previous row, p and r_t then, the seconds per kimg measured (at least
    the interval's steps took, no more than the wall time); the run stops at kimg. Only rank 0 writes the run's files."""
    import time

    run = tmp_path / "run"
    tr = tiny_trainer(run, kimg=0.020, snapshot_kimg=0.008, keep=5)
    steps, step = [], tr.train_step

    def record():
        t = time.time()
        out = step()
        steps.append((out, tr.augment.p, tr.augment.rt, time.time() - t))
        return out

    tr.train_step = record
    t0 = time.time()
    tr.train(progress=False)
    wall = time.time() - t0
    assert tr.nimg == 20 and len(steps) == 5
    rows = rows_of(run)
    assert [r["kimg"] for r in rows] == [0.008, 0.016, 0.02]
    assert sorted(p.name for p in run.glob("snapshot-*.pt")) == [f"snapshot-0000000{n:02d}.pt" for n in (8, 16, 20)]
    assert sorted(p.name for p in (run / "samples").glob("grid-*.png")) == [f"grid-0000000{n:02d}.png" for n in (8, 16, 20)]
    for row, (lo, hi) in zip(rows, ((0, 2), (2, 4), (4, 5))):
        for k in ("g_loss", "d_loss", "real_sign"):
            assert row[k] == pytest.approx(np.mean([s[0][k] for s in steps[lo:hi]]), abs=1e-6), (row, k)
        assert row["augment_p"] == steps[hi - 1][1] and row["rt"] == steps[hi - 1][2]
        spent = row["sec_per_kimg"] * (hi - lo) * 4 / 1000              # the interval's seconds
        assert sum(st[3] for st in steps[lo:hi]) <= spent <= wall
    assert len({r["augment_p"] for r in rows}) > 1

    quiet = tmp_path / "rank1"
    r1 = tiny_trainer(quiet, kimg=0.008)
    r1.rank = 1
    r1.train(progress=False)
    assert r1.nimg == 8 and sorted(p.name for p in quiet.rglob("*")) == ["samples"]


def test_a_run_is_as_long_as_its_kimg_also_when_kimg_times_1000_is_not_exact(tmp_path):
    """The run trains until at least kimg * 1000 images, and snapshots where the count crosses a
    multiple of snapshot_kimg * 1000, also at 1 kimg and beyond (batch 500, so counts land exactly
    on the thousands): --kimg 1 is two steps, --kimg 1.001 is three (1.001 * 1000 is 1000.9999999999999
    in floating point: truncated, the run stopped at 1000 images, one short)."""
    one = tiny_trainer(tmp_path / "one", batch=500, kimg=1.0, snapshot_kimg=1.0, augment="none")
    one.train(progress=False)
    assert one.nimg == 1000 and [r["kimg"] for r in rows_of(tmp_path / "one")] == [1.0]
    more = tiny_trainer(tmp_path / "more", batch=500, kimg=1.001, snapshot_kimg=1.0, augment="none")
    more.train(progress=False)
    assert more.nimg == 1500 and [r["kimg"] for r in rows_of(tmp_path / "more")] == [1.0, 1.5]


def test_train_shows_its_progress_in_images_by_default(tmp_path, capsys):
    """train() without arguments shows a progress bar on stderr, counted in images (4/4 after one
    step of batch 4); train(progress=False) shows nothing."""
    tiny_trainer(tmp_path / "a", kimg=0.004).train()
    err = capsys.readouterr().err
    assert "gan" in err and "4/4" in err, err
    tiny_trainer(tmp_path / "b", kimg=0.004).train(progress=False)
    assert capsys.readouterr().err == ""


def test_a_snapshot_interval_under_one_image_is_refused(tmp_path):
    """snapshot_kimg rounds to whole images; one that rounds to 0 images was a ZeroDivisionError in the
    loop: refused in one line when the trainer is made, before any step."""
    for bad in (0.0, 0.0004, -1.0):
        with pytest.raises(KaogenError, match="snapshot_kimg must be at least 0.001"):
            tiny_trainer(tmp_path / f"r{bad}", snapshot_kimg=bad)
    assert tiny_trainer(tmp_path / "ok", snapshot_kimg=0.0006).cfg.snapshot_kimg == 0.0006   # rounds to 1 image
