"""StyleGAN2 benchmarks. Prints a table.

    python benchmarks/gan.py [--quick] [--fewshot KIMG]

  parameters         G and D at the official `auto` 256 px size, unconditional and with 4 classes
                     (the official StyleGAN2-ADA: G 23,191,522, D 24,001,089, D 26,367,040)
  high frequencies   energy between half Nyquist and Nyquist (a ring, under a Hann window) of the 30
                     sample faces at 256 px after ADA 'bg' at p = 1, against the input: kaogen's
                     pipeline, and the previous one (5 kornia ops, one resample each, clamped; kept
                     below only for this comparison); and the same random turns and sub-pixel
                     shifts through kaogen's warp and through one bilinear resample at 1x
  smoke training     configs/gan/smoke.toml on synthetic 32 px images: seconds per kimg (CPU), ADA
                     p 0 and p 0.3
  few-shot ADA       (--fewshot KIMG > 0) configs/gan/smoke.toml on the 30 sample faces at 32 px,
                     ADA adapting fast (ada_kimg 2), the new pipeline against the previous one at the
                     same kimg: a copying check (PSNR of 256 samples to their nearest face) and a
                     Frechet distance of 8 x 8 colour thumbnails (192-d: a pixel statistic, not FID)
  sampling 256^2     channel base 8192, at most 256 channels: seconds per image, batch 1 (CPU)
  GPU training       (only with CUDA) the official `auto` size at 256^2, batch 32: seconds per kimg
  shipped generator  (when checkpoints/gan-kaokore.pt and ../shared/kaokore/samples exist) a copying
                     check: PSNR of 256 samples (truncation 1) to their nearest training face, beside
                     the PSNR of each training face to its nearest other one; a generator that copies
                     its 30 faces scores far above the second figure
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from common import machine_line, parse  # noqa: E402

from kaogen.config import load_config  # noqa: E402
from kaogen.gan.config import GANConfig, NetworkConfig  # noqa: E402
from kaogen.gan.data import RealSampler  # noqa: E402
from kaogen.gan.networks import Generator  # noqa: E402
from kaogen.gan.sample import GeneratorBundle  # noqa: E402
from kaogen.gan.train import GANTrainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def previous_pipeline(x: torch.Tensor, p: float) -> torch.Tensor:
    """kaogen 0.1's ADA (for comparison only): 5 kornia ops, each resampling once, clamped."""
    import kornia.augmentation as K

    if p <= 0:
        return x
    pipe = torch.nn.Sequential(
        K.RandomHorizontalFlip(p=p),
        K.RandomAffine(degrees=0, translate=(0.125, 0.125), p=p, padding_mode="reflection"),
        K.RandomAffine(degrees=0, scale=(2 ** -0.2, 2 ** 0.2), p=p, padding_mode="reflection"),
        K.RandomAffine(degrees=180, p=p, padding_mode="reflection"),
        K.RandomAffine(degrees=0, scale=(0.9, 1.1, 0.9, 1.1), p=p, padding_mode="reflection"))
    color = K.ColorJitter(brightness=0.2, contrast=0.5, saturation=1.0, hue=0.1, p=p)
    return color(pipe((x + 1) / 2).clamp(0, 1)) * 2 - 1


def high_band(x: torch.Tensor) -> float:
    """Energy between half Nyquist and Nyquist (a ring of the spectrum, kept by rotation), under a
    Hann window (edges, where shifts and turns bring in new content, do not count)."""
    H, W = x.shape[-2:]
    win = torch.hann_window(H, periodic=False)[:, None] * torch.hann_window(W, periodic=False)[None]
    spec = torch.fft.fft2((x - x.mean((2, 3), keepdim=True)) * win).abs().square()
    fy, fx = torch.fft.fftfreq(H), torch.fft.fftfreq(W)
    r = (fy[:, None] ** 2 + fx[None] ** 2).sqrt()
    return spec[..., (r > 0.25) & (r < 0.5)].sum().item()


