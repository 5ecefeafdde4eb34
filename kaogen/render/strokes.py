"""The Learning to Paint stroke: a quadratic Bézier with tapering radius and opacity, and a colour.

A batch of strokes is a float tensor `(..., 13)` with values in [0, 1], addressed by field name:

    field   index  meaning
    x0 y0   0  1   start point       (canvas units: x across the width, y down the height, [0, 1])
    x1 y1   2  3   control point     (canvas units)
    x2 y2   4  5   end point         (canvas units)
    z0 z2   6  7   radius at start / end, mapped by `radius()` to canvas units
    w0 w2   8  9   opacity at start / end
    r g b  10 11 12 colour

Radius and opacity vary linearly in the curve parameter t. `radius(z) = (1 + 64 z) / 256` of the
canvas' shorter side: the Learning to Paint reference draws circles of 1 + z * 64 px on a 256 px
canvas, so its agents' actions mean the same here, at any resolution.
"""

from __future__ import annotations

import torch

from kaogen.errors import KaogenError

FIELDS = ("x0", "y0", "x1", "y1", "x2", "y2", "z0", "z2", "w0", "w2", "r", "g", "b")
NUM_FIELDS = len(FIELDS)          # 13
SHAPE_FIELDS = FIELDS[:10]        # the 10 numbers the neural renderer of L2P sees
INDEX = {name: i for i, name in enumerate(FIELDS)}
MIN_RADIUS = 1.0 / 256.0
RADIUS_SPAN = 64.0 / 256.0


class StrokeError(KaogenError, ValueError):
    """Strokes of the wrong shape or with non-finite values (a ValueError too, as before)."""


class StrokeTypeError(KaogenError, TypeError):
    """Strokes that are not a floating-point tensor (a TypeError too, as before)."""


def check_strokes(s: torch.Tensor, finite: bool = True) -> torch.Tensor:
    """Validate a stroke tensor: floating point (any precision), last dimension 13, and (with
    `finite`) no NaN or inf, which would otherwise come out as NaN alphas or absurd tile boxes.

    The finiteness check reads one flag back from the device (one host synchronisation); the
    rasterisers pass finite=False and fold the same check into the one host transfer they make anyway
    (`not_finite_error`).
    """
    if not isinstance(s, torch.Tensor) or not s.is_floating_point():
        raise StrokeTypeError(f"strokes must be a floating-point tensor, got {type(s).__name__}"
                              + (f" of {s.dtype}" if isinstance(s, torch.Tensor) else ""))
    if s.shape[-1] != NUM_FIELDS:
        raise StrokeError(f"strokes must have shape (..., {NUM_FIELDS}), got {tuple(s.shape)}")
    if finite and s.numel() and not bool(torch.isfinite(s.detach()).all()):
        raise not_finite_error(s)
    return s


def not_finite_error(s: torch.Tensor) -> StrokeError:
    return StrokeError(f"strokes {tuple(s.shape)} hold NaN or infinite values; every field must be a number in [0, 1]")


def compute_dtype(s: torch.Tensor) -> torch.dtype:
    """The dtype the rasterisers compute in: float64 for float64 strokes, float32 for every other
    floating type (float16 and bfloat16 strokes are cast: their 8-11 bit mantissas misplace the
    curve by pixels at 512 px and overflow in the cubic's coefficients)."""
    return torch.float64 if s.dtype == torch.float64 else torch.float32


def points(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Start, control and end points, each (..., 2) as (x, y) in canvas units."""
    i = INDEX
    return s[..., i["x0"]:i["y0"] + 1], s[..., i["x1"]:i["y1"] + 1], s[..., i["x2"]:i["y2"] + 1]


def radius(s: torch.Tensor) -> torch.Tensor:
    """Radius at start and end, (..., 2), in units of the canvas' shorter side."""
    return MIN_RADIUS + RADIUS_SPAN * s[..., INDEX["z0"]:INDEX["z2"] + 1]


def opacity(s: torch.Tensor) -> torch.Tensor:
    """Opacity at start and end, (..., 2) in [0, 1]."""
    return s[..., INDEX["w0"]:INDEX["w2"] + 1]


def color(s: torch.Tensor) -> torch.Tensor:
    """RGB colour, (..., 3) in [0, 1]."""
    return s[..., INDEX["r"]:INDEX["b"] + 1]


def spine(s: torch.Tensor, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """n points along the curve, t = 0 .. 1, and the radius there: (..., n, 2) canvas units, (..., n)."""
    p0, p1, p2 = points(s)
    t = torch.linspace(0, 1, n, device=s.device, dtype=s.dtype)[:, None]
    u = 1 - t
    xy = u ** 2 * p0[..., None, :] + 2 * t * u * p1[..., None, :] + t ** 2 * p2[..., None, :]
    r = radius(s)
    return xy, r[..., :1] * u[:, 0] + r[..., 1:] * t[:, 0]


def make_strokes(**fields: torch.Tensor | float) -> torch.Tensor:
    """Build strokes from named fields (tensors broadcast together): make_strokes(x0=..., ..., b=...)."""
    missing = [f for f in FIELDS if f not in fields]
    unknown = [f for f in fields if f not in INDEX]
    if missing or unknown:
        raise ValueError(f"make_strokes needs exactly the fields {FIELDS}; missing {missing}, unknown {unknown}")
    vals = torch.broadcast_tensors(*[torch.as_tensor(fields[f], dtype=torch.float32) for f in FIELDS])
    return torch.stack(vals, dim=-1)


def random_strokes(n: int, generator: torch.Generator | None = None, device=None,
                   max_radius: float = 1.0, min_opacity: float = 0.0) -> torch.Tensor:
    """`n` strokes drawn uniformly as in the Learning to Paint renderer's training data: (n, 13).

    The control point lies in the box spanned by start and end (as in the reference), radii are
    scaled by `max_radius`, opacities drawn in [min_opacity, 1].
    """
    if n < 0:
        raise KaogenError(f"random_strokes needs a stroke count >= 0, not {n}")
    # A generator draws on its own device (a CPU generator for CUDA strokes keeps CPU and GPU runs
    # identical); the strokes are then moved to `device` in one copy.
    where = generator.device if generator is not None else device
    s = torch.rand(n, NUM_FIELDS, generator=generator, device=where)
    p0, p2 = s[:, 0:2], s[:, 4:6]
    s[:, 2:4] = p0 + (p2 - p0) * s[:, 2:4]
    s[:, 6:8] *= max_radius
    s[:, 8:10] = min_opacity + (1 - min_opacity) * s[:, 8:10]
    return s if device is None else s.to(device)


def to_pixels(p: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Points (..., 2) in canvas units -> pixels (x * W, y * H), with no host tensor involved."""
    return torch.stack([p[..., 0] * W, p[..., 1] * H], dim=-1)
