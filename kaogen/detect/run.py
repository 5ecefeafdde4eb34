"""`kaogen detect PAGE|DIR|IIIF-IMAGE-URL`: faces on pages, written for review.

Each page is read at full size (a file; or an IIIF image: info.json and one full-size request,
checked as `data pages` does), scaled so that its long side is the detector's (the long side of the
pages it was trained on), searched by sliced inference, and its boxes mapped back to full-size
pixels. In OUT:

    detections.json          COCO results [{image_id, category_id 1, bbox x,y,w,h (full size), score}]
    pages.json               the COCO images they refer to (id, file_name = the source, full width / height,
                             canvas), so that pycocotools' loadRes reads the results
    annotations/NAME.json    an IIIF Presentation 3 AnnotationPage per page, targets CANVAS#xywh=...
    preview/NAME.png         the page with its boxes and scores
    crops/NAME_K.jpg         each face cut at 256 x 256 px (a square around the box, from the full-size page)
    review.csv               one row per face: box, score, the crop's region (and its IIIF URL), an empty
                             `keep` column for the historian, and with --classifier the predicted gender /
                             status and their probabilities (also prefilled into `gender` / `status`)

The canvas of a page is `--canvas` (one page), else the IIIF image service's URL, else the file's
`file://` URI; pass the manifest's canvas id so that Mirador attaches the annotations.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from kaogen.atomic import atomic_path, atomic_write_text
from kaogen.detect.annotations import annotation_page, coco_results, draw_boxes, int_xywh
from kaogen.detect.bundle import Detector
from kaogen.errors import KaogenError

REVIEW_COLUMNS = ["crop", "page", "source", "canvas", "x", "y", "w", "h", "score", "crop_x", "crop_y", "crop_w",
                  "crop_h", "url", "keep", "gender", "status", "pred_gender", "p_gender", "pred_status", "p_status"]


@dataclass
class DetectOptions:
    out: str
    patch: tuple[int, int] | None = None     # default: the detector's
    no_patch: bool = False                   # the whole page only
    overlap: float | None = None
    threshold: float | None = None
    long_side: int | None = None             # None: the detector's; 0: the page as it is
    canvas: str | None = None                # one page only
    mirror: str | None = None                # IIIF requests go there (ids keep the original host)
    classifiers: tuple[str, ...] = ()
    crop_size: int = 256
    amp: bool = False
    timeout: float = 60.0


@dataclass
class Source:
    kind: str           # "file" | "iiif"
    location: str       # path, or IIIF image service URL (base + identifier)
    name: str           # file-safe name for the outputs


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "page"


def iiif_service(url: str) -> str:
    """An IIIF image URL (any region/size), an info.json URL or a service URL -> the service URL."""
    from kaogen.data.iiif import IIIFImageURL

    url = url.strip().rstrip("/")
    if url.endswith("/info.json"):
        return url[: -len("/info.json")]
    try:
        return IIIFImageURL.parse(url).prefix
    except KaogenError:
        return url


def sources(inputs: list[str]) -> list[Source]:
    from kaogen.images import list_images

    out: list[Source] = []
    for item in inputs:
        if re.match(r"^https?://", item):
            svc = iiif_service(item)
            out.append(Source("iiif", svc, _safe(svc.rsplit("/", 1)[-1].rsplit(".", 1)[0])))
            continue
        p = Path(item)
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise KaogenError(f"{p} holds no images")
            out += [Source("file", str(f), _safe(str(f.relative_to(p).with_suffix("")))) for f in found]
        elif p.exists():
            out.append(Source("file", str(p), _safe(p.stem)))
        else:
            raise KaogenError(f"{p} does not exist (give a page, a folder of pages or an IIIF image URL)")
    seen: dict[str, int] = {}
    for s in out:                                   # names unique: outputs never collide
        n = seen.get(s.name, 0)
        seen[s.name] = n + 1
        if n:
            s.name = f"{s.name}-{n}"
    return out


def load_source(src: Source, opts: DetectOptions) -> tuple[Image.Image, tuple[int, int], str]:
    """(page as read, full size (W, H), canvas id)."""
    if src.kind == "iiif":
        from kaogen.data.pages import fetch_iiif_page

        img, full = fetch_iiif_page(src.location, opts.mirror, opts.timeout)
        return img, full, src.location
    from kaogen.images import open_rgb

    img = open_rgb(src.location)
    return img, img.size, Path(src.location).resolve().as_uri()


def square_region(box, full: tuple[int, int]) -> tuple[int, int, int, int]:
    """A square (x, y, s, s) around a box x0 y0 x1 y1, shifted inside the page (clipped if larger)."""
    W, H = full
    x0, y0, x1, y1 = (float(v) for v in box)
    s = max(x1 - x0, y1 - y0)
    s = min(int(round(s)), W, H)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    x = int(round(min(max(cx - s / 2, 0), W - s)))
    y = int(round(min(max(cy - s / 2, 0), H - s)))
    return x, y, max(s, 1), max(s, 1)


def _load_classifiers(paths, device):
    if not paths:
        return []
    from kaogen.classify.bundle import Classifier

    clfs = [Classifier.load(p, device) for p in paths]
    labels = [c.label for c in clfs]
    bad = [lab for lab in labels if lab not in ("gender", "status")]
    if bad or len(set(labels)) != len(labels):
        raise KaogenError(f"--classifier takes one gender and/or one status classifier, not {labels}")
    return clfs


def detect_pages(det: Detector, inputs: list[str], opts: DetectOptions, progress: bool = False) -> dict:
    """Run `kaogen detect`; returns {"pages", "faces", "out"}."""
    from kaogen.data.pages import CATEGORIES, scaled_size
    from kaogen.images import pil_to_tensor, save_image

    srcs = sources(inputs)
    if opts.canvas and len(srcs) != 1:
        raise KaogenError("--canvas names the canvas of one page; give one page with it")
    clfs = _load_classifiers(opts.classifiers, det.device)
    out = Path(opts.out)
    for sub in ("annotations", "preview", "crops"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    images, results, rows = [], [], []
    from tqdm import tqdm

    for page_id, src in enumerate(tqdm(srcs, desc="pages", disable=not progress), start=1):
        img, full, canvas = load_source(src, opts)
        canvas = opts.canvas or canvas
        L = det.long_side if opts.long_side is None else opts.long_side
        size = scaled_size(*full, L) if L else img.size
        scaled = img if img.size == size else img.resize(size, Image.Resampling.LANCZOS)
        boxes, scores = det.detect(pil_to_tensor(scaled), patched=not opts.no_patch, overlap=opts.overlap,
                                   threshold=opts.threshold, patch=opts.patch, amp=opts.amp)
        to_full = torch.tensor([full[0] / size[0], full[1] / size[1]] * 2)
        fboxes = boxes * to_full
        images.append({"id": page_id, "file_name": src.location, "width": full[0], "height": full[1],
                       "canvas": canvas, "name": src.name})
        results += coco_results(page_id, fboxes, scores)
        atomic_write_text(out / "annotations" / f"{src.name}.json",
                          json.dumps(annotation_page(canvas, fboxes, scores), indent=1) + "\n")
        save_image(out / "preview" / f"{src.name}.png", draw_boxes(scaled, None, boxes, scores))
        read = torch.tensor([img.size[0] / full[0], img.size[1] / full[1]] * 2)   # full size -> pixels read
        crops = []
        for k, b in enumerate(fboxes):
            x, y, w, h = square_region(b, full)
            r = (torch.tensor([x, y, x + w, y + h], dtype=torch.float32) * read).tolist()
            crop = img.crop(tuple(int(round(v)) for v in r)).resize((opts.crop_size, opts.crop_size), Image.Resampling.LANCZOS)
            crop_name = f"{src.name}_{k:03d}.jpg"
            with atomic_path(out / "crops" / crop_name) as tmp:
                crop.save(tmp, format="JPEG", quality=95)
            crops.append(crop)
            bx, by, bw, bh = int_xywh(b)
            url = f"{src.location}/{x},{y},{w},{h}/{opts.crop_size},{opts.crop_size}/0/default.jpg" if src.kind == "iiif" else ""
            rows.append({"crop": f"crops/{crop_name}", "page": src.name, "source": src.location, "canvas": canvas,
                         "x": bx, "y": by, "w": bw, "h": bh, "score": f"{float(scores[k]):.4f}", "crop_x": x,
                         "crop_y": y, "crop_w": w, "crop_h": h, "url": url, "keep": "", "gender": "", "status": "",
                         "pred_gender": "", "p_gender": "", "pred_status": "", "p_status": ""})
        for clf in clfs:
            if not crops:
                continue
            probs = clf.predict(torch.stack([clf.prepare(c) for c in crops]))
            for row, p in zip(rows[len(rows) - len(crops):], probs):
                j = int(p.argmax())
                row[f"pred_{clf.label}"] = row[clf.label] = clf.classes[j]
                row[f"p_{clf.label}"] = f"{float(p[j]):.4f}"
    coco = {"info": {"description": "kaogen detect", "detector": det.meta}, "licenses": [], "images": images,
            "annotations": [], "categories": CATEGORIES}
    atomic_write_text(out / "pages.json", json.dumps(coco, indent=1) + "\n")
    atomic_write_text(out / "detections.json", json.dumps(results) + "\n")
    buf = io.StringIO()
    w = csv.DictWriter(buf, REVIEW_COLUMNS)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "review.csv", buf.getvalue())
    return {"pages": len(srcs), "faces": len(rows), "out": str(out)}
