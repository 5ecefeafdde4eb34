"""Renderer benchmarks: prints a table. `python benchmarks/render.py [--quick]`.

Rows:
  exact rasteriser   strokes/s at 128^2 and 1024^2, batch 1 / 64 / 512 (random strokes drawn as the
                     Learning to Paint renderer's training data: radius and opacity uniform), the
                     tile-culled default and the plain windowed path beside it
  soft rasteriser    forward + backward, 64 strokes at 128^2
  painting render    200-stroke painting (`kaogen demo`'s) re-rendered at 1024^2, final canvas
  export             200-stroke painting as GIF and MP4 at 256^2 and 1024^2: seconds and bytes
  gif quality        60-frame 256^2 GIF: size, PSNR of its last frame against the PNG
  host syncs         calls that would wait for a GPU or copy to it (tests/sync_counter.py) in a
                     200-stroke export: a fixed few per painting, none per stroke
Every figure is measured on this run's machine (printed first); CUDA rows only when a GPU is present.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import machine_line, parse  # noqa: E402
from PIL import Image  # noqa: E402

from kaogen.render import ExportOptions, Painting, export, rasterize, soft_rasterize  # noqa: E402
from kaogen.render.demo import demo_painting  # noqa: E402
from kaogen.render.export import frame_plan  # noqa: E402
from kaogen.render.strokes import random_strokes  # noqa: E402


def timed(fn, min_seconds: float = 1.0, sync=lambda: None) -> float:
    """Seconds per call: best of repeated calls within `min_seconds` (after one warm-up)."""
    fn()
    sync()
    best, start = float("inf"), time.perf_counter()
    while True:
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
        if time.perf_counter() - start > min_seconds:
            return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter timings")
    args = parse(ap)
    secs = 0.3 if args.quick else 1.0
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(machine_line(args))
    rows = []
    g = torch.Generator().manual_seed(0)
    for dev in devices:
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
        for res in (128, 1024):
            for batch in (1, 64, 512):
                if dev == "cpu" and res == 1024 and batch == 512 and args.quick:
                    continue
                s = random_strokes(batch, g).to(dev)
                t = timed(lambda: rasterize(s, res), secs, sync)
                tp = timed(lambda: rasterize(s, res, tiled=False), secs, sync)
                rows.append((f"exact rasteriser {res}^2", dev, f"batch {batch}",
                             f"{batch / t:,.0f} strokes/s (plain windowed path: {batch / tp:,.0f})"))
        s = random_strokes(64, g).to(dev).requires_grad_(True)

        def fwd_bwd():
            soft_rasterize(s, 128).sum().backward()

        t = timed(fwd_bwd, secs, sync)
        rows.append(("soft rasteriser 128^2", dev, "64 strokes fwd+bwd", f"{t * 1000:,.1f} ms"))
        p = demo_painting(200, seed=0)
        t = timed(lambda: p.render(1024, device=dev), secs, sync)
        rows.append(("painting render 1024^2", dev, "200 strokes (demo)", f"{t:.2f} s"))
        rnd = Painting(random_strokes(200, g))
        t = timed(lambda: rnd.render(1024, device=dev), secs, sync)
        rows.append(("painting render 1024^2", dev, "200 random strokes", f"{t:.2f} s"))

    p = demo_painting(200, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        for size in (256, 1024):
            for suffix in (".gif", ".mp4"):
                out = Path(tmp) / f"p{size}{suffix}"
                t0 = time.perf_counter()
                export(p, out, ExportOptions(size=size))
                dt = time.perf_counter() - t0
                frames = -(-len(p) // frame_plan(len(p), None)) + 1
                rows.append((f"export {suffix[1:]} {size}^2", "cpu", f"{len(p)} strokes, {frames} frames",
                             f"{dt:.2f} s, {out.stat().st_size / 1024:,.0f} KB"))
                out.unlink()
        gif, png = Path(tmp) / "q.gif", Path(tmp) / "q.png"
        p60 = demo_painting(236, seed=0)                                 # 59 stages of 4 strokes + the held last frame
        export(p60, gif, ExportOptions(size=256, strokes_per_frame=4))
        export(p60, png, ExportOptions(size=256))
        with Image.open(gif) as im:
            n = im.n_frames
            im.seek(n - 1)
            last = np.asarray(im.convert("RGB"), dtype=np.float64)
        ref = np.asarray(Image.open(png).convert("RGB"), dtype=np.float64)
        psnr = 10 * np.log10(255 ** 2 / max(np.mean((last - ref) ** 2), 1e-12))
        rows.append(("gif quality 256^2", "cpu", f"{len(p60)} strokes, {n} frames", f"{gif.stat().st_size / 1024:,.0f} KB, "
                     f"last frame {psnr:.1f} dB PSNR vs PNG"))

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from sync_counter import SyncCounter

    with tempfile.TemporaryDirectory() as tmp:
        for suffix in (".gif", ".png", ".svg"):
            with SyncCounter() as c:
                export(p, Path(tmp) / f"s{suffix}", ExportOptions(size=256))
            rows.append((f"host syncs, export {suffix[1:]}", "cpu", f"{len(p)} strokes",
                         f"{c.counts['sync']} syncs, {c.counts['h2d']} host-to-device copies"))

    w = [max(len(r[i]) for r in rows) for i in range(4)]
    print(" | ".join(h.ljust(w[i]) for i, h in enumerate(("what", "device", "setting", "result"))))
    print("-+-".join("-" * x for x in w))
    for r in rows:
        print(" | ".join(c.ljust(w[i]) for i, c in enumerate(r)))


if __name__ == "__main__":
    main()
