"""StyleGAN2: network properties, ADA, learning toward a known distribution, exact resume, sampling CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from kaogen.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from kaogen.cli.main import cli
from kaogen.errors import KaogenError
from kaogen.gan.augment import Augment, diffaugment
from kaogen.gan.config import GANConfig, NetworkConfig
from kaogen.gan.data import RealSampler
from kaogen.gan.networks import Discriminator, Generator, ModulatedConv
from kaogen.gan.sample import GeneratorBundle, parse_seeds
from kaogen.gan.train import GANTrainer

from conftest import DEVICES

TINY = dict(resolution=16, z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32)


def known_data(n: int = 128) -> torch.Tensor:
    """Left half red, right half blue, a brightness per image: uint8 (n, 3, 16, 16)."""
    g = torch.Generator().manual_seed(0)
    b = 0.6 + 0.4 * torch.rand(n, 1, 1, 1, generator=g)
    x = torch.zeros(n, 3, 16, 16)
    x[:, 0, :, :8] = 1
    x[:, 2, :, 8:] = 1
    return (x * b * 255).to(torch.uint8)


def tiny_cfg(**over) -> GANConfig:
    base = dict(batch=16, kimg=0.8, snapshot_kimg=0.2, ema_kimg=0.05, lr=0.002, ada_kimg=5, pl_weight=0.0)
    return GANConfig(net=NetworkConfig(**TINY), **{**base, **over})


def test_shapes_and_conditioning():
    cfg = NetworkConfig(**{**TINY, "resolution": 32, "num_classes": 4})
    G, D = Generator(cfg), Discriminator(cfg)
    c = torch.eye(4)[[0, 3]]
    img = G(torch.randn(2, 32), c)
    assert img.shape == (2, 3, 32, 32) and D(img, c).shape == (2,)
    assert G.mapping(torch.randn(2, 32), c).shape == (2, G.num_ws, 32)
    # the class changes the image
    z = torch.randn(1, 32)
    assert (G(z, c[:1], noise="const") - G(z, c[1:], noise="const")).abs().mean() > 1e-3
    with pytest.raises(ValueError):
        Generator(NetworkConfig(**{**TINY, "resolution": 48}))


def test_modulated_conv_demodulates_to_unit_variance():
    torch.manual_seed(0)
    conv = ModulatedConv(64, 32, 16)
    x = torch.randn(8, 64, 16, 16)
    y = conv(x, torch.randn(8, 16) * 3)                 # whatever the style's scale
    assert abs(y.std().item() - 1.0) < 0.15
    plain = ModulatedConv(64, 32, 16, demod=False)
    assert abs(plain(x, torch.randn(8, 16) * 3).std().item() - 1.0) > 0.3


def test_ada_probability_follows_overfitting():
    a = Augment("ada", target=0.6, interval=4, ada_kimg=1)
    for _ in range(40):
        a.observe(torch.ones(16), 16)                   # D is sure of every real: overfitting
    assert a.p > 0.5
    high = a.p
    for _ in range(40):
        a.observe(-torch.ones(16), 16)
    assert a.p < high
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    a.p = 1.0
    assert a(x).shape == x.shape and not torch.equal(a(x), x)
    assert Augment("none")(x) is x and diffaugment(x).shape == x.shape


def test_training_moves_samples_toward_the_data():
    """The data's mean image is known (red left half, blue right half); samples must approach it."""
    data = known_data()
    target = data.float().mean(0) / 127.5 - 1
    # ADA on, p moving slowly (the full pipeline at p ~ 0.1 this early slows the known target down)
    tr = GANTrainer(tiny_cfg(ada_kimg=50), RealSampler(data, None, 0, False), __import__("tempfile").mkdtemp())

    def distance():
        return ((tr.bundle().generate(list(range(64))) * 2 - 1).mean(0) - target).abs().mean().item()

    before = distance()
    tr.train(progress=False)
    assert distance() < 0.5 * before
    x = tr.bundle().generate(list(range(64)))
    assert x[:, 0, :, :8].mean() > x[:, 0, :, 8:].mean() + 0.2       # red on the left
    assert x[:, 2, :, 8:].mean() > x[:, 2, :, :8].mean() + 0.2       # blue on the right


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "amp"])
def test_resume_is_exact(tmp_path, amp):
    data = known_data(32)
    cfg = dict(kimg=0.128, snapshot_kimg=0.064, pl_weight=2.0, pl_every=2, r1_every=2, ada_kimg=0.5, amp=amp)
    a = GANTrainer(tiny_cfg(**cfg), RealSampler(data, None, 0, True), tmp_path / "a", seed=1)
    a.train(progress=False)
    b = GANTrainer(tiny_cfg(**{**cfg, "kimg": 0.064}), RealSampler(data, None, 0, True), tmp_path / "b", seed=1)
    b.train(progress=False)
    c = GANTrainer(tiny_cfg(**cfg), RealSampler(data, None, 0, True), tmp_path / "b", seed=1)
    assert c.resume() and c.nimg == 64
    c.train(progress=False)
    assert a.augment.p == c.augment.p and a.augment.p > 0
    for name in ("G", "D", "G_ema"):
        for (n, p), (_, q) in zip(getattr(a, name).state_dict().items(), getattr(c, name).state_dict().items()):
            assert torch.equal(p, q), (name, n)
    rows = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["kimg"] for r in rows] == [0.064, 0.128]
    # states come back on the CPU: RNG states as byte tensors, Adam's step counters as CPU scalars
    # (a step on the GPU makes the foreach Adam synchronise once per parameter)
    snap = load_checkpoint(sorted((tmp_path / "b").glob("snapshot-*.pt"))[-1], kind="gan-train")
    assert all(t.dtype == torch.uint8 and t.device.type == "cpu" for t in snap.state["rng"]["0"].values())
    for opt in (c.opt_G, c.opt_D):
        assert all(st["step"].device.type == "cpu" for st in opt.state.values())


