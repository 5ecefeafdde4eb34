"""Intrinsic style transfer benchmarks: painter fidelity, painting likeness and time. Prints tables.

    python benchmarks/ist.py [--painter checkpoints/painter-classic-kabura.pt] [--faces 6] [--steps 150]

Fidelity: 500 actions never seen in training (seed 999), drawn by libmypaint and by the painter:
alpha MAE, PSNR of the stroke (black on white), and IoU of the painted area (alpha > 0.1).
Likeness: faces of ../shared/kaokore/samples (every 5th first) painted at 256^2 with 98 / 196 / 294
strokes (2 / 4 / 6 per block) with the offline loss: PSNR and SSIM of the painting (rendered at 256^2)
to the face, seconds per face; the 8 x 8 mosaic as the baseline.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import machine_line, parse  # noqa: E402

from kaogen.images import list_images, load_rgb  # noqa: E402
from kaogen.ist import actions as A  # noqa: E402
from kaogen.ist.painter import NeuralPainter, shipped_painter  # noqa: E402
from kaogen.ist.transfer import ISTOptions, transfer  # noqa: E402
from kaogen.metrics import mosaic, psnr, ssim  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "kaokore" / "samples"


def fidelity(painter: NeuralPainter, n: int = 500) -> str:
    from kaogen.ist.mypaint import MyPaint
    from kaogen.ist.strokes import draw_alpha

    try:
        brush = MyPaint.load().brush(painter.brush)
    except Exception as e:  # noqa: BLE001
        return f"(no fidelity: {e})"
    acts = A.random_actions(n, np.random.default_rng(999))
    real = torch.from_numpy(np.stack([draw_alpha(brush, a) for a in acts]))
    real = (real * 255).round() / 255                                  # as stored in the training shards
    with torch.no_grad():
        pred = painter(torch.from_numpy(acts[:, :9]), torch.randn(n, painter.gen.noise, generator=torch.Generator().manual_seed(0)))
    mse = ((pred - real) ** 2).flatten(1).mean(1)
    inter = ((pred > 0.1) & (real > 0.1)).flatten(1).sum(1).float()
    union = ((pred > 0.1) | (real > 0.1)).flatten(1).sum(1).float().clamp(min=1)
    return (f"| {painter.brush} | {n} | {(pred - real).abs().mean():.4f} | {(-10 * torch.log10(mse.clamp(min=1e-10))).mean():.2f} dB | "
            f"{(inter / union).mean():.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--painter", default=None)
    ap.add_argument("--faces", type=int, default=6)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--strokes", default="98,196,294")
    args = parse(ap)
    print(machine_line(args))
    painter = NeuralPainter.load(args.painter) if args.painter else shipped_painter("classic/kabura")
    print(f"painter: {painter.source}\n")
    print("| brush | held-out actions | alpha MAE | stroke PSNR | IoU (alpha > 0.1) |\n| --- | --- | --- | --- | --- |")
    print(fidelity(painter))
    if not SAMPLES.is_dir():
        sys.exit("../shared/kaokore/samples is absent: no likeness table")
    paths = list_images(SAMPLES)
    order = list(range(4, len(paths), 5)) + [i for i in range(len(paths)) if i % 5 != 4]
    faces = [load_rgb(paths[i], size=256) for i in order[: args.faces]]
    print(f"\n{len(faces)} faces, 256^2, {args.steps} steps, offline loss\n")
    print("| strokes | PSNR | SSIM | seconds per face |\n| --- | --- | --- | --- |")
    for n in [int(x) for x in args.strokes.split(",")]:
        ps, ss, ts = [], [], []
        for face in faces:
            t = time.perf_counter()
            p, _ = transfer(painter, face, ISTOptions(strokes=n, steps=args.steps, loss="offline"))
            ts.append(time.perf_counter() - t)
            c = p.render(256)[None]
            ps.append(psnr(c, face[None]).item())
            ss.append(ssim(c, face[None]).item())
        print(f"| {len(p)} | {np.mean(ps):.2f} dB | {np.mean(ss):.3f} | {np.mean(ts):.1f} s |")
    x = torch.stack(faces)
    m = mosaic(x, 8)
    print(f"| 8 x 8 mosaic | {psnr(m, x).mean():.2f} dB | {ssim(m, x).mean():.3f} | - |")


if __name__ == "__main__":
    main()
