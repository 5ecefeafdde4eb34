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


def _host(s: torch.Tensor) -> torch.Tensor:
    """The strokes as float64 on the CPU: one copy from wherever they are (none when already there)."""
    s = s.detach()
    return (s if s.device.type == "cpu" else s.to("cpu")).double()


def _hex(rgb) -> str:
    return "#" + "".join(f"{int(round(max(0.0, min(1.0, float(v))) * 255)):02x}" for v in rgb)


def _outline_points(s: torch.Tensor, H: int, W: int, samples: int):
    """Left and right offset curves (N, T, 2) px and the radius (N, T) px of strokes s (N, 13) float64,
    all strokes at once, on the strokes' device."""
    t = torch.linspace(0, 1, samples, dtype=s.dtype, device=s.device)[:, None]     # (T, 1)
    p0, p1, p2 = (S.to_pixels(p, H, W)[:, None] for p in S.points(s))              # (N, 1, 2)
    pts, r = S.spine(s, samples)                                                    # (N, T, 2), (N, T) canvas units
    pts, r = S.to_pixels(pts, H, W), r * min(H, W)
    tan = 2 * (1 - t) * (p1 - p0) + 2 * t * (p2 - p1)                               # (N, T, 2)
    chord = (p2 - p0).expand_as(tan)
    along_x = torch.stack([torch.ones_like(tan[..., 0]), torch.zeros_like(tan[..., 0])], -1)
    fallback = torch.where(chord.norm(dim=-1, keepdim=True) > 1e-9, chord, along_x)  # a dot: any direction
    tan = torch.where(tan.norm(dim=-1, keepdim=True) > 1e-9, tan, fallback)
    tan = tan / tan.norm(dim=-1, keepdim=True)
    normal = torch.stack([-tan[..., 1], tan[..., 0]], -1)
    return pts + normal * r[..., None], pts - normal * r[..., None], r


def _path(left, right, r) -> str:
    """SVG path data from one stroke's offset curves and radii (nested Python lists)."""
    f = lambda p: f"{p[0]:.2f},{p[1]:.2f}"  # noqa: E731
    d = [f"M{f(left[0])}"] + [f"L{f(p)}" for p in left[1:]]
    d.append(f"A{r[-1]:.2f},{r[-1]:.2f} 0 0 1 {f(right[-1])}")
    d += [f"L{f(p)}" for p in right[-2::-1]]
    d.append(f"A{r[0]:.2f},{r[0]:.2f} 0 0 1 {f(left[0])}Z")
    return "".join(d)


def stroke_outlines(s: torch.Tensor, H: int, W: int, samples: int = 24) -> list[str]:
    """SVG path data of every stroke's outline (s: (N, 13), any device: moved to the CPU once)."""
    s = S.check_strokes(_host(S.check_strokes(s, finite=False))).reshape(-1, S.NUM_FIELDS)
    left, right, r = _outline_points(s, H, W, samples)
    return [_path(a, b, c) for a, b, c in zip(left.tolist(), right.tolist(), r.tolist())]


def stroke_outline(s: torch.Tensor, H: int, W: int, samples: int = 24) -> str:
    """SVG path data of one stroke's outline (s: (13,))."""
    return stroke_outlines(s.reshape(1, -1), H, W, samples)[0]


def painting_to_svg(painting, size: int = 512) -> str:
    """The whole painting as an SVG document (background rectangle, then strokes in order).

    The strokes are copied to the CPU once (whatever their device) and read in one transfer."""
    H, W = painting.canvas_size(size)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">',
        f'<title>kaogen painting, {len(painting)} strokes</title>',
        f'<rect width="{W}" height="{H}" fill="{_hex(painting.background)}"/>',
    ]
    s = _host(painting.strokes)
    paths = stroke_outlines(s, H, W)                                # checks them (finite, 13 fields)
    for i, (row, d) in enumerate(zip(s.tolist(), paths)):
        color = _hex(row[S.INDEX["r"]:S.INDEX["b"] + 1])
        w0, w2 = row[S.INDEX["w0"]], row[S.INDEX["w2"]]
        x0, y0 = row[S.INDEX["x0"]] * W, row[S.INDEX["y0"]] * H
        x2, y2 = row[S.INDEX["x2"]] * W, row[S.INDEX["y2"]] * H
        if abs(w0 - w2) < 1e-3:
            fill = f'fill="{color}" fill-opacity="{w0:.3f}"'
        else:
            out.append(
                f'<linearGradient id="g{i}" gradientUnits="userSpaceOnUse" x1="{x0:.2f}" y1="{y0:.2f}" '
                f'x2="{x2:.2f}" y2="{y2:.2f}"><stop offset="0" stop-color="{color}" stop-opacity="{w0:.3f}"/>'
                f'<stop offset="1" stop-color="{color}" stop-opacity="{w2:.3f}"/></linearGradient>'
            )
            fill = f'fill="url(#g{i})"'
        out.append(f'<path d="{d}" {fill}/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def save_svg(painting, path: str | Path, size: int = 512) -> Path:
    atomic_write_text(path, painting_to_svg(painting, size))
    return Path(path)
