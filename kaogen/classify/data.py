"""Faces for the classifier, held in memory as uint8, and the sizes of a split per class.

    faces = load_faces(root, "status", side="train", strategy="by-work", resolution=128)
    faces.images   uint8 (N, 3, R, R)      faces.labels  int64 (N,) class indices (None with label=None)
    faces.records  the KaoKore records (name, gender, status, tags: work, period, ...)

Held in memory (KaoKore's 7,405 training faces at 256 px are 1.5 GB as uint8) so that an epoch is a
permutation of indices drawn from a seed: exact resume and per-process shards need no DataLoader
state. `split_sizes` reads the metadata only (no images): the faces per side and class of a split.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from kaogen.data.metadata import LABEL_NAMES, Record, load_metadata
from kaogen.data.splits import assign_splits
from kaogen.errors import KaogenError

SIDES = ("train", "dev", "test")


@dataclass
class Faces:
    images: torch.Tensor              # uint8 (N, 3, R, R)
    labels: torch.Tensor | None       # int64 (N,) in [0, C), None when loaded without a label
    records: list[Record]
    root: Path

    def __len__(self) -> int:
        return len(self.records)

    @property
    def names(self) -> list[str]:
        return [r.image for r in self.records]


def class_names(label: str) -> tuple[str, ...]:
    if label not in LABEL_NAMES:
        raise KaogenError(f"unknown label {label!r}: use one of {', '.join(LABEL_NAMES)}")
    return LABEL_NAMES[label]


def check_label(root: str | Path, label: str) -> None:
    """Refuse, in one line, a label that no face of the root carries."""
    class_names(label)
    meta = load_metadata(root)
    if not any(getattr(r, label) is not None for r in meta.records):
        raise KaogenError(f"{Path(root) / 'labels.csv'} has no {label} labels: this root cannot train or "
                          f"evaluate a {label} classifier")


def load_faces(root: str | Path, label: str | None, side: str = "train", strategy: str = "official",
               seed: int = 0, fractions=(0.8, 0.1, 0.1), resolution: int = 256, size: int = 256) -> Faces:
    """The faces of `side` ("train" | "dev" | "test" | "all") under `strategy`, resized to R x R.

    With a `label`, faces lacking it are left out and `labels` holds it; a side without any image
    is a one-line KaogenError (naming the folder), as is a label the root does not have."""
    import warnings

    from kaogen.data.datasets import KaoKoreDataset

    if label is not None:
        check_label(root, label)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = KaoKoreDataset(root, split=side, labels=label or "none", size=size, resolution=resolution,
                            strategy=strategy, seed=seed, fractions=tuple(fractions))
    for w in caught:                                  # missing images: said once, with the side's name
        warnings.warn(str(w.message), stacklevel=2)

    def read(i: int) -> torch.Tensor:
        return (ds[i]["image"] * 255).round_().to(torch.uint8)

    with ThreadPoolExecutor(4) as pool:
        images = torch.stack(list(pool.map(read, range(len(ds)))))
    labels = torch.tensor([getattr(r, label) for r in ds.records], dtype=torch.long) if label else None
    return Faces(images, labels, list(ds.records), Path(root))


def split_sizes(root: str | Path, label: str, strategy: str = "official", seed: int = 0,
                fractions=(0.8, 0.1, 0.1)) -> dict[str, list[int]]:
    """{"train" | "dev" | "test": faces per class} of a split, from the metadata alone."""
    names = class_names(label)
    meta = load_metadata(root)
    sides = assign_splits(meta.records, strategy, seed, tuple(fractions))
    withdrawn = meta.withdrawn
    out = {s: [0] * len(names) for s in SIDES}
    for r in meta.records:
        y, s = getattr(r, label), sides.get(r.image)
        if y is not None and s in out and r.image not in withdrawn:
            out[s][y] += 1
    return out


def format_split_sizes(sizes: dict[str, list[int]], label: str) -> str:
    names = class_names(label)
    w = max(len(n) for n in names + ("total",))
    lines = [f"{'':{w}}  " + "  ".join(f"{s:>6}" for s in SIDES)]
    for c, n in enumerate(names):
        lines.append(f"{n:{w}}  " + "  ".join(f"{sizes[s][c]:>6,}" for s in SIDES))
    lines.append(f"{'total':{w}}  " + "  ".join(f"{sum(sizes[s]):>6,}" for s in SIDES))
    return "\n".join(lines)
