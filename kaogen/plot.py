"""Loss curves as PNG (Pillow only): what a person glances at while a model trains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from kaogen.images import save_image

COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]


def line_plot(series: dict[str, list[tuple[float, float]]], path: str | Path, size=(640, 200 )) -> Path:
    """One panel per series (x, y), each scaled to its own range, stacked vertically."""
    W, h = size
    names = [n for n, pts in series.items() if pts]
    img = Image.new("RGB", (W, max(1, len(names)) * h), (255, 255, 255))
    d = ImageDraw.Draw(img)
    for i, name in enumerate(names):
        pts = np.asarray(series[name], dtype=np.float64)
        pts = pts[np.isfinite(pts).all(1)]
        top = i * h
        d.rectangle([40, top + 20, W - 10, top + h - 20], outline=(200, 200, 200))
        if len(pts) == 0:
            continue
        x0, x1 = pts[:, 0].min(), max(pts[:, 0].max(), pts[:, 0].min() + 1e-9)
        y0, y1 = pts[:, 1].min(), max(pts[:, 1].max(), pts[:, 1].min() + 1e-9)
        px = 40 + (pts[:, 0] - x0) / (x1 - x0) * (W - 50)
        py = top + h - 20 - (pts[:, 1] - y0) / (y1 - y0) * (h - 40)
        d.line(list(zip(px.tolist(), py.tolist())), fill=COLORS[i % len(COLORS)], width=2)
        d.text((44, top + 4), f"{name}: last {pts[-1, 1]:.4g}  [{y0:.4g}, {y1:.4g}]", fill=(0, 0, 0))
    return save_image(path, np.asarray(img))