def test_amp_keeps_latents_and_augmentation_in_float32():
    """Under bfloat16 autocast (what `amp` runs, on the CPU as on CUDA) the mapping network's output,
    its tracked average and truncation stay float32 (bfloat16 W met the float32 average and failed),
    and ADA's sampling grids are built in float32 (in bfloat16 they are off by up to 0.66 px)."""
    from kaogen.device import autocast
    from kaogen.gan.augment import Augment

    G = Generator(NetworkConfig(**TINY))
    z = torch.randn(4, TINY["z_dim"])
    with autocast("cpu"):
        w = G.mapping(z, track_w_avg=True)
        wt = G.mapping(z, truncation=0.7)
    assert w.dtype == wt.dtype == G.mapping.w_avg.dtype == torch.float32
    plain = G.mapping(z)                                             # no autocast: the reference
    torch.testing.assert_close(w, plain, atol=0, rtol=0)
    torch.testing.assert_close(wt, G.mapping.w_avg.lerp(plain, 0.7))
    aug = Augment("ada")
    aug.p = 1.0
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    torch.manual_seed(3)
    ref = aug(x)
    torch.manual_seed(3)
    with autocast("cpu"):
        got = aug(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)


def test_amp_features_are_bfloat16_and_the_image_float32():
    """Under amp the synthesis features stay bfloat16 from layer to layer (float32 biases and
    demodulation coefficients promoted them back before), while the skip image accumulates in float32."""
    from kaogen.device import autocast
    from kaogen.gan.networks import SynthesisLayer

    G = Generator(NetworkConfig(**TINY))
    dtypes = []
    for m in G.modules():
        if isinstance(m, SynthesisLayer):
            m.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    with autocast("cpu"):
        img = G(torch.randn(2, TINY["z_dim"]))
    assert set(dtypes) == {torch.bfloat16} and img.dtype == torch.float32


def test_amp_training_on_the_cpu_is_close_to_float32(tmp_path):
    """`amp` runs bfloat16 autocast on the CPU too: the losses of a few steps are finite, differ from
    the float32 run (autocast is really on) and stay close to it."""
    data = known_data(32)
    losses = {}
    for amp in (False, True):
        tr = GANTrainer(tiny_cfg(amp=amp, pl_weight=2.0, pl_every=2, r1_every=2), RealSampler(data, None, 0, True),
                        tmp_path / str(amp), seed=2)
        tr.augment.p = 0.3
        losses[amp] = [tr.train_step() for _ in range(3)]
    for a, b in zip(losses[False], losses[True]):
        assert a.keys() == b.keys()
        for k in a:
            assert math.isfinite(b[k]) and abs(a[k] - b[k]) < 0.05 * max(1.0, abs(a[k])), (k, a[k], b[k])
    assert any(a["g_loss"] != b["g_loss"] for a, b in zip(losses[False], losses[True]))


