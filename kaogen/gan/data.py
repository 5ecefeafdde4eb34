"""Training images for the GAN, held in memory as uint8: a KaoKore root (with labels) or any folder.

Reals are drawn by index from a seeded generator (saved with the run, so a resumed run sees the
same sequence) and x-flipped half the time when asked.
"""

from __future__ import annotations

from pathlib import Path

import torch

from kaogen.errors import KaogenError

CLASS_NAMES = {"gender": ("male", "female"), "status": ("noble", "warrior", "incarnation", "commoner")}


def load_images(root: str | Path, resolution: int, cond: str = "none", split: str = "all") -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 (N, 3, R, R) and labels (N,) long (None when unconditional)."""
    from kaogen.data.datasets import ImageFolderDataset, KaoKoreDataset

    root = Path(root)
    if not root.is_dir():
        raise KaogenError(f"training data {root} is not a folder")
    kaokore = (root / "labels.csv").is_file() and any(root.glob("images_*"))
    if cond != "none" and not kaokore:
        raise KaogenError(f"--cond {cond} needs a KaoKore root with labels.csv; {root} is a plain image folder")
    if kaokore:
        ds = KaoKoreDataset(root, split=split, labels=cond if cond != "none" else "none", resolution=resolution)
    else:
        ds = ImageFolderDataset(root, resolution=resolution)
    if len(ds) == 0:
        raise KaogenError(f"no training images in {root}")
    first = ds[0]["image"]
    images = torch.empty((len(ds), *first.shape), dtype=torch.uint8)   # uint8 all along: 1/4 of float32
    labels = torch.empty(len(ds), dtype=torch.long) if cond != "none" else None
    for i in range(len(ds)):
        item = ds[i] if i else {"image": first, **({cond: ds[0][cond]} if labels is not None else {})}
        images[i] = (item["image"] * 255).round().to(torch.uint8)
        if labels is not None:
            labels[i] = item[cond]
    return images, labels


class RealSampler:
    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, num_classes: int, xflip: bool):
        self.images, self.labels, self.num_classes, self.xflip = images, labels, num_classes, xflip
        self.last_index = torch.zeros(0, dtype=torch.long)   # the indices of the last batch drawn

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, n: int, g: torch.Generator, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Reals (n, 3, R, R) float32 in [-1, 1] on `device` and one-hot labels (n, num_classes)
        ((n, 0) when unconditional).

        Indices and flips are drawn on the CPU by `g` (saved with the run); the batch travels as
        uint8 (a quarter of the bytes) and becomes float on the device."""
        idx = torch.randint(len(self.images), (n,), generator=g)
        self.last_index = idx
        u8 = self.images[idx].to(device, non_blocking=True)
        if self.xflip:
            flip = (torch.rand(n, generator=g) < 0.5).to(device, non_blocking=True)
            u8 = torch.where(flip[:, None, None, None], u8.flip(-1), u8)
        x = u8.float() / 127.5 - 1
        return x, self.onehot(idx).to(device, non_blocking=True)

    def onehot(self, idx: torch.Tensor) -> torch.Tensor:
        if self.labels is None:
            return torch.zeros(len(idx), 0)
        return torch.nn.functional.one_hot(self.labels[idx], self.num_classes).float()
