"""PyTorch datasets: a KaoKore root with labels, tags and splits; and any folder of images.

Items are dicts (collated by the default collate into batches):

    image        float32 (3, R, R) in [0, 1]  (R = `resolution`, or the file's own size)
    name         file name
    gender       int 0 male / 1 female           (when labels include gender)
    status       int 0 noble / 1 warrior / 2 incarnation / 3 commoner   (when labels include status)
    orientation, work, holder, period   the experts' tags (str, "" when absent)   (KaoKore only)

`KaoKoreDataset(..., format="torchvision")` gives what the official loader and torchvision datasets
give instead: `(PIL.Image, int)`, `transform` applied to the PIL image and `target_transform` to the
label, so `x, y = ds[0]` and `transforms.ToTensor()` work unchanged.

Faces differ in size (v1.3's Keio faces are 200 px, the others 256): they batch only with
`resolution=R` (or a transform that resizes); a batch of mixed sizes is refused naming `resolution=`.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from kaogen.data.metadata import image_dir, load_metadata, stamp_problem
from kaogen.data.splits import DEFAULT_FRACTIONS, assign_splits
from kaogen.errors import KaogenError
from kaogen.images import ImageTooLarge, list_images, open_rgb, pil_to_tensor

LABEL_CHOICES = ("gender", "status", "both", "none")
SPLIT_CHOICES = ("train", "dev", "test", "all")
FORMAT_CHOICES = ("dict", "torchvision")


class FaceItem(dict):
    """One dict-form item; a batch of them whose images differ in size is refused in one line."""


class FaceSample(tuple):
    """One torchvision-form item `(image, target)`; batches like FaceItem."""


def _collate_faces(batch, *, collate_fn_map=None):
    from torch.utils.data._utils.collate import collate

    plain = [dict(b) if isinstance(b, dict) else tuple(b) for b in batch]
    try:
        out = collate(plain, collate_fn_map=collate_fn_map)
    except RuntimeError as e:
        if "stack expects each tensor to be equal size" not in str(e):
            raise
        raise KaogenError(
            f"cannot batch faces of different sizes ({str(e).split('but got', 1)[-1].strip()}): KaoKore faces are "
            f"not all 256x256 (v1.3's Keio faces are 200 px); pass resolution=R to KaoKoreDataset "
            f"(e.g. resolution=256), or a transform that resizes to one size") from None
    return out


def _register_collate() -> None:
    try:
        from torch.utils.data._utils.collate import default_collate_fn_map
    except ImportError:  # older torch: batches of mixed sizes fail with torch's own message
        return
    default_collate_fn_map.setdefault(FaceItem, _collate_faces)
    default_collate_fn_map.setdefault(FaceSample, _collate_faces)


_register_collate()


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
        transform:   callable applied to the image: the (3, R, R) tensor in the dict form, the PIL image
                     in the torchvision form
        target_transform: callable applied to the label (torchvision form only)
        format:      "dict" (default): dict items, see the module docstring; "torchvision": `(PIL.Image,
                     target)` like the official loader, target the int label ("both": (gender, status))
        check:       decode every image up front and leave out (and count) the broken ones

    Faces whose urls.txt line is empty (withdrawn, in v1.0 and v1.1) are left out, and counted in
    `withdrawn`, not in `missing`.
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
        target_transform: Callable | None = None,
        format: str = "dict",
    ):
        if split not in SPLIT_CHOICES:
            raise KaogenError(f"unknown split {split!r}: use one of {', '.join(SPLIT_CHOICES)}")
        if labels not in LABEL_CHOICES:
            raise KaogenError(f"unknown labels {labels!r}: use one of {', '.join(LABEL_CHOICES)}")
        if format not in FORMAT_CHOICES:
            raise KaogenError(f"unknown format {format!r}: use one of {', '.join(FORMAT_CHOICES)}")
        if format == "torchvision" and labels == "none":
            raise KaogenError("format='torchvision' returns (image, label): use labels='gender', 'status' or 'both'")
        if target_transform is not None and format != "torchvision":
            raise KaogenError("target_transform belongs to format='torchvision' (dict items carry every label)")
        if resolution is not None and (type(resolution) is not int or resolution < 1):
            raise KaogenError(f"resolution must be a positive whole number of pixels, not {resolution!r}")
        meta = load_metadata(root)
        mixed = stamp_problem(root)
        if mixed:
            warnings.warn(mixed, stacklevel=2)
        self.root, self.labels, self.resolution, self.transform = Path(root), labels, resolution, transform
        self.target_transform, self.format = target_transform, format
        self.folder = image_dir(root, size)
        self.problems = list(meta.problems)
        sides = assign_splits(meta.records, strategy, seed, fractions)
        want = {"gender", "status"} if labels == "both" else {labels}   # "none" asks for neither
        records = []
        withdrawn = meta.withdrawn
        self.withdrawn = 0
        for r in meta.records:
            if split != "all" and sides.get(r.image) != split:
                continue
            if ("gender" in want and r.gender is None) or ("status" in want and r.status is None):
                continue
            if r.image in withdrawn:
                self.withdrawn += 1
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

    def __getitem__(self, i: int):
        r = self.records[i]
        img = square_resize(open_rgb(self.folder / r.image), self.resolution)
        if self.format == "torchvision":
            target = (r.gender, r.status) if self.labels == "both" else getattr(r, self.labels)
            if self.transform is not None:
                img = self.transform(img)
            if self.target_transform is not None:
                target = self.target_transform(target)
            return FaceSample((img, target))
        x = pil_to_tensor(img)
        if self.transform is not None:
            x = self.transform(x)
        item = FaceItem(image=x, name=r.image)
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

    def __init__(self, root: str | Path, resolution: int | None = 256, transform: Callable | None = None,
                 max_pixels: int | None = None):
        root = Path(root)
        if not root.is_dir():
            raise KaogenError(f"image folder {root} does not exist")
        paths = list_images(root)
        self.max_pixels = max_pixels
        with ThreadPoolExecutor(4) as pool:   # a picture over the pixel limit is refused, not skipped
            ok = list(pool.map(lambda p: _decodes(p, max_pixels), paths))
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
        x = pil_to_tensor(square_resize(open_rgb(self.paths[i], self.max_pixels), self.resolution))
        if self.transform is not None:
            x = self.transform(x)
        return FaceItem(image=x, name=str(self.paths[i].relative_to(self.root)))


def _decodes(path: Path, max_pixels: int | None = None) -> bool:
    """False for a damaged file; ImageTooLarge (one line: the limit, how to raise it) goes up."""
    try:
        open_rgb(path, max_pixels)
        return True
    except ImageTooLarge:
        raise
    except KaogenError:
        return False
