"""Learning to Paint benchmarks: quality on real KaoKore faces and painting speed. Prints tables.

    python benchmarks/l2p.py [--checkpoint checkpoints/l2p-agent.pt] [--plan 10] [--refine 100] [--quick]

Quality: the 30 faces of ../shared/kaokore/samples at 128^2, PSNR and SSIM of the painting (rendered
by the exact rasteriser at 128^2) against the face, at 50 / 100 / 200 / 400 strokes, for the held-out
faces (every 5th, never seen in training by the shipped agent) and for all 30; 200 strokes with
--plan; then with --refine (and with --refine --keep-layout); the 16 x 16 mosaic as the baseline.
Speed: seconds per image beyond start-up (agent loaded, one warm-up painting), GIF included:
128^2 with 200 strokes, without and with --plan; --divide 4 at 512^2; and images/s batched at 128^2 (on CUDA when present).
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

from kaogen.images import list_images, load_rgb  # noqa: E402
from kaogen.l2p import Agent, PaintOptions, paint  # noqa: E402
from kaogen.metrics import mosaic, psnr, ssim  # noqa: E402
from kaogen.render.export import ExportOptions, export  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "kaokore" / "samples"


def quality(agent: Agent, faces: torch.Tensor, opts: PaintOptions, size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    paintings = paint(agent, list(faces), opts)
    canvases = torch.stack([p.render(size) for p in paintings])
    return psnr(canvases, faces), ssim(canvases, faces)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--refine", type=int, default=100)
    ap.add_argument("--plan", type=int, default=10, help="the --plan rows' gradient steps per action")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--speed-only", action="store_true", help="skip the quality table")
    args = parse(ap)
    print(machine_line(args))
    agent = Agent.load(args.checkpoint)
    print(f"agent: {agent.source} (observes {agent.cfg.canvas} px, {agent.cfg.steps} x {agent.cfg.strokes_per_action} strokes)")
    if not SAMPLES.is_dir():
        sys.exit("../shared/kaokore/samples is absent: no quality table")
    paths = list_images(SAMPLES)
    if not args.speed_only:
        quality_table(agent, paths, args)
    speed_table(agent, paths, args)


def quality_table(agent: Agent, paths: list[Path], args) -> None:
    faces = torch.stack([load_rgb(p, size=128) for p in paths])
    held = torch.zeros(len(faces), dtype=torch.bool)
    held[4::5] = True
    K = agent.cfg.strokes_per_action
    print("\n| strokes | plan / refine | PSNR held-out | PSNR all 30 | SSIM held-out | SSIM all 30 |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows = [(n, 0) for n in ((200,) if args.quick else (50, 100, 200, 400))] + [(200, args.refine)]
    for n, refine in rows:
        if refine:      # refinement is slow on a CPU: the held-out faces only
            for relocate in (True, False):
                t0 = time.perf_counter()
                p, s = quality(agent, faces[held], PaintOptions(steps=n // K, refine=refine, refine_relocate=relocate))
                sec = (time.perf_counter() - t0) / int(held.sum())
                what = f"--refine {refine} ({sec:.0f} s/face)" + ("" if relocate else ", --keep-layout")
                print(f"| {n} | {what} | {p.mean():.2f} dB | - | {s.mean():.3f} | - |")
            continue
        p, s = quality(agent, faces, PaintOptions(steps=n // K))
        print(f"| {n} | - | {p[held].mean():.2f} dB | {p.mean():.2f} dB | {s[held].mean():.3f} | {s.mean():.3f} |")
        if n == 200 and args.plan:
            p, s = quality(agent, faces, PaintOptions(steps=n // K, plan=args.plan))
            print(f"| {n} | --plan {args.plan} | {p[held].mean():.2f} dB | {p.mean():.2f} dB | {s[held].mean():.3f} | "
                  f"{s.mean():.3f} |")
    m = mosaic(faces, 16)
    print(f"| 16 x 16 mosaic | - | {psnr(m, faces)[held].mean():.2f} dB | {psnr(m, faces).mean():.2f} dB | "
          f"{ssim(m, faces)[held].mean():.3f} | {ssim(m, faces).mean():.3f} |")


def speed_table(agent: Agent, paths: list[Path], args) -> None:
    print("\n| speed | setting | seconds per image |")
    print("| --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        img = load_rgb(paths[0])
        for label, opts, size in (("128^2, 200 strokes, GIF", PaintOptions(), 128),
                                  (f"128^2, 200 strokes, --plan {args.plan}, GIF", PaintOptions(plan=args.plan), 128),
                                  ("512^2, --divide 4, GIF", PaintOptions(divide=4), 512)):
            def job():
                p = paint(agent, [img], opts)[0]
                export(p, Path(tmp) / "out.gif", ExportOptions(size=size))
            job()
            best = float("inf")
            for _ in range(1 if args.quick else 3):
                t = time.perf_counter()
                job()
                best = min(best, time.perf_counter() - t)
            print(f"| paint + export | {label} | {best:.2f} s |")
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        a = Agent.load(args.checkpoint, device=dev)
        batch = [img.to(dev)] * (256 if dev == "cuda" else 16)
        paint(a, batch[:2], PaintOptions())
        if dev == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        paint(a, batch, PaintOptions())
        if dev == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        print(f"| batched paintings ({dev}) | 128^2, 200 strokes, batch {len(batch)}, no export | "
              f"{dt / len(batch):.3f} s ({len(batch) / dt:.1f} images/s) |")


if __name__ == "__main__":
    main()
