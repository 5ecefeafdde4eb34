"""Synthetic pages: paper-coloured scans with real faces pasted at known boxes and ink distractors.

    faces = load_faces("../shared/kaokore/samples")                 # list of RGB PIL faces
    page = synthetic_page(faces, (400, 300), n_faces=4, face_px=(30, 60), seed=3)
    page.image        # RGB PIL (width, height)
    page.boxes        # [(x, y, w, h), ...] where each face was pasted, in page pixels; a face may run
                      # past an edge (`off_page=`): its box then extends past the page, as some v1.3 regions do
    page.faces        # index into `faces` of each box

What the tests, the smoke config and the benchmark train and measure on: real scrolls differ (their
faces are drawn into the scene, not pasted squares), so numbers on these pages are about the code,
not about art history.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from kaogen.errors import KaogenError


@dataclass
class SyntheticPage:
    image: Image.Image
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)   # x, y, w, h (may pass an edge)
    faces: list[int] = field(default_factory=list)


def load_faces(folder: str | Path) -> list[Image.Image]:
    """Every image of `folder` (sorted by name) as RGB PIL."""
    from kaogen.images import list_images, open_rgb

    paths = list_images(folder)
    if not paths:
        raise KaogenError(f"{folder} holds no face images")
    return [open_rgb(p) for p in paths]


def _paper(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """(h, w, 3) uint8: a warm paper tone with low-frequency blotches and grain."""
    base = np.array([228, 214, 182], np.float32) + rng.normal(0, 8, 3).astype(np.float32)
    small = rng.normal(0, 1, (max(2, h // 64), max(2, w // 64), 1)).astype(np.float32)
    blot = np.asarray(Image.fromarray(((small[..., 0] + 3) * 40).clip(0, 255).astype(np.uint8)).resize(
        (w, h), Image.Resampling.BICUBIC), np.float32)[..., None] / 40 - 3
    grain = rng.normal(0, 4, (h, w, 1)).astype(np.float32)
    return (base + blot * 6 + grain).clip(0, 255).astype(np.uint8)


def _distractors(img: Image.Image, rng: random.Random, count: int, scale: float) -> None:
    """Ink on the page that is not a face: brush lines, curves, columns of text-like marks, washes."""
    d = ImageDraw.Draw(img)
    w, h = img.size
    for _ in range(count):
        kind = rng.random()
        ink = tuple(int(rng.uniform(20, 90)) for _ in range(3))
        if kind < 0.4:                                   # a brush curve
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            pts = []
            ang = rng.uniform(0, 2 * math.pi)
            for _ in range(rng.randint(3, 8)):
                pts.append((x, y))
                ang += rng.uniform(-0.8, 0.8)
                step = rng.uniform(10, 60) * scale
                x, y = x + math.cos(ang) * step, y + math.sin(ang) * step
            d.line(pts, fill=ink, width=max(1, int(rng.uniform(1, 4) * scale)), joint="curve")
        elif kind < 0.7:                                 # a column of text-like marks
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            s = rng.uniform(4, 9) * scale
            for _ in range(rng.randint(4, 12)):
                d.rectangle([x, y, x + s, y + s * rng.uniform(0.5, 1.2)], fill=ink)
                y += s * 1.6
        elif kind < 0.9:                                 # a pale wash (clouds, ground)
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            r = rng.uniform(15, 60) * scale
            tone = tuple(int(c + rng.uniform(-40, 10)) for c in (200, 190, 160))
            d.ellipse([x - r, y - r * 0.5, x + r, y + r * 0.5], fill=tone)
        else:                                            # an outlined shape (a roof, a garment)
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            s = rng.uniform(20, 70) * scale
            d.polygon([(x, y), (x + s, y + s * 0.3), (x + s * 0.7, y + s), (x - s * 0.2, y + s * 0.8)],
                      outline=ink, width=max(1, int(2 * scale)))


def _overlaps(box, boxes, margin: int) -> bool:
    x, y, w, h = box
    return any(x < bx + bw + margin and bx < x + w + margin and y < by + bh + margin and by < y + h + margin
               for bx, by, bw, bh in boxes)


def synthetic_page(faces: list[Image.Image], size: tuple[int, int], n_faces: int = 4,
                   face_px: tuple[int, int] = (30, 60), seed: int = 0, off_page: int = 0,
                   distractors: int | None = None) -> SyntheticPage:
    """One page of `size` (width, height) with `n_faces` faces of `face_px` (min, max) pixels a side.

    The first `off_page` faces are placed across an edge of the page (left, top, right, bottom in
    turn), a third to a half of them outside. Faces never overlap. Deterministic in `seed`."""
    w, h = size
    if not faces:
        raise KaogenError("synthetic_page needs at least one face image")
    rng = random.Random(seed)
    img = Image.fromarray(_paper(w, h, np.random.default_rng(seed)))
    scale = max(w, h) / 400
    _distractors(img, rng, distractors if distractors is not None else int(10 * scale ** 1.2) + 6, scale)
    page = SyntheticPage(img)
    tries = 0
    while len(page.boxes) < n_faces:
        tries += 1
        if tries > 2000:
            raise KaogenError(f"cannot place {n_faces} faces of {face_px} px on a {w}x{h} page")
        s = rng.randint(face_px[0], face_px[1])
        k = len(page.boxes)
        if k < off_page:
            out = int(s * rng.uniform(1 / 3, 1 / 2))     # pixels of the face outside the page
            side = k % 4
            x = -out if side == 0 else w - s + out if side == 2 else rng.randint(0, w - s)
            y = -out if side == 1 else h - s + out if side == 3 else rng.randint(0, h - s)
        else:
            x, y = rng.randint(0, w - s), rng.randint(0, h - s)
        box = (x, y, s, s)
        if _overlaps(box, page.boxes, margin=4):
            continue
        i = rng.randrange(len(faces))
        face = faces[i].resize((s, s), Image.Resampling.LANCZOS)
        if rng.random() < 0.5:
            face = face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        img.paste(face.filter(ImageFilter.SMOOTH) if s < 40 else face, (x, y))   # paste clips at the edges
        page.boxes.append(box)
        page.faces.append(i)
    return page



def write_page_set(folder: str | Path, faces: list[Image.Image], n_pages: int, size: tuple[int, int] = (400, 300),
                   n_faces: tuple[int, int] = (3, 5), face_px: tuple[int, int] = (30, 60), seed: int = 0,
                   off_page: int = 1, test_every: int = 4) -> Path:
    """Synthetic pages in the layout of `kaogen data pages` (images/, pages.json with boxes clipped to
    the page), without a server: page k is `test` when k % test_every == test_every - 1, else `train`
    (in every split strategy). Returns the folder."""
    import json

    from kaogen.atomic import atomic_write_text
    from kaogen.data.pages import CATEGORIES, clip_xywh

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    images, annotations = [], []
    for k in range(n_pages):
        page = synthetic_page(faces, size, rng.randint(*n_faces), face_px, seed=seed * 100003 + k, off_page=off_page)
        name = f"page-{k:08d}"
        page.image.save(folder / "images" / f"{name}.jpg", quality=95)
        side = "test" if k % test_every == test_every - 1 else "train"
        images.append({"id": k + 1, "file_name": f"images/{name}.jpg", "width": size[0], "height": size[1],
                       "full_width": size[0], "full_height": size[1], "name": name, "work": "synthetic",
                       "splits": {s: side for s in ("by-page", "by-work", "within-work")}})
        for box, face in zip(page.boxes, page.faces):
            b = clip_xywh(box, *size)
            annotations.append({"id": len(annotations) + 1, "image_id": k + 1, "category_id": 1, "bbox": list(b),
                                "area": b[2] * b[3], "iscrowd": 0, "kaokore_index": -1, "sample": face})
    coco = {"info": {"description": "synthetic pages (kaogen.detect.synthetic)", "long_side": max(size)},
            "licenses": [], "images": images, "annotations": annotations, "categories": CATEGORIES}
    atomic_write_text(folder / "pages.json", json.dumps(coco) + "\n")
    return folder


def main(argv: list[str] | None = None) -> None:
    """`python -m kaogen.detect.synthetic OUT [--pages N] [--size WxH] [--faces MIN,MAX] [--face-px MIN,MAX]
    [--seed S] [--samples DIR]`: a page set for `kaogen train-detector` (every 4th page is test)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m kaogen.detect.synthetic", description=main.__doc__)
    p.add_argument("out")
    p.add_argument("--pages", type=int, default=48)
    p.add_argument("--size", default="400x300")
    p.add_argument("--faces", default="3,5")
    p.add_argument("--face-px", default="30,60")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--samples", default=str(Path(__file__).resolve().parents[3] / "shared" / "kaokore" / "samples"))
    a = p.parse_args(argv)
    w, h = (int(v) for v in a.size.split("x"))
    nf = tuple(int(v) for v in a.faces.split(","))
    px = tuple(int(v) for v in a.face_px.split(","))
    write_page_set(a.out, load_faces(a.samples), a.pages, (w, h), nf, px, a.seed)
    print(f"{a.pages} pages in {a.out} ({a.out}/pages.json)")


if __name__ == "__main__":
    main()
