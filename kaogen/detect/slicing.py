"""Sliced inference: overlapping windows of the detector's input size plus the whole page, merged.

    boxes, scores = sliced_detect(model, page, patch=(1333, 800), overlap=0.2)

Windows are `patch` (width, height) apart by (1 - overlap) of their size; the last window of a row
or column is shifted back inside the page (as sahi does) rather than padded; a page smaller than
the patch is padded with its mean colour, so that the detector sees faces at the scale it was
trained on. The whole page, resized by torchvision to fit the patch, adds the faces too large for
one window. Boxes from every pass are merged greedily by score: a box is dropped when it overlaps
a kept one by IoU > `iou` or covers it / is covered by it by IoS > `ios` (intersection over the
smaller area: a face cut by a window edge inside the same face from the next window).

Tensor boundary: page float32 (3, H, W) in [0, 1]; boxes float32 (N, 4) x0 y0 x1 y1 in page pixels,
clipped to the page; scores float32 (N,), sorted descending. On the CPU whatever the model's device.
"""

from __future__ import annotations

import torch
from torchvision.ops import box_area, box_iou

from kaogen.detect.patches import check_page, pad_to
from kaogen.device import autocast


def window_origins(length: int, patch: int, overlap: float) -> list[int]:
    """Start of each window along one axis: [0] when the page is no longer than the patch."""
    if length <= patch:
        return [0]
    stride = max(1, int(patch * (1 - overlap)))
    starts = list(range(0, length - patch + 1, stride))
    if starts[-1] != length - patch:
        starts.append(length - patch)
    return starts


def windows(width: int, height: int, patch: tuple[int, int], overlap: float) -> list[tuple[int, int]]:
    """(x0, y0) of every window over a width x height page, row by row."""
    return [(x, y) for y in window_origins(height, patch[1], overlap) for x in window_origins(width, patch[0], overlap)]


def merge(boxes: torch.Tensor, scores: torch.Tensor, iou: float = 0.5, ios: float = 0.7,
          cut: torch.Tensor | None = None) -> torch.Tensor:
    """Indices of the boxes kept by greedy merging (see the module docstring), by descending score;
    boxes marked `cut` (touching a window edge inside the page) come after every whole one."""
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.long)
    priority = scores.float() + (0.0 if cut is None else (~cut).float() * 2)
    order = priority.argsort(descending=True, stable=True)
    b = boxes[order].float()
    ov = box_iou(b, b)
    area = box_area(b)
    lt = torch.max(b[:, None, :2], b[None, :, :2])
    rb = torch.min(b[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    ios_m = inter / torch.min(area[:, None], area[None, :]).clamp(min=1e-6)
    clash = (ov > iou) | (ios_m > ios)
    keep = []
    dropped = torch.zeros(len(b), dtype=torch.bool)
    for i in range(len(b)):
        if dropped[i]:
            continue
        keep.append(i)
        dropped |= clash[i]
    return order[torch.tensor(keep, dtype=torch.long)]


@torch.no_grad()
def sliced_detect(model, page: torch.Tensor, patch: tuple[int, int] | None, overlap: float = 0.2,
                  whole_page: bool = True, batch: int = 4, amp: bool = False, iou: float = 0.5,
                  ios: float = 0.7) -> tuple[torch.Tensor, torch.Tensor]:
    """Detect on `page` through windows of `patch` (None: the whole page only); see the module docstring."""
    check_page(page, torch.zeros(0, 4))
    if not 0 <= overlap < 1:
        from kaogen.errors import KaogenError

        raise KaogenError(f"--overlap must be in [0, 1), not {overlap}")
    device = next(model.parameters()).device
    model.eval()
    _, H, W = page.shape
    found_b, found_s, found_c = [], [], []

    def run(images: list[torch.Tensor], offsets: list[tuple[int, int]], size: tuple[int, int] | None) -> None:
        with autocast(device, amp):
            outs = model([im.to(device) for im in images])
        for out, (x0, y0) in zip(outs, offsets):
            b = out["boxes"].float().cpu() + torch.tensor([x0, y0, x0, y0], dtype=torch.float32)
            cut = torch.zeros(len(b), dtype=torch.bool)
            if size is not None:     # a box on a window edge that is not the page's was cut by the window
                x1, y1 = x0 + size[0], y0 + size[1]
                cut = ((b[:, 0] <= x0 + 1) & (x0 > 0)) | ((b[:, 1] <= y0 + 1) & (y0 > 0)) | \
                      ((b[:, 2] >= x1 - 1) & (x1 < W)) | ((b[:, 3] >= y1 - 1) & (y1 < H))
            found_b.append(b)
            found_s.append(out["scores"].float().cpu())
            found_c.append(cut)

    if patch is not None:
        pw, ph = patch
        wins = windows(W, H, patch, overlap)
        for i in range(0, len(wins), batch):
            chunk = wins[i:i + batch]
            run([pad_to(page[:, y:y + ph, x:x + pw], pw, ph) for x, y in chunk], chunk, patch)
    if whole_page or patch is None:
        run([page], [(0, 0)], None)
    boxes = torch.cat(found_b) if found_b else torch.zeros(0, 4)
    scores = torch.cat(found_s) if found_s else torch.zeros(0)
    cut = torch.cat(found_c) if found_c else torch.zeros(0, dtype=torch.bool)
    boxes = torch.stack([boxes[:, 0].clamp(0, W), boxes[:, 1].clamp(0, H),
                         boxes[:, 2].clamp(0, W), boxes[:, 3].clamp(0, H)], 1)
    ok = (boxes[:, 2] > boxes[:, 0] + 1) & (boxes[:, 3] > boxes[:, 1] + 1)
    boxes, scores, cut = boxes[ok], scores[ok], cut[ok]
    keep = merge(boxes, scores, iou, ios, cut)
    return boxes[keep], scores[keep]
