"""The page set of `kaogen data pages` (ROOT/pages/pages.json) as training and evaluation pages.

    pages = PageSet.load("kaokore/pages", split="by-page", subset="train")
    img, boxes = pages.item(0)       # float32 (3, H, W) in [0, 1]; float32 (N, 4) x0 y0 x1 y1 in its pixels
    pages.entries[0]                 # the COCO image entry (file_name, width, height, full_width, ...)

`split` is a page-split strategy of pages.json (`by-page`, `by-work`, `within-work`) or `all`
(every page, whatever the subset). Decoded pages are kept in a small cache.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import torch

from kaogen.errors import KaogenError

SPLITS = ("by-page", "by-work", "within-work", "all")
SUBSETS = ("train", "dev", "test", "all")


def read_coco(path: Path) -> dict:
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise KaogenError(f"{path} is not a readable COCO file: {str(e).splitlines()[0][:120]}") from None
    if not isinstance(d, dict) or not all(k in d for k in ("images", "annotations", "categories")):
        raise KaogenError(f"{path} is not a COCO file (needs images, annotations, categories)")
    return d


class PageSet:
    def __init__(self, folder: Path, coco: dict, entries: list[dict], cache: int = 64):
        self.folder, self.coco, self.entries = Path(folder), coco, entries
        by_image: dict[int, list] = {}
        for a in coco["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a["bbox"])
        self.boxes = []
        for e in entries:
            xywh = torch.tensor(by_image.get(e["id"], []), dtype=torch.float32).reshape(-1, 4)
            self.boxes.append(torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1))
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._cache_size = cache

    @classmethod
    def load(cls, folder: str | Path, split: str = "by-page", subset: str = "train", cache: int = 64) -> "PageSet":
        folder = Path(folder)
        path = folder / "pages.json" if folder.is_dir() else folder
        if not path.is_file():
            raise KaogenError(f"{folder} holds no pages.json: run `kaogen data pages --root ROOT` first")
        if split not in SPLITS:
            raise KaogenError(f"unknown page split {split!r}: use one of {', '.join(SPLITS)}")
        if subset not in SUBSETS:
            raise KaogenError(f"unknown subset {subset!r}: use one of {', '.join(SUBSETS)}")
        coco = read_coco(path)
        if split == "all" or subset == "all":
            entries = list(coco["images"])
        else:
            entries = [e for e in coco["images"] if e.get("splits", {}).get(split) == subset]
        return cls(path.parent, coco, entries, cache)

    def __len__(self) -> int:
        return len(self.entries)

    def image(self, i: int) -> torch.Tensor:
        """Page i as float32 (3, H, W) in [0, 1] (checked against its COCO size)."""
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        from kaogen.images import load_rgb

        e = self.entries[i]
        img = load_rgb(self.folder / e["file_name"])
        if (img.shape[2], img.shape[1]) != (e["width"], e["height"]):
            raise KaogenError(f"{self.folder / e['file_name']} is {img.shape[2]}x{img.shape[1]}, but pages.json says "
                              f"{e['width']}x{e['height']}: run `kaogen data pages` again")
        self._cache[i] = img
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return img

    def item(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.image(i), self.boxes[i]

    @property
    def long_side(self) -> int | None:
        return self.coco.get("info", {}).get("long_side")