def test_a_training_step_reads_back_a_fixed_few_times(tmp_path):
    """Host synchronisations per step, with ADA on and both regularisers due: the losses are read
    back together once, each geometric augmentation once (how far to pad: 4 calls), ADA's
    statistics once per interval; never once per loss, op or parameter, whatever the network's depth.
    Host-to-device copies: a fixed few per step (the ADA draws, the reals, the labels)."""
    from sync_counter import SyncCounter

    counts = []
    for res in (16, 32):
        cfg = tiny_cfg(pl_weight=2.0, pl_every=1, r1_every=1, ada_interval=4, style_mixing=0.0)
        cfg.net.resolution = res
        tr = GANTrainer(cfg, RealSampler(known_data(16).repeat_interleave(res // 16, 2).repeat_interleave(res // 16, 3),
                                         None, 0, True), tmp_path / str(res), seed=0)
        tr.augment.p = 0.5
        tr.train_step()
        with SyncCounter() as c:
            for _ in range(4):
                tr.train_step()
        counts.append((c.counts["sync"], c.counts["h2d"]))
        assert c.counts["sync"] <= 4 * (1 + 4) + 1, c.report()
        assert c.counts["h2d"] <= 4 * 16, c.report()
    assert counts[0] == counts[1]


def test_divergence_stops_without_saving(tmp_path, monkeypatch):
    tr = GANTrainer(tiny_cfg(kimg=0.064, snapshot_kimg=0.032), RealSampler(known_data(16), None, 0, False), tmp_path)
    real_forward = tr.D.forward
    monkeypatch.setattr(tr.D, "forward", lambda img, c=None: real_forward(img, c) * float("nan"))
    with pytest.raises(KaogenError, match="diverged"):
        tr.train(progress=False)
    assert not list(tmp_path.glob("snapshot-*.pt")) and not (tmp_path / "generator.pt").exists()


def test_a_seed_is_the_same_image_in_any_batch(tmp_path):
    torch.manual_seed(0)
    g = GeneratorBundle(Generator(NetworkConfig(**TINY)))
    alone = g.generate([7])
    many = g.generate([1, 7, 3], batch=3)
    torch.testing.assert_close(alone[0], many[1], atol=1e-5, rtol=0)
    assert parse_seeds("0-3,9") == [0, 1, 2, 3, 9]
    with pytest.raises(KaogenError):
        parse_seeds("a-b")


def test_sampling_commands(tmp_path):
    torch.manual_seed(0)
    ck = GeneratorBundle(Generator(NetworkConfig(**TINY))).save(tmp_path / "g.pt")
    run = lambda *a: CliRunner().invoke(cli, list(a))  # noqa: E731
    r = run("sample", "--checkpoint", str(ck), "--seeds", "0-9", "-o", str(tmp_path / "grid.png"))
    assert r.exit_code == 0, r.output
    from PIL import Image
    assert Image.open(tmp_path / "grid.png").size == (8 * 16, 2 * 16)
    assert run("sample", "--checkpoint", str(ck), "--seeds", "1,2", "-o", str(tmp_path / "d")).exit_code == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["seed00001.png", "seed00002.png"]
    r = run("interpolate", "--checkpoint", str(ck), "--seeds", "1,5", "--frames", "6", "-o", str(tmp_path / "w.gif"))
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "w.gif") as im:
        assert im.n_frames >= 2
    assert run("style-mix", "--checkpoint", str(ck), "--rows", "1-2", "--cols", "3-4", "-o", str(tmp_path / "m.png")).exit_code == 0
    assert Image.open(tmp_path / "m.png").size == (3 * 16, 7 * 16)
    wrong = save_checkpoint(tmp_path / "agent.pt", Checkpoint("l2p-agent", {}, {}))
    for args in (("sample", "--checkpoint", str(wrong), "-o", str(tmp_path / "x.png")),
                 ("sample", "--checkpoint", str(ck), "--class", "status=warrior", "-o", str(tmp_path / "x.png")),
                 ("sample", "--checkpoint", str(ck), "--seeds", "zz", "-o", str(tmp_path / "x.png"))):
        r = run(*args)
        assert r.exit_code == 1 and r.output.startswith("Error:") and len(r.output.strip().splitlines()) == 1, r.output
        assert not (tmp_path / "x.png").exists()


def test_conditional_training_on_kaokore_labels(tmp_path, sample_root):
    cfg = tmp_path / "c.toml"
    cfg.write_text("batch = 4\nkimg = 0.008\nsnapshot_kimg = 0.008\n[net]\nresolution = 16\nz_dim = 16\nw_dim = 16\n"
                   "mapping_layers = 1\nchannel_base = 128\nchannel_max = 16\n")
    r = CliRunner().invoke(cli, ["train-gan", "--data", str(sample_root), "--config", str(cfg), "--cond", "status",
                                 "--outdir", str(tmp_path / "runs"), "--no-progress"])
    assert r.exit_code == 0, r.output
    g = GeneratorBundle.load(tmp_path / "runs" / "00000-gan" / "generator.pt")
    assert g.class_names == ["noble", "warrior", "incarnation", "commoner"]
    assert g.generate([0], label="warrior").shape == (1, 3, 16, 16)


