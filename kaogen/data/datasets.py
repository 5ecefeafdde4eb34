"""PyTorch datasets: a KaoKore root with labels, tags and splits; and any folder of images.

Items are dicts (collated by the default collate into batches):

    image        float32 (3, R, R) in [0, 1]  (R = `resolution`, or the file's own size)
    name         file name
    gender       int 0 male / 1 female           (when labels include gender)
    status       int 0 noble / 1 warrior / 2 incarnation / 3 commoner   (when labels include status)
    orientation, work, holder, period   the experts' tags (str, "" when absent)   (KaoKore only)
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from kaogen.data.metadata import image_dir, load_metadata
from kaogen.data.splits import DEFAULT_FRACTIONS, assign_splits
from kaogen.errors import KaogenError
from kaogen.images import list_images, open_rgb, pil_to_tensor

LABEL_CHOICES = ("gender", "status", "both", "none")
SPLIT_CHOICES = ("train", "dev", "test", "all")


def square_resize(img: Image.Image, resolution: int | None) -> Image.Image:
    """Centre-crop to a square and resize to `resolution` (None: unchanged)."""
    if resolution is None:
        return img
    w, h = img.size
    if w != h:
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return img


class KaoKoreDataset(torch.utils.data.Dataset):
    """Faces of a KaoKore root (see `kaogen data download`).

    Args:
        root:        KaoKore root folder (labels.csv, original_tags.txt, images_S/)
        split:       "train" | "dev" | "test" | "all"
        labels:      "gender" | "status" | "both" | "none"; faces lacking a requested label are left out
        size:        which download to read: ROOT/images_{size}/
        resolution:  resize every face to R x R (None keeps the file's size; Keio's are 200 px)
        strategy:    "official" | "by-work" | "within-work" (see kaogen.data.splits)
        seed, fractions: for the by-work / within-work strategies
        transform:   callable applied to the image tensor
        check:       decode every image up front and leave out (and count) the broken ones
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        labels: str = "both",
        size: int = 256,
        resolution: int | None = None,
        strategy: str = "official",
        seed: int = 0,
        fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
        transform: Callable | None = None,
        check: bool = False,
    ):
        if split not in SPLIT_CHOICES:
            raise KaogenError(f"unknown split {split!r}: use one of {', '.join(SPLIT_CHOICES)}")
        if labels not in LABEL_CHOICES:
            raise KaogenError(f"unknown labels {labels!r}: use one of {', '.join(LABEL_CHOICES)}")
        meta = load_metadata(root)
        self.root, self.labels, self.resolution, self.transform = Path(root), labels, resolution, transform
        self.folder = image_dir(root, size)
        self.problems = list(meta.problems)
        sides = assign_splits(meta.records, strategy, seed, fractions)
        want = {"gender", "status"} if labels == "both" else set() if labels == "none" else {labels}
        records = []
        for r in meta.records:
            if split != "all" and sides.get(r.image) != split:
                continue
            if ("gender" in want and r.gender is None) or ("status" in want and r.status is None):
                continue
            records.append(r)
        present = [r for r in records if (self.folder / r.image).is_file()]
        self.missing = len(records) - len(present)
        self.corrupt: list[str] = []
        if check and present:
            with ThreadPoolExecutor(4) as pool:
                ok = list(pool.map(_decodes, [self.folder / r.image for r in present]))
            self.corrupt = [r.image for r, good in zip(present, ok) if not good]
            present = [r for r, good in zip(present, ok) if good]
        if self.missing or self.corrupt:
            warnings.warn(
                f"KaoKore {split}: {self.missing} images missing and {len(self.corrupt)} broken in {self.folder} "
                f"(left out; `kaogen data verify --root {root}` lists them)",
                stacklevel=2,
            )
        if not present:
            raise KaogenError(f"no {split} images with labels={labels} found in {self.folder}")
        self.records = present

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        r = self.records[i]
        img = square_resize(open_rgb(self.folder / r.image), self.resolution)
        x = pil_to_tensor(img)
        if self.transform is not None:
            x = self.transform(x)
        item = {"image": x, "name": r.image}
        if self.labels in ("gender", "both"):
            item["gender"] = r.gender
        if self.labels in ("status", "both"):
            item["status"] = r.status
        for key in ("orientation", "work", "holder", "period"):
            item[key] = r.tags.get(key, "")
        return item


class ImageFolderDataset(torch.utils.data.Dataset):
    """Every decodable image below `root` (any size or mode), centre-cropped and resized to R x R.

    Broken files are left out and counted in `self.skipped` (with a warning), never silently.
    """

    def __init__(self, root: str | Path, resolution: int | None = 256, transform: Callable | None = None):
        root = Path(root)
        if not root.is_dir():
            raise KaogenError(f"image folder {root} does not exist")
        paths = list_images(root)
        with ThreadPoolExecutor(4) as pool:
            ok = list(pool.map(_decodes, paths))
        self.paths = [p for p, good in zip(paths, ok) if good]
        self.skipped = [p for p, good in zip(paths, ok) if not good]
        if self.skipped:
            warnings.warn(f"{root}: {len(self.skipped)} unreadable images left out (first: {self.skipped[0].name})",
                          stacklevel=2)
        if not self.paths:
            raise KaogenError(f"no readable images in {root}")
        self.root, self.resolution, self.transform = root, resolution, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        x = pil_to_tensor(square_resize(open_rgb(self.paths[i]), self.resolution))
        if self.transform is not None:
            x = self.transform(x)
        return {"image": x, "name": str(self.paths[i].relative_to(self.root))}


def _decodes(path: Path) -> bool:
    try:
        open_rgb(path)
        return True
    except KaogenError:
        return False
