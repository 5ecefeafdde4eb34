"""Exhibition exports of a painting sequence, the format chosen by the output's suffix.

    .gif          one global palette for every frame (no flicker), delays >= 20 ms, last frame held
    .mp4          H.264 yuv420p with even sizes (plays in browsers and on phones), via imageio-ffmpeg
    .webp         animated WebP
    .png / .jpg   the finished canvas (or, with contact_sheet, a grid of stages)
    .svg          vector strokes (svg.py)
    no suffix     a folder of numbered PNG frames

Every write is atomic: a failed export leaves nothing behind.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from kaogen.atomic import _UMASK, atomic_path
from kaogen.errors import KaogenError
from kaogen.images import load_rgb, save_image, tensor_to_uint8
from kaogen.render.painting import Painting

ANIMATED = (".gif", ".mp4", ".webp")
STILL = (".png", ".jpg", ".jpeg")
SUFFIXES = ANIMATED + STILL + (".svg",)


@dataclass
class ExportOptions:
    size: int = 512                   # longer side of the output, px
    fps: float = 12.0                 # frames per second of animations
    strokes_per_frame: int | None = None  # None: about 60 frames in all
    hold: float = 2.0                 # seconds the finished painting stays on screen
    side_by_side: str | None = None   # an image shown left of every frame (the target)
    contact_sheet: bool = False       # still outputs: a grid of stages instead of the final canvas
    device: str | None = None


def frame_plan(n_strokes: int, strokes_per_frame: int | None, frames: int = 60) -> int:
    """Strokes per frame: as given, or so that the sequence has about `frames` frames."""
    if strokes_per_frame is not None:
        if strokes_per_frame < 1:
            raise KaogenError("--strokes-per-frame must be at least 1")
        return strokes_per_frame
    return max(1, math.ceil(n_strokes / frames))


FRAME_BATCH_BYTES = 64 << 20      # frames are copied to the host in batches of about this many bytes


def _uint8(canvas: torch.Tensor) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8 on the canvas' device (the rounding of tensor_to_uint8)."""
    return (canvas.permute(1, 2, 0).float() * 255.0 + 0.5).clamp_(0, 255).to(torch.uint8)


def _frames(painting: Painting, opts: ExportOptions) -> list[np.ndarray]:
    """uint8 (H, W', 3) frames: background, stages, final (with the side image when asked).

    Frames are converted to uint8 where they are painted and copied to the host in batches (one
    transfer per FRAME_BATCH_BYTES of frames), not one by one."""
    every = frame_plan(len(painting), opts.strokes_per_frame)
    H, W = painting.canvas_size(opts.size)
    side = None
    if opts.side_by_side:
        side = tensor_to_uint8(load_rgb(opts.side_by_side, size=(H, W)))
    out, batch = [], []

    def flush():
        if batch:
            out.extend(torch.stack(batch).cpu().numpy())
            batch.clear()

    for _, canvas in painting.stages(opts.size, every, device=opts.device):
        batch.append(_uint8(canvas))
        if len(batch) * batch[0].numel() >= FRAME_BATCH_BYTES:
            flush()
    flush()
    return [np.concatenate([side, a], axis=1) for a in out] if side is not None else out


def global_palette(frames: list[np.ndarray], colors: int = 256) -> Image.Image:
    """One palette for the whole animation, from the last frame and a sample of the others."""
    picks = [frames[-1]] + frames[:: max(1, len(frames) // 8)]
    montage = Image.fromarray(np.concatenate(picks, axis=0))
    return montage.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def write_gif(frames: list[np.ndarray], path: Path, fps: float, hold: float) -> None:
    """One global 256-colour palette (no flicker), every frame a whole picture in it, no transparency.

    Each frame after the first is stored as the rectangle that changed since the previous one, drawn
    over it (disposal 1, the encoder's own cropping); no pixel is transparent. Marking unchanged
    pixels with a transparent index compressed better, but decoders disagree on such frames
    (imageio's Pillow reader returned the first frame as RGB and the later ones as RGBA, so
    `imageio.v3.imread(gif, index=None)` failed), so every frame decodes to the same (H, W, 3)
    picture in imageio, Pillow, ffmpeg and browsers.
    """
    pal = global_palette(frames, colors=256)
    images = [Image.fromarray(f).quantize(palette=pal, dither=Image.Dither.NONE) for f in frames]
    delay = max(20, int(round(1000 / fps / 10)) * 10)            # GIF counts centiseconds; < 20 ms is clamped by browsers
    durations = [delay] * (len(images) - 1) + [max(delay, int(round(hold * 1000 / 10)) * 10)]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations,
                       loop=0, optimize=False, disposal=1, palette=pal.getpalette()[: 256 * 3])


def write_webp(frames: list[np.ndarray], path: Path, fps: float, hold: float) -> None:
    images = [Image.fromarray(f) for f in frames]
    delay = max(20, int(round(1000 / fps)))
    durations = [delay] * (len(images) - 1) + [max(delay, int(hold * 1000))]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="WEBP", save_all=True, append_images=images[1:], duration=durations,
                       loop=0, quality=90, method=4)


