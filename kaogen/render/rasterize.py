"""Exact rasteriser: anti-aliased stroke alpha at any resolution, on whatever device the strokes are.

    crops = rasterize_crops(strokes, H, W)     # per-stroke windows: cheap, for compositing paintings
    alpha = rasterize(strokes, H, W)           # (..., H, W) full canvases, for batched agents

Both compute in float32 (float64 for float64 strokes) whatever the strokes' dtype and outside any
autocast region: float16 strokes overflow in the closest-point cubic (NaN alphas) and bfloat16 ones
misplace the curve by pixels at 512 px. The alpha is returned in the strokes' dtype.

Strokes are grouped by the size of their bounding box (sorted, about `budget` window pixels per
group), so small strokes are not evaluated over the window of the largest one.

Host synchronisation: culling and windows need the strokes' boxes on the host (one read-back per
call). On an accelerator, a call whose whole-canvas evaluation is small (strokes x pixels <=
DENSE_BUDGET: an agent's action on a 128 px canvas for hundreds of images) evaluates every pixel
instead, with no read-back at all: the same values (culling only skips zeros). There the strokes'
finiteness is not checked (it would need the read-back); non-finite strokes give non-finite alpha.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kaogen.device import float32_region
from kaogen.render import strokes as S
from kaogen.render.coverage import Windows, alpha_in_windows, full_windows, hard_ramp, stroke_windows
from kaogen.render.tiles import stroke_tiles, tile_crop, tiles_to_canvas


DENSE_BUDGET = 1 << 24      # strokes x pixels under which an accelerator evaluates whole canvases
                            # (about 15 float32 temporaries of this size live at once: ~1 GiB)


def use_dense(s: torch.Tensor, H: int, W: int, dense: bool | None = None) -> bool:
    """Evaluate whole canvases without reading anything back? `dense` None: on a non-CPU device when
    strokes x pixels <= DENSE_BUDGET (on a CPU culling is always faster)."""
    if dense is not None:
        return dense
    return s.device.type != "cpu" and s.shape[0] * H * W <= DENSE_BUDGET


@dataclass
class StrokeCrop:
    """Alpha of one stroke inside its window: alpha (h, w) at rows top.., columns left.."""
    alpha: torch.Tensor
    top: int
    left: int


def _groups(s: torch.Tensor, H: int, W: int, budget: int) -> list[torch.Tensor]:
    """Index groups of strokes of similar bounding-box area, about `budget` window pixels each.

    Small groups keep the per-pixel temporaries in cache (measured fastest on CPU around 64k);
    sorting by area keeps a group's common window close to each member's own.
    """
    p0, p1, p2 = S.points(s.detach())
    pts = torch.stack([p0, p1, p2], 1)                                               # (M, 3, 2)
    ext = S.to_pixels(pts.amax(1) - pts.amin(1), H, W)
    ext = ext + 2 * S.radius(s.detach()).amax(-1, keepdim=True) * min(H, W) + 2
    area = ext.clamp(max=max(H, W)).prod(-1)
    order = torch.argsort(area, descending=True)
    *areas, finite = torch.cat([area[order], torch.isfinite(s).all().to(area.dtype).view(1)]).tolist()  # one transfer
    if not finite:
        raise S.not_finite_error(s)
    groups, start = [], 0
    while start < len(order):
        n = max(1, int(budget // max(areas[start], 1.0)))
        groups.append(order[start:start + n])
        start += n
    return groups


@torch.no_grad()
def rasterize_crops(s: torch.Tensor, H: int, W: int, budget: int = 65536, tiled: bool = True) -> list[StrokeCrop]:
    """Alpha of every stroke in its own window.

    Args:  s (M, 13) strokes in [0, 1] (canvas units); H, W canvas size in pixels;
           tiled: the tile-culled fast path (tiles.py; same values);
           False evaluates every window pixel (the plain path the fast one is tested against).
    Returns: M StrokeCrops, in the order of `s`; alpha values in [0, 1].
    """
    s = S.check_strokes(s, finite=False).reshape(-1, S.NUM_FIELDS)
    with float32_region(s.device):
        return _crops(s.to(S.compute_dtype(s)), H, W, budget, tiled, s.dtype)


def _crops(s: torch.Tensor, H: int, W: int, budget: int, tiled: bool, dtype: torch.dtype) -> list[StrokeCrop]:
    if tiled:
        t = stroke_tiles(s, H, W)
        t.alpha = t.alpha.to(dtype)                                                  # once, not per stroke
        return [StrokeCrop(*tile_crop(t, i, H, W)) for i in range(len(s))]
    out: list[StrokeCrop | None] = [None] * len(s)
    for idx in _groups(s, H, W, budget):
        g = s[idx]
        win = stroke_windows(g, H, W, margin=1.0)
        a = alpha_in_windows(g, win, H, W, hard_ramp).to(dtype)
        tops, lefts = win.top.tolist(), win.left.tolist()
        for j, i in enumerate(idx.tolist()):
            out[i] = StrokeCrop(a[j], tops[j], lefts[j])
    return out  # type: ignore[return-value]


@torch.no_grad()
def rasterize(s: torch.Tensor, H: int, W: int | None = None, budget: int = 65536, tiled: bool = True,
              dense: bool | None = None) -> torch.Tensor:
    """Full-canvas alpha of every stroke.

    Args:  s (..., 13) strokes; H, W canvas size (W defaults to H);
           dense: evaluate every pixel with no host read-back (None: `use_dense`'s choice).
    Returns: (..., H, W) alpha in [0, 1], same device and dtype as `s`.
    """
    W = H if W is None else W
    lead = s.shape[:-1]
    flat = S.check_strokes(s, finite=False).reshape(-1, S.NUM_FIELDS)
    with float32_region(s.device):
        flat = flat.to(S.compute_dtype(flat))
        if use_dense(flat, H, W, dense):
            a = alpha_in_windows(flat, full_windows(flat, H, W), H, W, hard_ramp)
            return a.to(s.dtype).reshape(*lead, H, W)
        if tiled:
            return tiles_to_canvas(stroke_tiles(flat, H, W), H, W).to(s.dtype).reshape(*lead, H, W)
        full = torch.zeros(len(flat), H * W, device=s.device, dtype=flat.dtype)
        for idx in _groups(flat, H, W, budget):
            g = flat[idx]
            win = stroke_windows(g, H, W, margin=1.0)
            a = alpha_in_windows(g, win, H, W, hard_ramp)
            full[idx] = _place(a, win, H, W)
        return full.to(s.dtype).reshape(*lead, H, W)


def _place(a: torch.Tensor, win: Windows, H: int, W: int) -> torch.Tensor:
    """Scatter window crops (M, h, w) into flat full canvases (M, H*W); differentiable in `a`."""
    M = a.shape[0]
    rows = win.top[:, None] + torch.arange(win.h, device=a.device)                  # (M, h)
    cols = win.left[:, None] + torch.arange(win.w, device=a.device)                 # (M, w)
    flat_idx = (rows[:, :, None] * W + cols[:, None, :]).reshape(M, win.h * win.w)  # (M, h*w)
    zeros = torch.zeros(M, H * W, device=a.device, dtype=a.dtype)
    return zeros.scatter(1, flat_idx, a.reshape(M, win.h * win.w))
