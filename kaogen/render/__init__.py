"""The shared stroke renderer: strokes -> coverage (rasterise) -> colour over canvas (composite) -> export.

    from kaogen.render import Painting, rasterize, soft_rasterize, composite, export
"""

from kaogen.render.brush_strokes import register_brush
from kaogen.render.composite import composite
from kaogen.render.export import ExportOptions, export
from kaogen.render.painting import Painting
from kaogen.render.rasterize import rasterize, rasterize_crops
from kaogen.render.soft import soft_rasterize
from kaogen.render.strokes import FIELDS, make_strokes, random_strokes

__all__ = ["FIELDS", "ExportOptions", "Painting", "composite", "export", "make_strokes", "random_strokes",
           "rasterize", "register_brush", "rasterize_crops", "soft_rasterize"]
