"""A procedural painting for the offline demo: coarse, large strokes first, fine ones last.

Until the painting agents ship checkpoints, `kaogen demo` shows the renderer and every export on
this painting; it needs no data and no download.
"""

from __future__ import annotations

import torch

from kaogen.render import strokes as S
from kaogen.render.painting import Painting

PAPER = (0.93, 0.89, 0.80)      # warm paper tone of the scrolls
INKS = torch.tensor([            # a small palette of pigments seen in KaoKore faces
    [0.10, 0.09, 0.08], [0.55, 0.16, 0.12], [0.82, 0.62, 0.45], [0.93, 0.86, 0.76],
    [0.25, 0.33, 0.45], [0.45, 0.52, 0.35], [0.70, 0.45, 0.20],
])


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
