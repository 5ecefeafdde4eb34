"""Target images for training the agent: KaoKore roots and image folders, with random crops and flips.

Images are decoded once, kept at 1.5 S px as uint8, and sampled as random square crops (covering at
least `crop_scale` of a side), resized to S with antialiasing and flipped left-right half the time.
Every draw comes from the caller's torch.Generator, so a resumed run sees the same targets.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from kaogen.errors import KaogenError


def load_sources(paths: list[str | Path], size: int, split: str = "all") -> torch.Tensor:
    """Every image of every source (a KaoKore root, i.e. a folder with labels.csv, or any image folder)
    as uint8 (N, 3, size, size)."""
    from kaogen.data.datasets import ImageFolderDataset, KaoKoreDataset

    images = []
    for p in paths:
        p = Path(p)
        if not p.is_dir():
            raise KaogenError(f"training data {p} is not a folder")
        if (p / "labels.csv").is_file() and any(p.glob("images_*")):
            ds = KaoKoreDataset(p, split=split, labels="none", resolution=size)
        else:
            ds = ImageFolderDataset(p, resolution=size)
        images += [(ds[i]["image"] * 255).round().to(torch.uint8) for i in range(len(ds))]
    if not images:
        raise KaogenError("no training images found in " + ", ".join(map(str, paths)))
    return torch.stack(images)


class TargetSampler:
    def __init__(self, images: torch.Tensor, canvas: int, crop_scale: float = 0.7):
        """images: uint8 (N, 3, L, L), L >= canvas."""
        self.images, self.canvas, self.crop_scale = images, canvas, crop_scale

    def sample(self, n: int, g: torch.Generator) -> torch.Tensor:
        """n targets, float32 (n, 3, S, S) in [0, 1]."""
        N, _, L, _ = self.images.shape
        idx = torch.randint(N, (n,), generator=g)
        side = (L * (self.crop_scale + (1 - self.crop_scale) * torch.rand(n, generator=g))).long().clamp(1, L)
        u, v, flip = torch.rand(n, generator=g), torch.rand(n, generator=g), torch.rand(n, generator=g) < 0.5
        out = []
        for i in range(n):
            s = int(side[i])
            top, left = int(u[i] * (L - s)), int(v[i] * (L - s))
            crop = self.images[idx[i], :, top:top + s, left:left + s].float()[None] / 255
            crop = F.interpolate(crop, size=(self.canvas, self.canvas), mode="bilinear", antialias=True,
                                 align_corners=False)[0]
            out.append(crop.flip(-1) if flip[i] else crop)
        return torch.stack(out).clamp(0, 1)
