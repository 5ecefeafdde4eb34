"""Code written for the official KaoKore loader and torchvision runs on KaoKoreDataset(format="torchvision")."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from kaogen.data.datasets import KaoKoreDataset
from kaogen.errors import KaogenError

transforms = pytest.importorskip("torchvision.transforms")


@pytest.fixture
def mixed_root(sample_root):
    """The sample root with faces 10, 13, 16, ... at 200 px, as v1.3's Keio faces are."""
    for i in range(10, 30, 3):
        p = sample_root / "images_256" / f"{i:08d}.jpg"
        Image.open(p).resize((200, 200)).save(p)
    return sample_root


def test_torchvision_form_matches_the_official_loader(mixed_root):
    to_tensor = transforms.Compose([transforms.Resize((64, 64)), transforms.ToTensor(),
                                    transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    ds = KaoKoreDataset(mixed_root, split="all", labels="status", format="torchvision", transform=to_tensor)
    x, y = ds[0]                                            # as with the official loader
    assert isinstance(x, torch.Tensor) and x.shape == (3, 64, 64) and float(x.min()) < 0    # Normalize ran
    assert type(y) is int and y == 0 and ds.records[0].image == "00000010.jpg"          # 10-14 noble
    raw = KaoKoreDataset(mixed_root, split="all", labels="status", format="torchvision")
    img, _ = raw[0]
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (200, 200)
    seen = []
    tt = KaoKoreDataset(mixed_root, split="all", labels="status", format="torchvision", transform=to_tensor,
                        target_transform=lambda t: seen.append(t) or torch.tensor(t * 10))
    assert int(tt[5][1]) == 10 and seen == [1]                                          # 15-19 warrior
    xb, yb = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, shuffle=False)))
    assert xb.shape == (8, 3, 64, 64) and yb.tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    assert KaoKoreDataset(mixed_root, split="all", labels="gender", format="torchvision")[0][1] == 0  # 0-4 male
    with pytest.raises(KaogenError, match="labels='gender', 'status'"):
        KaoKoreDataset(mixed_root, split="all", labels="none", format="torchvision")
    with pytest.raises(KaogenError, match="unknown format"):
        KaoKoreDataset(mixed_root, split="all", labels="status", format="tuple")
    assert isinstance(KaoKoreDataset(mixed_root, split="all", labels="status")[0], dict)   # dict stays the default


@pytest.mark.parametrize("fmt", ["dict", "torchvision"])
def test_faces_of_mixed_sizes_batch_only_with_resolution(mixed_root, fmt):
    kw = {"transform": transforms.ToTensor()} if fmt == "torchvision" else {}
    ds = KaoKoreDataset(mixed_root, split="all", labels="status", format=fmt, **kw)
    with pytest.raises(KaogenError, match=r"different sizes .*200.*resolution=") as e:
        next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert "\n" not in str(e.value)
    ds = KaoKoreDataset(mixed_root, split="all", labels="status", format=fmt, resolution=128, **kw)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    image = batch["image"] if fmt == "dict" else batch[0]
    assert image.shape == (4, 3, 128, 128)