def high_frequency_rows(samples: Path) -> list[tuple[str, str, str]]:
    import math

    import torch.nn.functional as F

    from kaogen.gan.ada import augment, geometric_matrix, sample_params
    from kaogen.images import list_images, load_rgb

    x = torch.stack([load_rgb(p, size=256) for p in list_images(samples)]) * 2 - 1
    B = len(x)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    new = sum(high_band(augment(x, 1.0, "bg", generator=g)) for _ in range(3)) / 3 / high_band(x)
    geo = lambda y: previous_pipeline(y, 1.0)                                   # noqa: E731
    old = sum(high_band(geo(x)) for _ in range(3)) / 3 / high_band(x)
    # the same turns and sub-pixel shifts through kaogen's warp and through one bilinear resample at 1x
    prm = sample_params(B, 0.0, "bgc")
    prm["rotate_pre"] = (torch.rand(B, generator=g) * 2 - 1) * math.pi
    prm["xfrac"] = torch.randn(B, 2, generator=g) * 0.125
    ours = high_band(augment(x, 1.0, "g", params=prm)) / high_band(x)
    G = geometric_matrix(prm, 256, 256)
    theta = torch.cat([G[:, :2, :2] * 0.5, G[:, :2, 2:] / 256], 2)              # on the image padded to 512 px
    plain = F.grid_sample(F.pad(x, (128,) * 4, mode="reflect"),
                          F.affine_grid(theta, [B, 3, 256, 256], align_corners=False), align_corners=False)
    one = high_band(plain) / high_band(x)
    return [("high-frequency energy kept, 'bg' p = 1, 30 faces 256^2", "cpu", f"kaogen {new:.3f}; previous pipeline {old:.3f}"),
            ("high-frequency energy kept, turns + sub-pixel shifts", "cpu", f"kaogen {ours:.3f}; one bilinear resample {one:.3f}")]


def thumbnails_fd(a: torch.Tensor, b: torch.Tensor) -> float:
    from kaogen.gan.metrics import fid

    t = lambda x: torch.nn.functional.adaptive_avg_pool2d(x.float(), 8).flatten(1).double()   # noqa: E731
    return fid(t(a), t(b))


def fewshot_rows(samples: Path, kimg: float) -> list[tuple[str, str, str]]:
    """New ADA against the previous pipeline, same config, data, seed and kimg."""
    import kaogen.gan.augment as aug_mod
    from kaogen.images import list_images, load_rgb

    reals = torch.stack([load_rgb(p, size=32) for p in list_images(samples)])
    u8 = (reals * 255).round().to(torch.uint8)
    rows = []
    for name in ("kaogen ADA (bgc)", "previous pipeline"):
        cfg = load_config(GANConfig, ROOT / "configs" / "gan" / "smoke.toml", kimg=kimg, snapshot_kimg=kimg, ada_kimg=2.0)
        saved = aug_mod.augment
        if name != "kaogen ADA (bgc)":
            aug_mod.augment = lambda x, p, ops="bgc": previous_pipeline(x, p)     # noqa: E731
        try:
            with tempfile.TemporaryDirectory() as tmp:
                tr = GANTrainer(cfg, RealSampler(u8, None, 0, True), Path(tmp), "cpu", seed=0)
                t = time.perf_counter()
                tr.train(progress=False)
                dt = time.perf_counter() - t
                fakes = tr.bundle().generate(list(range(256)))
        finally:
            aug_mod.augment = saved
        d = torch.cdist(fakes.flatten(1).double(), reals.flatten(1).double()) ** 2 / reals[0].numel()
        psnr_nn = float((-10 * torch.log10(d.min(1).values)).mean())
        rows.append((f"few-shot 32^2, {kimg:g} kimg: {name}", "cpu",
                     f"p {tr.augment.p:.2f}; nearest-face PSNR {psnr_nn:.2f} dB; thumbnail FD {thumbnails_fd(reals, fakes):.4f}; "
                     f"{dt / kimg:.0f} s/kimg"))
    dr = torch.cdist(reals.flatten(1).double(), reals.flatten(1).double()) ** 2 / reals[0].numel()
    dr.fill_diagonal_(float("inf"))
    rows.append(("few-shot: the 30 faces to each other", "cpu", f"nearest-face PSNR {float((-10 * torch.log10(dr.min(1).values)).mean()):.2f} dB"))
    return rows