def write_mp4(frames: list[np.ndarray], path: Path, fps: float, hold: float) -> None:
    import imageio.v2 as imageio

    h, w = frames[0].shape[:2]
    ph, pw = h % 2, w % 2                                        # yuv420p needs even sizes: pad by one edge row/col
    hold_frames = max(0, int(round(hold * fps)))
    with atomic_path(path) as tmp:
        writer = imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=8,
                                    pixelformat="yuv420p", macro_block_size=1,
                                    ffmpeg_params=["-movflags", "+faststart"])
        try:
            for i, f in enumerate(frames + [frames[-1]] * hold_frames):
                writer.append_data(np.pad(f, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else f)
        finally:
            writer.close()


def write_video(canvases: list[torch.Tensor], out: str | Path, fps: float = 12.0, hold: float = 2.0) -> Path:
    """Canvases (3, H, W) in [0, 1] (e.g. an optimisation, step by step) as .gif, .mp4 or .webp."""
    out = Path(out)
    if not canvases:
        raise KaogenError("no frames to write")
    frames = [tensor_to_uint8(c) for c in canvases]
    writers = {".gif": write_gif, ".mp4": write_mp4, ".webp": write_webp}
    if out.suffix.lower() not in writers:
        raise KaogenError(f"a video is .gif, .mp4 or .webp, not {out.suffix!r}")
    writers[out.suffix.lower()](frames, out, fps, hold)
    return out


def contact_sheet(frames: list[np.ndarray], cells: int = 12, columns: int = 4, gap: int = 4) -> np.ndarray:
    """A grid of `cells` stages evenly spread over the sequence (first = blank, last = finished)."""
    idx = np.unique(np.linspace(0, len(frames) - 1, min(cells, len(frames))).round().astype(int))
    h, w = frames[0].shape[:2]
    rows = math.ceil(len(idx) / columns)
    sheet = np.full((rows * h + (rows + 1) * gap, columns * w + (columns + 1) * gap, 3), 255, np.uint8)
    for n, i in enumerate(idx):
        r, c = divmod(n, columns)
        sheet[gap + r * (h + gap):gap + r * (h + gap) + h, gap + c * (w + gap):gap + c * (w + gap) + w] = frames[i]
    return sheet


def write_folder(frames: list[np.ndarray], folder: Path) -> None:
    """Numbered PNG frames; the folder appears complete or not at all."""
    parent = folder.parent if str(folder.parent) else Path(".")
    if not parent.is_dir():
        raise KaogenError(f"cannot write {folder}: folder {parent} does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        for i, f in enumerate(frames):
            Image.fromarray(f).save(tmp / f"frame_{i:05d}.png")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def export(painting: Painting, out: str | Path, opts: ExportOptions | None = None) -> Path:
    """Write `painting` to `out`; the suffix picks the format (see module docstring)."""
    opts = opts or ExportOptions()
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix and suffix not in SUFFIXES:
        raise KaogenError(f"unknown output type {out.suffix!r} for {out}: use one of {', '.join(SUFFIXES)} or a folder")
    if opts.size < 8 or opts.size > 16384:
        raise KaogenError(f"--size must be between 8 and 16384, not {opts.size}")
    if opts.fps <= 0:
        raise KaogenError("--fps must be positive")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise KaogenError(f"cannot write {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise KaogenError(f"cannot write {out}: folder {parent} is not writable")
    if suffix == ".svg":
        from kaogen.render.svg import save_svg

        if painting.kind != "bezier":
            raise KaogenError(f"SVG export needs Bezier strokes; this painting's strokes are {painting.kind}")
        return save_svg(painting, out, opts.size)
    if suffix in STILL and not opts.contact_sheet:
        canvas = painting.render(opts.size, device=opts.device)
        a = tensor_to_uint8(canvas)
        if opts.side_by_side:
            H, W = a.shape[:2]
            a = np.concatenate([tensor_to_uint8(load_rgb(opts.side_by_side, size=(H, W))), a], axis=1)
        return save_image(out, a)
    with torch.no_grad():
        frames = _frames(painting, opts)
    if suffix in STILL:
        return save_image(out, contact_sheet(frames))
    if suffix == ".gif":
        write_gif(frames, out, opts.fps, opts.hold)
    elif suffix == ".mp4":
        write_mp4(frames, out, opts.fps, opts.hold)
    elif suffix == ".webp":
        write_webp(frames, out, opts.fps, opts.hold)
    else:
        write_folder(frames, out)
    return out
