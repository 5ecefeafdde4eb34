"""Nakano's brush action: 12 numbers in [0, 1], addressed by name over a (..., 12) tensor.

    field     index  meaning (on the painter's 64 x 64 canvas)
    x0 y0     0  1   start point
    x1 y1     2  3   control point (the stroke follows the quadratic Bezier start -> control -> end)
    x2 y2     4  5   end point
    p0 p2     6  7   pen pressure at start / end (linear along the stroke)
    size      8      brush size: MyPaint's radius_logarithmic from RADIUS_LOG[0] to RADIUS_LOG[1]
    r g b     9 10 11 colour

The first 9 fields (SHAPE) decide where paint lands; the colour only tints it (MyPaint's normal
blend mode is source-over with the brush colour), so the neural painter learns the shape -> alpha
map and the colour is applied exactly when compositing.
"""

from __future__ import annotations

import numpy as np
import torch

FIELDS = ("x0", "y0", "x1", "y1", "x2", "y2", "p0", "p2", "size", "r", "g", "b")
NUM_FIELDS = len(FIELDS)            # 12
SHAPE = FIELDS[:9]
INDEX = {f: i for i, f in enumerate(FIELDS)}
CANVAS = 64                         # px of the painter's canvas
RADIUS_LOG = (0.4, 2.0)             # ln(radius px): 1.5 px .. 7.4 px on the 64 px canvas
EVENTS = 48                         # pen events along a stroke
DTIME = 0.015                       # seconds between events (enough for continuous dabs)


def shape(a: torch.Tensor) -> torch.Tensor:
    return a[..., : len(SHAPE)]


def color(a: torch.Tensor) -> torch.Tensor:
    return a[..., INDEX["r"]:INDEX["b"] + 1]


def random_actions(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 12) float32: uniform, with the control point inside the start-end box (as for Bezier strokes)
    and strokes kept inside the canvas' central 80 % so that their ends are not cut."""
    a = rng.random((n, NUM_FIELDS), dtype=np.float32)
    a[:, 0:6] = 0.1 + 0.8 * a[:, 0:6]
    p0, p2 = a[:, 0:2], a[:, 4:6]
    a[:, 2:4] = p0 + (p2 - p0) * a[:, 2:4]
    return a


def events(action: np.ndarray, size: int = CANVAS) -> np.ndarray:
    """Pen events (EVENTS, 4): x, y in px, pressure, dtime, along the action's quadratic Bezier."""
    t = np.linspace(0.0, 1.0, EVENTS)[:, None]
    p0, p1, p2 = action[0:2], action[2:4], action[4:6]
    xy = ((1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2) * size
    pressure = action[6] + (action[7] - action[6]) * t[:, 0]
    return np.column_stack([xy, pressure, np.full(EVENTS, DTIME)]).astype(np.float64)


def radius_log(action: np.ndarray, size: int = CANVAS) -> float:
    """MyPaint's radius_logarithmic for the action's size field, scaled with the canvas size."""
    lo, hi = RADIUS_LOG
    return float(lo + (hi - lo) * action[INDEX["size"]] + np.log(size / CANVAS))
