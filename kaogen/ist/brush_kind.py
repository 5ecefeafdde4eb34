"""Registers intrinsic style transfer's neural painter with the renderer (`kaogen.render`).

The renderer draws "neural-brush" strokes with the painter a painting was made with, but does not
import this package (it sits below it). Importing this module registers the loader that finds that
painter: the checkpoint named in the painting's provenance, or else the shipped painter of its brush.

    import kaogen.ist.brush_kind   # noqa: F401  (the kaogen CLI does this before rendering)
    Painting.load("ist.json").render(1024)

The loader imports the painter code only when a painting needs it.
"""

from __future__ import annotations

from pathlib import Path

from kaogen.errors import KaogenError
from kaogen.render.brush_strokes import register_brush

KIND = "neural-brush"


def load_neural_painter(provenance: dict, device):
    """The neural painter a painting's provenance names, on `device`."""
    from kaogen.ist.painter import NeuralPainter, shipped_painter

    ck = provenance.get("checkpoint")
    if ck and Path(ck).is_file():
        return NeuralPainter.load(ck, device)
    brush = provenance.get("brush")
    if not brush:
        raise KaogenError("this neural-brush painting names neither its painter checkpoint nor its brush")
    return shipped_painter(brush, device)


register_brush(KIND, load_neural_painter)
