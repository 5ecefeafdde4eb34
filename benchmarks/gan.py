"""StyleGAN2 benchmarks. Prints a table.

    python benchmarks/gan.py [--quick]

  smoke training     configs/gan/smoke.toml on synthetic 32 px images: seconds per kimg (CPU)
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


def seconds_per_kimg(cfg: GANConfig, device: str, kimg: float) -> float:
    R = cfg.net.resolution
    images = (torch.rand(64, 3, R, R) * 255).to(torch.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        tr = GANTrainer(cfg, RealSampler(images, None, 0, True), Path(tmp), device)
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
    args = parse(ap)
    print(machine_line(args) + "\n")
    rows = []
    smoke = load_config(GANConfig, ROOT / "configs" / "gan" / "smoke.toml")
    rows.append(("smoke training (configs/gan/smoke.toml)", "cpu", f"{seconds_per_kimg(smoke, 'cpu', 0.25 if args.quick else 1.0):.1f} s/kimg"))
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
        auto = GANConfig(net=NetworkConfig(resolution=256, channel_base=16384, channel_max=512, mapping_layers=2),
                         batch=32, r1_gamma=0.8192)
        rows.append(("training 256^2, auto size, batch 32", torch.cuda.get_device_name(),
                     f"{seconds_per_kimg(auto, 'cuda', 2.0 if args.quick else 8.0):.1f} s/kimg"))
    rows += copying_check()
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