def seconds_per_kimg(cfg: GANConfig, device: str, kimg: float, p: float = 0.0) -> float:
    R = cfg.net.resolution
    images = (torch.rand(64, 3, R, R) * 255).to(torch.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        tr = GANTrainer(cfg, RealSampler(images, None, 0, True), Path(tmp), device)
        tr.augment.p = p
        for _ in range(max(2, cfg.r1_every // 4)):            # warm-up (first lazy regularisation steps included)
            tr.train_step()
        if device == "cuda":
            torch.cuda.synchronize()
        n0, t = tr.nimg, time.perf_counter()
        while tr.nimg - n0 < kimg * 1000:
            tr.train_step()
        if device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t) / ((tr.nimg - n0) / 1000)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--fewshot", type=float, default=0.0, help="kimg of the few-shot ADA comparison (0: skip)")
    args = parse(ap)
    print(machine_line(args) + "\n")
    rows = []
    from kaogen.gan.networks import Discriminator

    count = lambda m: f"{sum(p.numel() for p in m.parameters()):,}"   # noqa: E731
    auto = NetworkConfig(resolution=256, mapping_layers=2)
    rows.append(("parameters, official auto 256^2", "-", f"G {count(Generator(auto))}, D {count(Discriminator(auto))}, "
                 f"D with 4 classes {count(Discriminator(NetworkConfig(resolution=256, mapping_layers=2, num_classes=4)))}"))
    samples = ROOT.parent / "shared" / "kaokore" / "samples"
    if samples.is_dir():
        rows += high_frequency_rows(samples)
    smoke = load_config(GANConfig, ROOT / "configs" / "gan" / "smoke.toml")
    for p in (0.0, 0.3):
        rows.append((f"smoke training (configs/gan/smoke.toml), ADA p {p}", "cpu",
                     f"{seconds_per_kimg(smoke, 'cpu', 0.25 if args.quick else 1.0, p):.1f} s/kimg"))
    G = Generator(NetworkConfig(resolution=256, channel_base=8192, channel_max=256)).eval()
    g = GeneratorBundle(G)
    g.generate([0])
    best = float("inf")
    for s in range(1, 4):
        t = time.perf_counter()
        g.generate([s])
        best = min(best, time.perf_counter() - t)
    rows.append(("sample 256^2 (base 8192, max 256 ch)", "cpu", f"{best:.2f} s/image"))
    if torch.cuda.is_available():
        auto = load_config(GANConfig, ROOT / "configs" / "gan" / "auto256.toml")
        rows.append(("training 256^2, auto size, batch 32", torch.cuda.get_device_name(),
                     f"{seconds_per_kimg(auto, 'cuda', 2.0 if args.quick else 8.0):.1f} s/kimg"))
    rows += copying_check()
    if args.fewshot > 0 and samples.is_dir():
        rows += fewshot_rows(samples, args.fewshot)
    print("| what | device | result |\n| --- | --- | --- |")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def copying_check() -> list[tuple[str, str, str]]:
    from kaogen.checkpoint import checkpoints_dir
    from kaogen.gan.sample import SHIPPED
    from kaogen.images import list_images, load_rgb

    samples = ROOT.parent / "shared" / "kaokore" / "samples"
    if not (checkpoints_dir() / SHIPPED).is_file() or not samples.is_dir():
        return []
    g = GeneratorBundle.load()
    R = g.G.cfg.resolution
    reals = torch.stack([load_rgb(p, size=R) for p in list_images(samples)]).flatten(1)          # (30, 3 R R)
    fakes = g.generate(list(range(256))).float().flatten(1)
    d = torch.cdist(fakes.double(), reals.double()) ** 2 / reals.shape[1]                        # MSE
    dr = torch.cdist(reals.double(), reals.double()) ** 2 / reals.shape[1]
    dr.fill_diagonal_(float("inf"))
    to_db = lambda mse: float((-10 * torch.log10(mse)).mean())  # noqa: E731
    return [(f"shipped generator {R}^2: nearest training face", "cpu",
             f"samples {to_db(d.min(1).values):.2f} dB PSNR; training faces to each other {to_db(dr.min(1).values):.2f} dB")]


if __name__ == "__main__":
    main()
