"""SVG export: one closed path per Bézier stroke, tapered, with its colour and opacity.

SVG strokes have one width, so each stroke is written as its filled outline instead: the centre
curve offset on both sides by r(t) at `samples` points, joined by round caps (arcs). The opacity
ramp w0 -> w2 becomes a linear gradient of `stop-opacity` from the start to the end point, which
is as close to the raster model as SVG allows. Coordinates are in pixels of a `size`-px canvas.
"""

from __future__ import annotations

from pathlib import Path

import torch

from kaogen.atomic import atomic_write_text
from kaogen.render import strokes as S


def _hex(rgb) -> str:
    return "#" + "".join(f"{int(round(max(0.0, min(1.0, float(v))) * 255)):02x}" for v in rgb)


def stroke_outline(s: torch.Tensor, H: int, W: int, samples: int = 24) -> str:
    """SVG path data of one stroke's outline (s: (13,))."""
    t = torch.linspace(0, 1, samples, dtype=torch.float64)
    s = s.double()
    scale = torch.tensor([W, H], dtype=torch.float64)
    p0, p1, p2 = (p * scale for p in S.points(s))
    pts, r = S.spine(s, samples)                                    # (T, 2), (T,) canvas units
    pts, r = pts * scale, r * min(H, W)
    tan = 2 * (1 - t)[:, None] * (p1 - p0) + 2 * t[:, None] * (p2 - p1)
    chord = p2 - p0
    fallback = chord if float(chord.norm()) > 1e-9 else torch.tensor([1.0, 0.0], dtype=torch.float64)
    tan = torch.where(tan.norm(dim=1, keepdim=True) > 1e-9, tan, fallback)
    tan = tan / tan.norm(dim=1, keepdim=True)
    normal = torch.stack([-tan[:, 1], tan[:, 0]], 1)
    left = pts + normal * r[:, None]
    right = pts - normal * r[:, None]
    f = lambda p: f"{float(p[0]):.2f},{float(p[1]):.2f}"  # noqa: E731
    d = [f"M{f(left[0])}"] + [f"L{f(p)}" for p in left[1:]]
    d.append(f"A{float(r[-1]):.2f},{float(r[-1]):.2f} 0 0 1 {f(right[-1])}")
    d += [f"L{f(p)}" for p in right.flip(0)[1:]]
    d.append(f"A{float(r[0]):.2f},{float(r[0]):.2f} 0 0 1 {f(left[0])}Z")
    return "".join(d)


def painting_to_svg(painting, size: int = 512) -> str:
    """The whole painting as an SVG document (background rectangle, then strokes in order)."""
    H, W = painting.canvas_size(size)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">',
        f'<title>kaogen painting, {len(painting)} strokes</title>',
        f'<rect width="{W}" height="{H}" fill="{_hex(painting.background)}"/>',
    ]
    for i, s in enumerate(painting.strokes):
        color = _hex(S.color(s).tolist())
        w0, w2 = (float(v) for v in S.opacity(s))
        p0, _, p2 = S.points(s)
        x0, y0, x2, y2 = float(p0[0]) * W, float(p0[1]) * H, float(p2[0]) * W, float(p2[1]) * H
        if abs(w0 - w2) < 1e-3:
            fill = f'fill="{color}" fill-opacity="{w0:.3f}"'
        else:
            out.append(
                f'<linearGradient id="g{i}" gradientUnits="userSpaceOnUse" x1="{x0:.2f}" y1="{y0:.2f}" '
                f'x2="{x2:.2f}" y2="{y2:.2f}"><stop offset="0" stop-color="{color}" stop-opacity="{w0:.3f}"/>'
                f'<stop offset="1" stop-color="{color}" stop-opacity="{w2:.3f}"/></linearGradient>'
            )
            fill = f'fill="url(#g{i})"'
        out.append(f'<path d="{stroke_outline(s, H, W)}" {fill}/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def save_svg(painting, path: str | Path, size: int = 512) -> Path:
    atomic_write_text(path, painting_to_svg(painting, size))
    return Path(path)
