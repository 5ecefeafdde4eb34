"""Faces that look alike: the k nearest faces of a root to a query, by the classifier's embedding.

    res = find_similar(clf, "kaokore", "kaokore/images_256/00000042.jpg", k=12, other_works=True)
    res.neighbours      [Neighbour(name, work, period, gender, status, similarity), ...], nearest first
    contact_sheet(res, "sheet.png")       the query, then its neighbours with their work, period, labels

Embedding: the input of the classifier's head (its penultimate features), L2-normalised; similarity
is the cosine (1 for the same picture). A status or gender classifier's features group faces by what
that label needs (hairstyles, headgear, drawing style), which is the comparison art historians
make with the Collection of Facial Expressions; an ImageNet-pretrained network fine-tuned on
KaoKore gives the most general features of the options kaogen has.

Cache: the embeddings of a whole root are computed once and kept beside the run,
CHECKPOINT_FOLDER/embeddings/ROOT_ID.pt, with a key made of the checkpoint file's SHA-256, the
root's labels.csv and original_tags.txt digests and every image's name, size and modification
time: a new checkpoint or changed data recompute them (`SimilarResult.cache_hit` says which).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from kaogen.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from kaogen.classify.bundle import Classifier
from kaogen.classify.data import load_faces
from kaogen.data.metadata import GENDERS, STATUSES, Record, file_digest, image_dir, load_metadata
from kaogen.errors import KaogenError
from kaogen.images import list_images, open_rgb, pil_to_tensor, save_image

CACHE_KIND = "classifier-embeddings"


@dataclass
class Neighbour:
    name: str
    work: str
    period: str
    gender: str | None
    status: str | None
    similarity: float
    path: Path

    def to_dict(self) -> dict:
        return {"name": self.name, "work": self.work, "period": self.period, "gender": self.gender,
                "status": self.status, "similarity": self.similarity, "path": str(self.path)}


@dataclass
class SimilarResult:
    query: str                      # what was asked for (a path or a face's name)
    query_name: str
    query_work: str                 # "" when unknown
    query_picture: torch.Tensor     # (3, R, R) in [0, 1]
    neighbours: list[Neighbour]
    cache: Path | None
    cache_hit: bool
    other_works: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"query": self.query, "query_name": self.query_name, "query_work": self.query_work,
                "other_works": self.other_works, "cache": str(self.cache) if self.cache else None,
                "cache_hit": self.cache_hit, "neighbours": [n.to_dict() for n in self.neighbours]}


# ----------------------------------------------------------------------------------- embeddings of a root
def cache_key(clf: Classifier, root: Path, size: int) -> str:
    """What the embeddings depend on: the checkpoint's bytes, the metadata, each image's name, size, mtime."""
    h = hashlib.sha256()
    h.update(f"kaogen-embeddings-1|{clf.resolution}|{size}|".encode())
    path = getattr(clf, "path", None)
    h.update((file_digest(path) if path is not None else _weights_digest(clf)).encode())
    for name in ("labels.csv", "original_tags.txt"):
        h.update(f"|{name}:{file_digest(root / name)}".encode())
    for p in list_images(image_dir(root, size)):
        st = p.stat()
        h.update(f"|{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _weights_digest(clf: Classifier) -> str:
    h = hashlib.sha256()
    for k, v in clf.net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_path(clf: Classifier, root: Path) -> Path | None:
    path = getattr(clf, "path", None)
    if path is None:
        return None
    root_id = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return Path(path).parent / "embeddings" / f"{root_id}.pt"


def root_embeddings(clf: Classifier, root: str | Path, size: int | None = None) -> tuple[list[str], torch.Tensor, Path | None, bool]:
    """(face names, embeddings (N, D) float32 unit rows, cache file, whether the cache was reused)."""
    root = Path(root)
    size = size or clf.config.get("size", 256)
    key = cache_key(clf, root, size)
    where = cache_path(clf, root)
    if where is not None and where.is_file():
        try:
            ck = load_checkpoint(where, kind=CACHE_KIND)
            if ck.config.get("key") == key:
                return list(ck.meta["names"]), ck.state["embeddings"], where, True
        except KaogenError:
            pass                                       # a damaged cache is recomputed
    faces = load_faces(root, None, "all", resolution=clf.resolution, size=size)
    emb = clf.embed(faces.images)
    if where is not None:
        try:
            where.parent.mkdir(exist_ok=True)
            save_checkpoint(where, Checkpoint(CACHE_KIND, {"key": key, "root": str(root.resolve())},
                                              {"embeddings": emb}, {"names": faces.names}))
        except OSError as e:
            warnings.warn(f"embeddings not cached ({where}: {e})", stacklevel=2)
    return faces.names, emb, where, False


# ----------------------------------------------------------------------------------- the query
def _resolve_query(root: Path, size: int, image: str) -> tuple[str, Path, bool]:
    """(name, path, inside the root) of the query: a picture's path, or a face's name in the root."""
    folder = image_dir(root, size)
    p = Path(image)
    if p.is_file():
        inside = p.resolve().parent == folder.resolve()
        return p.name, p, inside
    if (folder / image).is_file() and "/" not in image:
        return image, folder / image, True
    raise KaogenError(f"{image} is neither a picture nor the name of a face in {folder}")


def find_similar(clf: Classifier, root: str | Path, image: str, k: int = 12, other_works: bool = False,
                 work: str | None = None) -> SimilarResult:
    """The k faces of `root` nearest to `image`, nearest first; `other_works` leaves out the query's work."""
    root = Path(root)
    size = clf.config.get("size", 256)
    meta = load_metadata(root)
    records: dict[str, Record] = {r.image: r for r in meta.records}
    name, path, inside = _resolve_query(root, size, image)
    names, emb, where, hit = root_embeddings(clf, root, size)
    index = {n: i for i, n in enumerate(names)}
    picture = clf.prepare(open_rgb(path))                                   # (3, R, R) in [0, 1]
    if inside and name in index:
        q = emb[index[name]]
    else:
        q = clf.embed(picture[None])[0]
    query_work = work if work is not None else (records[name].tags.get("work", "") if inside and name in records else "")
    if other_works and not query_work:
        raise KaogenError(f"--other-works needs the query's work: {image} is not a face of {root} with a work tag; "
                          f"pass --work NAME")
    sims = emb @ q                                                           # (N,) cosine similarities
    keep = torch.ones(len(names), dtype=torch.bool)
    if other_works:
        keep = torch.tensor([records[n].tags.get("work", "") != query_work if n in records else True for n in names])
    order = [i for i in torch.argsort(sims, descending=True, stable=True).tolist() if keep[i]][:k]
    folder = image_dir(root, size)
    out = []
    for i in order:
        r = records.get(names[i])
        out.append(Neighbour(names[i], r.tags.get("work", "") if r else "", r.tags.get("period", "") if r else "",
                             GENDERS[r.gender] if r and r.gender is not None else None,
                             STATUSES[r.status] if r and r.status is not None else None,
                             float(sims[i]), folder / names[i]))
    return SimilarResult(image, name, query_work, picture, out, where, hit, other_works)


