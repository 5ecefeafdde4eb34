"""Renderer guarantees that mutation testing (benchmarks/mutation.sh render/...) showed were unchecked.

Each test asserts a property a user sees (a value, a refusal, a file as other tools decode it) and
names the bug it guards against. Sizes are tiny so that the whole file runs in a few seconds.
"""

from __future__ import annotations

import pytest
import torch

from kaogen.render import strokes as S
from kaogen.render.composite import composite


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------- composite

@pytest.mark.parametrize("shape", [(1, 1, 6, 6), (1, 4, 6, 6), (3, 6, 6)])
def test_composite_refuses_a_canvas_that_is_not_rgb(shape):
    """composite() refuses a canvas that is not (B, 3, H, W): a grey (B, 1, H, W) canvas would otherwise
    broadcast silently to RGB, and an RGBA one would be painted with an RGBA colour. Guards against the
    shape check accepting a canvas whose channel count alone is wrong (`or` weakened to `and`)."""
    canvas = torch.rand(*shape, generator=gen(1))
    channels = 4 if shape[1] == 4 else 3
    alpha = torch.rand(1, 6, 6, generator=gen(2))
    color = torch.rand(1, channels, generator=gen(3))
    with pytest.raises(ValueError, match="canvas must be"):
        composite(canvas, alpha, color)
