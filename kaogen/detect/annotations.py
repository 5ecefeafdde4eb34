"""What detections become: COCO results, IIIF Presentation 3 AnnotationPages, previews.

    coco_results(image_id, boxes, scores)        -> [{"image_id", "category_id": 1, "bbox": [x, y, w, h], "score"}]
    annotation_page(canvas, boxes, scores)       -> {"@context": presentation 3, "type": "AnnotationPage",
                                                     "items": [Annotation, ...]}

Each Annotation is a W3C Web Annotation: motivation "tagging", body a TextualBody "face", target
`CANVAS#xywh=x,y,w,h` in whole pixels of the page's full size (what Mirador and the IIIF Curation
Platform read); its `label` carries the detector's score. Boxes given here are float (N, 4)
x0 y0 x1 y1 already in full-size page pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

PRESENTATION_CONTEXT = "http://iiif.io/api/presentation/3/context.json"


def xywh(boxes: torch.Tensor) -> list[list[float]]:
    b = boxes.float()
    return torch.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1).tolist() if len(b) else []


def int_xywh(box) -> tuple[int, int, int, int]:
    """A float x0 y0 x1 y1 -> whole pixels x, y, w, h covering it."""
    x0, y0 = int(np.floor(float(box[0]))), int(np.floor(float(box[1])))
    x1, y1 = int(np.ceil(float(box[2]))), int(np.ceil(float(box[3])))
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


def coco_results(image_id: int, boxes: torch.Tensor, scores: torch.Tensor) -> list[dict]:
    return [{"image_id": int(image_id), "category_id": 1, "bbox": [round(v, 2) for v in b], "score": round(float(s), 5)}
            for b, s in zip(xywh(boxes), scores.tolist())]


def annotation_page(canvas: str, boxes: torch.Tensor, scores: torch.Tensor, page_id: str | None = None) -> dict:
    """An IIIF Presentation 3 AnnotationPage of the faces on one canvas."""
    base = page_id or f"{canvas.split('#')[0].rstrip('/')}/annotations/kaogen-faces"
    items = []
    for k, (b, s) in enumerate(zip(boxes, scores.tolist())):
        x, y, w, h = int_xywh(b)
        items.append({
            "id": f"{base}/face-{k + 1}",
            "type": "Annotation",
            "motivation": "tagging",
            "label": {"none": [f"face {s:.3f}"]},
            "body": {"type": "TextualBody", "value": "face", "format": "text/plain"},
            "target": f"{canvas}#xywh={x},{y},{w},{h}",
        })
    return {"@context": PRESENTATION_CONTEXT, "id": base, "type": "AnnotationPage", "items": items}


def parse_target(target: str) -> tuple[str, tuple[int, int, int, int]]:
    """`CANVAS#xywh=x,y,w,h` -> (canvas, (x, y, w, h))."""
    canvas, _, frag = target.partition("#xywh=")
    x, y, w, h = (int(v) for v in frag.split(","))
    return canvas, (x, y, w, h)


def draw_boxes(page: torch.Tensor | Image.Image, truth: torch.Tensor | None, boxes: torch.Tensor,
               scores: torch.Tensor | None = None, width: int | None = None) -> np.ndarray:
    """A preview (H, W, 3) uint8: true boxes green, detections red with their score."""
    from kaogen.images import tensor_to_uint8

    img = Image.fromarray(tensor_to_uint8(page)) if isinstance(page, torch.Tensor) else page.convert("RGB")
    d = ImageDraw.Draw(img)
    lw = width or max(2, round(max(img.size) / 500))
    for b in (truth if truth is not None else torch.zeros(0, 4)).tolist():
        d.rectangle(b, outline=(40, 170, 60), width=lw)
    for k, b in enumerate(boxes.tolist()):
        d.rectangle(b, outline=(220, 30, 30), width=lw)
        if scores is not None:
            d.text((b[0] + lw, b[1] + lw), f"{float(scores[k]):.2f}", fill=(220, 30, 30))
    return np.asarray(img)