# ----------------------------------------------------------------------------------- the contact sheet
FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf",
    "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",
    "/usr/share/fonts/truetype/takao-gothic/TakaoPGothic.ttf",
    "/System/Library/Fonts/Hiragino Sans GB.ttc",
    "C:/Windows/Fonts/msgothic.ttc",
)


def caption_font(size: int = 11):
    """A font with Japanese glyphs ($KAOGEN_FONT, then the usual system paths), else None."""
    import os

    for p in ([os.environ["KAOGEN_FONT"]] if os.environ.get("KAOGEN_FONT") else []) + list(FONT_CANDIDATES):
        if Path(p).is_file():
            try:
                return ImageFont.truetype(p, size)
            except OSError:
                continue
    return None


def contact_sheet(res: SimilarResult, out: str | Path, tile: int = 128, columns: int = 6) -> Path:
    """The query (left) and its neighbours in a grid, each with rank, similarity, work, period and labels.

    Work names are Japanese: without a font that has Japanese glyphs ($KAOGEN_FONT), a work is
    captioned `work #N` and SHEET.json beside the PNG gives every caption in full."""
    out = Path(out)
    jp = caption_font()
    font = jp or ImageFont.load_default(11)
    works = sorted({n.work for n in res.neighbours} | {res.query_work})

    def work_text(w: str) -> str:
        if not w:
            return "work ?"
        return w if jp or w.isascii() else f"work #{works.index(w)}"

    def period_text(p: str) -> str:
        return "period ?" if not p else p if jp or p.isascii() else "period: see .json"

    line_h, lines = 13, 4
    cap_h = line_h * lines + 6
    rows = max(1, -(-len(res.neighbours) // columns))
    W = tile + 24 + columns * (tile + 8)
    H = 22 + rows * (tile + cap_h)
    sheet = Image.new("RGB", (W, H), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    title = f"{len(res.neighbours)} nearest to {res.query_name}" + (" (other works only)" if res.other_works else "")
    d.text((4, 4), title, fill=(0, 0, 0), font=ImageFont.load_default(12))

    def paste(picture: torch.Tensor, x: int, y: int, caption: list[str]):
        img = Image.fromarray(np.clip(picture.permute(1, 2, 0).numpy() * 255 + 0.5, 0, 255).astype(np.uint8))
        sheet.paste(img.resize((tile, tile), Image.Resampling.LANCZOS), (x, y))
        for li, text in enumerate(caption[:lines]):
            d.text((x, y + tile + 3 + li * line_h), text, fill=(0, 0, 0), font=font)

    paste(res.query_picture, 4, 22, ["query", work_text(res.query_work)[:20]])
    captions = []
    for i, n in enumerate(res.neighbours):
        x = tile + 24 + (i % columns) * (tile + 8)
        y = 22 + (i // columns) * (tile + cap_h)
        labels = " / ".join(v for v in (n.gender, n.status) if v) or "unlabelled"
        cap = [f"{i + 1}. {n.name}  {n.similarity:.3f}", work_text(n.work)[:20], period_text(n.period)[:20], labels]
        paste(pil_to_tensor(open_rgb(n.path)), x, y, cap)
        captions.append({"rank": i + 1, **n.to_dict()})
    save_image(out, np.asarray(sheet))
    from kaogen.atomic import atomic_write_text

    atomic_write_text(out.with_suffix(".json"), json.dumps({**res.to_dict(), "neighbours": captions},
                                                           indent=2, ensure_ascii=False) + "\n")
    return out
