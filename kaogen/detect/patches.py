"""Image patching for training (Mermet et al.): pad the page, cut patches the detector's input size.

A page larger than the detector's input would be shrunk by torchvision's resize, and small faces
with it; cut into patches of the input size, every face keeps its pixels. A face cut by a patch
edge is kept (clipped to the patch) when at least `min_visible` of its area is inside, and dropped
otherwise: a sliver of a face is not a face.

Tensor boundary: pages and patches are float32 (3, H, W) in [0, 1]; boxes float32 (N, 4)
x0, y0, x1, y1 in pixels of the image they belong to.
"""

from __future__ import annotations

import torch

from kaogen.errors import KaogenError


def check_page(img: torch.Tensor, boxes: torch.Tensor) -> None:
    if img.dim() != 3 or img.shape[0] != 3 or not img.is_floating_point():
        raise KaogenError(f"a page must be a float (3, H, W) tensor, not {tuple(img.shape)} {img.dtype}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise KaogenError(f"boxes must be (N, 4) x0 y0 x1 y1, not {tuple(boxes.shape)}")


def pad_to(img: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """(3, H, W) -> (3, max(H, height), max(W, width)): padded right and below with the image's mean
    colour (paper, not black: a black band would be an edge the detector learns)."""
    _, h, w = img.shape
    if w >= width and h >= height:
        return img
    out = img.mean((1, 2), keepdim=True).expand(3, max(h, height), max(w, width)).clone()
    out[:, :h, :w] = img
    return out


def crop_boxes(boxes: torch.Tensor, x0: int, y0: int, width: int, height: int,
               min_visible: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (N, 4) seen through the window [x0, x0 + width) x [y0, y0 + height): clipped, shifted to
    the window's pixels, and kept where at least `min_visible` of the box's area is inside.
    Returns (kept boxes (M, 4), indices (M,) into `boxes`)."""
    if not 0 < min_visible <= 1:
        raise KaogenError(f"min_visible must be in (0, 1], not {min_visible}")
    shifted = boxes - boxes.new_tensor([x0, y0, x0, y0])
    clipped = torch.stack([shifted[:, 0].clamp(0, width), shifted[:, 1].clamp(0, height),
                           shifted[:, 2].clamp(0, width), shifted[:, 3].clamp(0, height)], 1)
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    inside = (clipped[:, 2] - clipped[:, 0]).clamp(min=0) * (clipped[:, 3] - clipped[:, 1]).clamp(min=0)
    keep = (area > 0) & (inside >= min_visible * area)
    idx = keep.nonzero().flatten()
    return clipped[idx], idx


def sample_patch(img: torch.Tensor, boxes: torch.Tensor, width: int, height: int, gen: torch.Generator,
                 min_visible: float = 0.5, face_bias: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """A random `width` x `height` training patch of a page (padded first when smaller).

    With probability `face_bias` (and when the page has faces) the window is drawn among those that
    hold one face chosen at random whole; otherwise uniformly. Draws only from `gen` (CPU).
    Returns (patch (3, height, width), boxes (M, 4) in patch pixels)."""
    check_page(img, boxes)
    img = pad_to(img, width, height)
    _, H, W = img.shape

    def draw(lo: float, hi: float) -> int:   # an integer in [lo, hi] (lo when the range is empty)
        lo, hi = int(lo), int(hi)
        return lo + int(torch.randint(max(hi - lo + 1, 1), (), generator=gen))

    x_hi, y_hi = W - width, H - height
    u = float(torch.rand((), generator=gen))
    if len(boxes) and u < face_bias:
        b = boxes[int(torch.randint(len(boxes), (), generator=gen))]
        x0 = draw(max(0.0, float(b[2]) - width), min(float(x_hi), float(b[0])))
        y0 = draw(max(0.0, float(b[3]) - height), min(float(y_hi), float(b[1])))
    else:
        x0, y0 = draw(0, x_hi), draw(0, y_hi)
    x0, y0 = min(max(x0, 0), x_hi), min(max(y0, 0), y_hi)
    kept, _ = crop_boxes(boxes, x0, y0, width, height, min_visible)
    return img[:, y0:y0 + height, x0:x0 + width], kept


def hflip(img: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror an image (3, H, W) and its boxes (N, 4) left to right."""
    w = img.shape[-1]
    return img.flip(-1), torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
