"""KaoKore metadata, IIIF URLs, splits and datasets, on the real v1.3 metadata and sample faces."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from kaogen.data.datasets import ImageFolderDataset, KaoKoreDataset
from kaogen.data.iiif import IIIFImageURL, image_url
from kaogen.data.inspect import info, verify
from kaogen.data.metadata import load_metadata, read_labels
from kaogen.data.splits import assign_splits
from kaogen.errors import KaogenError

KEIO = "https://iiif.lib.keio.ac.jp/iipsrv/NRE/110X-445-3-3/tif/3_004.tif/561,446,120,120/!200,200/0/default.jpg"
KYOTO = "https://rmda.kulib.kyoto-u.ac.jp/iiif/RB00013604/RB00013604_00003_0.ptif/1842,876,107,107/256,256/0/default.jpg"


def test_iiif_parse_from_the_right():
    u = IIIFImageURL.parse(KEIO)
    assert u.prefix == "https://iiif.lib.keio.ac.jp/iipsrv/NRE/110X-445-3-3/tif/3_004.tif"
    assert (u.region, u.size, u.rotation, u.quality, u.format) == ("561,446,120,120", "!200,200", "0", "default", "jpg")
    assert str(u) == KEIO
    assert image_url(KEIO, 512).endswith("/561,446,120,120/!512,512/0/default.jpg")
    assert image_url(KYOTO, 1024).endswith("/1842,876,107,107/1024,1024/0/default.jpg")
    assert image_url(KYOTO, mirror="http://127.0.0.1:8000/m") == (
        "http://127.0.0.1:8000/m/iiif/RB00013604/RB00013604_00003_0.ptif/1842,876,107,107/256,256/0/default.jpg")
    for bad in ("ftp://x/y", "http://host/too/short.jpg", "not a url"):
        with pytest.raises(KaogenError):
            IIIFImageURL.parse(bad)


def test_every_real_url_parses_and_keeps_its_region(v13):
    urls = (v13 / "urls.txt").read_text().split()
    assert len(urls) == 9683
    for url in urls:
        u = IIIFImageURL.parse(url)
        assert str(u) == url
        big = IIIFImageURL.parse(str(u.with_size(512)))
        assert (big.prefix, big.region, big.rotation) == (u.prefix, u.region, u.rotation)
        assert big.size == ("!512,512" if u.size.startswith("!") else "512,512")


def test_real_metadata_counts(v13):
    m = load_metadata(v13)
    assert len(m.records) == 9257 and m.problems == []
    assert Counter(r.split for r in m.records) == {"train": 7405, "dev": 926, "test": 926}
    assert sum(1 for r in m.records if r.gender == 1 and r.status == 1) == 94  # female warriors
    assert len(m.urls) == 9683 and len(m.urls) - len(m.records) == 426
    first = next(r for r in m.records if r.image == "00000000.jpg")
    assert first.tags["work"] == "病草子" and first.tags["orientation"] == "three-quarter"
    assert first.tags["holder"] == "京都大学"
    assert len({r.tags["work"] for r in m.records}) == 85


def test_splits_by_work_and_within_work(v13):
    m = load_metadata(v13)
    work = {r.image: r.tags["work"] for r in m.records}
    by = assign_splits(m.records, "by-work", seed=1)
    sides = {}
    for img, side in by.items():
        sides.setdefault(work[img], set()).add(side)
    assert all(len(s) == 1 for s in sides.values())                    # no work on two sides
    n = Counter(by.values())
    assert 0.05 < n["test"] / len(by) < 0.2 and 0.05 < n["dev"] / len(by) < 0.2
    assert by == assign_splits(m.records, "by-work", seed=1)            # deterministic
    within = assign_splits(m.records, "within-work", seed=1)
    sides = {}
    for img, side in within.items():
        sides.setdefault(work[img], set()).add(side)
    big = [w for w, c in Counter(work.values()).items() if c >= 3]
    assert all(sides[w] == {"train", "dev", "test"} for w in big)
    with pytest.raises(KaogenError, match="strategy"):
        assign_splits(m.records, "random")


def test_malformed_rows_are_skipped_and_counted(tmp_path):
    f = tmp_path / "labels.csv"
    f.write_text("image,gender,status,set\n00000001.jpg,0,1,train\n../etc/passwd.jpg,0,1,train\n"
                 "00000002.jpg,7,1,train\n00000003.jpg,0,1\n00000004.jpg,1,2,holdout\n00000001.jpg,0,1,dev\n")
    rows, problems = read_labels(f)
    assert [r[0] for r in rows] == ["00000001.jpg"]
    assert len(problems) == 5 and any("plain file name" in p for p in problems)
    with pytest.raises(KaogenError, match="does not exist"):
        load_metadata(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(KaogenError, match="no labels.csv"):
        load_metadata(tmp_path / "empty")


def test_kaokore_dataset_on_sample_root(sample_root):
    ds = KaoKoreDataset(sample_root, split="train", labels="gender", resolution=64)
    assert len(ds) == 6                  # rows 0-9 carry a gender; 6 of them are in train
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert 0 <= item["image"].min() and item["image"].max() <= 1
    assert item["gender"] in (0, 1) and item["work"] in ("病草子", "絵本徒然草", "源氏物語")
    status = KaoKoreDataset(sample_root, split="all", labels="status")
    assert sorted(int(r.image[:8]) for r in status.records) == list(range(10, 30))
    with pytest.raises(KaogenError, match="no all images with labels=both"):
        KaoKoreDataset(sample_root, split="all", labels="both")  # no sample face carries both labels
    batch = next(iter(torch.utils.data.DataLoader(status, batch_size=4)))
    assert batch["image"].shape == (4, 3, 256, 256) and batch["status"].shape == (4,)
    by = KaoKoreDataset(sample_root, split="test", labels="none", strategy="by-work", seed=0)
    assert len({r.tags["work"] for r in by.records}) == 1


def test_dataset_reports_missing_and_broken(sample_root):
    (sample_root / "images_256" / "00000000.jpg").unlink()
    data = (sample_root / "images_256" / "00000005.jpg").read_bytes()
    (sample_root / "images_256" / "00000005.jpg").write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match="1 images missing and 1 broken"):
        ds = KaoKoreDataset(sample_root, split="all", labels="none", check=True)
    assert len(ds) == 28
    r = verify(sample_root)
    assert r.missing == ["00000000.jpg"] and r.corrupt == ["00000005.jpg"] and not r.ok
    d = info(sample_root)
    assert d["labelled_images"] == 30 and d["images_on_disk"] == 29
    assert d["image_sizes"]["corrupt"] == 1 and d["splits"]["train"]["images"] == 18
    assert d["tags"]["orientation"] == {"profile": 15, "three-quarter": 15}


def test_image_folder_dataset_any_mode(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "b.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "c.gif")
    Image.fromarray((rng.integers(0, 65535, (30, 30))).astype(np.uint16)).save(tmp_path / "d.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "e.jpg")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = ImageFolderDataset(tmp_path, resolution=32)
    assert len(ds) == 5 and len(ds.skipped) == 1 and "1 unreadable" in str(w[0].message)
    for i in range(len(ds)):
        x = ds[i]["image"]
        assert x.shape == (3, 32, 32) and float(x.min()) >= 0 and float(x.max()) <= 1
    with pytest.raises(KaogenError, match="no readable images"):
        ImageFolderDataset(tmp_path / "sub")
