"""Offline demo material: a procedural picture to paint, and a procedural painting.

`demo_picture` draws a face in the manner of the KaoKore scrolls (paper ground, white face in
three-quarter view, black hair and eboshi cap, ink-line eyes, red lips) from ellipses, so that
`kaogen demo` can show the painting agents on a picture that needs no data and no download.
`demo_painting` is a stroke sequence made without any model (coarse strokes first, fine ones last).
"""

from __future__ import annotations

import math

import torch

from kaogen.render import strokes as S
from kaogen.render.painting import Painting

PAPER = (0.93, 0.89, 0.80)      # warm paper tone of the scrolls
INKS = torch.tensor([            # a small palette of pigments seen in KaoKore faces
    [0.10, 0.09, 0.08], [0.55, 0.16, 0.12], [0.82, 0.62, 0.45], [0.93, 0.86, 0.76],
    [0.25, 0.33, 0.45], [0.45, 0.52, 0.35], [0.70, 0.45, 0.20],
])


def _ellipse(H: int, W: int, cx: float, cy: float, rx: float, ry: float, angle: float = 0.0) -> torch.Tensor:
    """(H, W) anti-aliased mask of an ellipse; centre and radii in canvas units."""
    y, x = torch.meshgrid((torch.arange(H) + 0.5) / H, (torch.arange(W) + 0.5) / W, indexing="ij")
    c, s = math.cos(angle), math.sin(angle)
    u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
    d = torch.sqrt((u / rx) ** 2 + (v / ry) ** 2)
    return ((1 - d) * min(rx, ry) * min(H, W) + 0.5).clamp(0, 1)


def demo_picture(size: int = 256) -> torch.Tensor:
    """A KaoKore-like face drawn from ellipses: (3, size, size) in [0, 1]."""
    img = torch.tensor(PAPER)[:, None, None].expand(3, size, size).clone()
    layers = [  # (mask, colour), back to front
        (_ellipse(size, size, 0.50, 0.95, 0.45, 0.30), (0.30, 0.36, 0.48)),            # robe
        (_ellipse(size, size, 0.46, 0.42, 0.30, 0.34, 0.2), (0.08, 0.07, 0.07)),       # hair
        (_ellipse(size, size, 0.50, 0.12, 0.12, 0.16, -0.3), (0.10, 0.09, 0.09)),      # eboshi cap
        (_ellipse(size, size, 0.54, 0.52, 0.22, 0.27, 0.1), (0.95, 0.93, 0.88)),       # face
        (_ellipse(size, size, 0.47, 0.45, 0.06, 0.012, 0.1), (0.12, 0.10, 0.10)),      # eyes
        (_ellipse(size, size, 0.64, 0.46, 0.05, 0.012, 0.1), (0.12, 0.10, 0.10)),
        (_ellipse(size, size, 0.46, 0.39, 0.05, 0.010, 0.0), (0.20, 0.18, 0.17)),      # brows
        (_ellipse(size, size, 0.63, 0.40, 0.04, 0.010, 0.0), (0.20, 0.18, 0.17)),
        (_ellipse(size, size, 0.57, 0.66, 0.035, 0.014), (0.75, 0.18, 0.15)),          # lips
    ]
    for mask, col in layers:
        img = img * (1 - mask) + mask * torch.tensor(col)[:, None, None]
    return img.clamp(0, 1)


def demo_painting(n: int = 200, seed: int = 0) -> Painting:
    """`n` strokes whose radius shrinks from broad washes to fine lines, colours from INKS."""
    g = torch.Generator().manual_seed(seed)
    s = S.random_strokes(n, g)
    scale = torch.linspace(1.0, 0.08, n)
    s[:, 6:8] = s[:, 6:8] * scale[:, None]                                             # z0, z2
    s[:, 8:10] = 0.5 + 0.5 * s[:, 8:10]                                                # w0, w2
    ink = INKS[torch.randint(len(INKS), (n,), generator=g)]
    s[:, 10:13] = (ink + 0.06 * torch.randn(n, 3, generator=g)).clamp(0, 1)
    return Painting(s, background=PAPER, provenance={"method": "procedural demo", "seed": seed})