def test_a_run_started_with_a_relative_data_path_resumes_from_anywhere(tmp_path, monkeypatch):
    """The run records its data as an absolute path; --data on resume points a moved data set."""
    data = tmp_path / "work" / "faces"
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), np.uint8)).save(data / f"{i}.png")
    cfg = tmp_path / "c.toml"
    cfg.write_text("batch = 4\nkimg = 0.004\nsnapshot_kimg = 0.004\n[net]\nresolution = 16\nz_dim = 16\nw_dim = 16\n"
                   "mapping_layers = 1\nchannel_base = 128\nchannel_max = 16\n")
    monkeypatch.chdir(tmp_path / "work")
    r = CliRunner().invoke(cli, ["train-gan", "--data", "faces", "--config", str(cfg), "--outdir", str(tmp_path / "runs"),
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    run = tmp_path / "runs" / "00000-gan"
    assert json.loads((run / "config.json").read_text())["data"] == str(data.resolve())
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["train-gan", "--resume", str(run), "--kimg", "0.008", "--no-progress"])
    assert r.exit_code == 0 and "resuming" in r.output, r.output
    moved = data.rename(tmp_path / "moved")
    r = CliRunner().invoke(cli, ["train-gan", "--resume", str(run), "--kimg", "0.012", "--no-progress"])
    assert r.exit_code == 1 and r.output.startswith("Error:") and "faces" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(cli, ["train-gan", "--resume", str(run), "--data", str(moved), "--kimg", "0.012",
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    assert json.loads((run / "config.json").read_text())["data"] == str(moved.resolve())


def test_fid_kid_precision_recall_on_known_gaussians():
    from kaogen.gan.metrics import fid, kid, precision_recall

    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 8, generator=g, dtype=torch.float64)
    b = torch.randn(4000, 8, generator=g, dtype=torch.float64)
    shift = torch.zeros(8, dtype=torch.float64)
    shift[0] = 2.0
    assert fid(a, b) < 0.05                                  # same distribution
    assert fid(a, b + shift) == pytest.approx(4.0, abs=0.15)   # |mu1 - mu2|^2 with equal covariances
    assert fid(a, b * 2) == pytest.approx(8 * (1 + 4 - 2 * 2), abs=0.4)   # tr(S1 + S2 - 2 sqrt(S1 S2))
    assert abs(kid(a, b, subsets=10, subset_size=500)) < 0.02 < kid(a, b + shift, subsets=10, subset_size=500)
    p, r = precision_recall(a[:1000], b[:1000])
    assert p > 0.8 and r > 0.8
    p, r = precision_recall(a[:1000], b[:1000] + 50)
    assert p == 0 and r == 0


def test_metrics_with_a_stand_in_extractor_and_missing_weights(tmp_path, monkeypatch):
    from kaogen.gan.metrics import InceptionFeatures, features, fid

    proj = torch.randn(3 * 16 * 16, 32, generator=torch.Generator().manual_seed(0))
    stand_in = lambda x: x.flatten(1) @ proj  # noqa: E731
    data = known_data(64).float() / 255
    torch.manual_seed(0)
    g = GeneratorBundle(Generator(NetworkConfig(**TINY)))
    f_real, f_same = features(stand_in, data[:32]), features(stand_in, data[32:])
    f_fake = features(stand_in, g.generate(list(range(32))))
    assert fid(f_real, f_same) < fid(f_real, f_fake)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(KaogenError, match="pt_inception"):
        InceptionFeatures()
    ck = g.save(tmp_path / "g.pt")
    r = CliRunner().invoke(cli, ["metrics", "--checkpoint", str(ck), "--data", str(tmp_path)])
    assert r.exit_code == 1 and "pt_inception-2015-12-05-6726825d.pth" in r.output


def test_projection_finds_a_generated_face(tmp_path):
    from kaogen.gan.project import project

    torch.manual_seed(0)
    g = GeneratorBundle(Generator(NetworkConfig(**TINY)))
    target = g.generate([5])[0]
    start = ((g.synthesize(g.G.mapping.w_avg[None, None].expand(1, g.G.num_ws, -1)) - target) ** 2).mean()
    ws, result, frames, name = project(g, target, steps=80, space="w+", loss="offline", video_every=20, lr=0.1)
    assert ws.shape == (g.G.num_ws, 32) and result.shape == (3, 16, 16) and len(frames) == 4 and name == "offline"
    assert ((result - target) ** 2).mean() < 0.5 * start


def test_inception_features_load_a_local_weights_file(tmp_path):
    """The standard FID network is built by pytorch-fid and filled from a local file, never downloaded
    (here a file of random weights with the right layout)."""
    pytest.importorskip("pytorch_fid")
    import unittest.mock

    import pytorch_fid.inception as I

    from kaogen.gan.metrics import InceptionFeatures

    with unittest.mock.patch.object(torch.nn.Module, "load_state_dict", lambda self, sd, *a, **k: None), \
            unittest.mock.patch("pytorch_fid.inception.load_state_dict_from_url", lambda *a, **k: {}):
        net = I.fid_inception_v3()
    torch.save(net.state_dict(), tmp_path / "inception.pth")
    ext = InceptionFeatures(str(tmp_path / "inception.pth"))
    assert ext(torch.rand(2, 3, 64, 64)).shape == (2, 2048)


def test_fast_modulated_conv_equals_the_grouped_one():
    torch.manual_seed(0)
    for up, demod, k in ((False, True, 3), (True, True, 3), (False, False, 1)):
        conv = ModulatedConv(8, 6, 16, k=k, demod=demod, up=up)
        x, w = torch.randn(3, 8, 8, 8), torch.randn(3, 16)
        torch.testing.assert_close(conv(x, w), conv(x, w, fused=True), atol=1e-4, rtol=1e-4)


def test_torchrun_two_processes_train_in_step_and_resume(tmp_path):
    """Two CPU processes (gloo) under torchrun: split batch, averaged gradients, replicas checked equal,
    and a resume that keeps each rank's own random state."""
    from PIL import Image

    from conftest import torchrun as run_torchrun

    data = tmp_path / "imgs"
    data.mkdir()
    for i, im in enumerate(known_data(8)):
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(data / f"{i}.png")
    cfg = tmp_path / "c.toml"
    cfg.write_text("batch = 8\nkimg = 0.016\nsnapshot_kimg = 0.008\nada_kimg = 0.05\nada_interval = 1\n[net]\nresolution = 16\nz_dim = 16\nw_dim = 16\n"
                   "mapping_layers = 1\nchannel_base = 128\nchannel_max = 16\n")
    def torchrun(*args):
        return run_torchrun("train-gan", *args, cwd=tmp_path, timeout=240)

    r = torchrun("--data", str(data), "--config", str(cfg), "--outdir", str(tmp_path / "runs"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    run = tmp_path / "runs" / "00000-gan"
    assert json.loads((run / "config.json").read_text())["world"] == 2
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    # resumed under torchrun: each rank restores its own random state (not rank 0's on both), so
    # the ranks still draw different reals; ADA's statistics are summed over ranks, so p is the same
    # on both; the trainer checks replicas equal and batches distinct at every snapshot
    r = torchrun("--resume", str(run), "--kimg", "0.032")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["kimg"] for row in rows] == [0.008, 0.016, 0.024, 0.032]
    for row in rows:
        a, b = row["replica_batches"]
        assert len(a) == len(b) == 4 and a != b
        assert len(set(row["replica_p"])) == 1
    assert rows[-1]["augment_p"] > 0
    assert GeneratorBundle.load(run / "generator.pt").generate([0]).shape == (1, 3, 16, 16)


@pytest.mark.parametrize("device", DEVICES)
def test_train_resume_and_sample_on_a_device(tmp_path, device):
    """A short amp run on `device`, snapshotted and resumed there: the snapshot's states are CPU
    tensors (RNG states bytes), Adam's steps stay on the CPU after the resume, the weights on the
    device, and the generator it wrote samples on the device and on the CPU alike."""
    data = known_data(16)
    cfg = tiny_cfg(kimg=0.032, snapshot_kimg=0.016, amp=True, pl_every=2, r1_every=2)
    GANTrainer(cfg, RealSampler(data, None, 0, True), tmp_path, device, seed=4).train(progress=False)
    tr = GANTrainer(tiny_cfg(kimg=0.048, snapshot_kimg=0.016, amp=True, pl_every=2, r1_every=2),
                    RealSampler(data, None, 0, True), tmp_path, device, seed=4)
    assert tr.resume() and tr.nimg == 32
    assert all(st["step"].device.type == "cpu" for o in (tr.opt_G, tr.opt_D) for st in o.state.values())
    assert all(p.device.type == torch.device(device).type for p in tr.G.parameters())
    tr.train(progress=False)
    for dev in (device, "cpu"):
        imgs = GeneratorBundle.load(tmp_path / "generator.pt", dev).generate([0, 1])
        assert imgs.shape == (2, 3, 16, 16) and torch.isfinite(imgs).all()
