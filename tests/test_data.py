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


# ------------------------------------------------------------------------ user images: bombs, odd modes

def make_bomb(path, w: int = 20000, h: int = 20000) -> int:
    """A valid 1-bit PNG of w x h black pixels, written row by row (never held in memory): ~50 KB."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = bytes(1 + (w + 7) // 8)
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
           + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    path.write_bytes(png)
    return len(png)


def test_decompression_bomb_is_refused_from_its_header(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from PIL import ImageFile

    from kaogen.cli.main import cli
    from kaogen.images import load_rgb

    bomb = tmp_path / "bomb.png"
    assert make_bomb(bomb) < 100_000
    with pytest.raises(KaogenError) as e:
        load_rgb(bomb)
    msg = str(e.value)
    assert "20000x20000" in msg and "100,000,000" in msg and "KAOGEN_MAX_PIXELS" in msg and "max_pixels=" in msg
    # Below Pillow's own limits too: the header is checked before anything is decoded.
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or real_load(self))
    face = tmp_path / "faces" / "face.png"
    face.parent.mkdir()
    Image.new("RGB", (200, 100), (10, 20, 30)).save(face)
    monkeypatch.setenv("KAOGEN_MAX_PIXELS", "19999")
    with pytest.raises(KaogenError, match=r"200x100 = 20,000 pixels, over kaogen's limit of 19,999"):
        load_rgb(face)
    assert decoded == []
    with pytest.raises(KaogenError, match="KAOGEN_MAX_PIXELS=20000"):
        ImageFolderDataset(face.parent, resolution=32)     # refused, not skipped as "unreadable"
    assert decoded == []
    assert load_rgb(face, max_pixels=20_000).shape == (3, 100, 200)    # the argument raises the limit
    assert len(ImageFolderDataset(face.parent, resolution=32, max_pixels=20_000)) == 1
    monkeypatch.setenv("KAOGEN_MAX_PIXELS", "20000")
    assert load_rgb(face).shape == (3, 100, 200)                          # ... and so does the variable
    monkeypatch.setenv("KAOGEN_MAX_PIXELS", "lots")
    with pytest.raises(KaogenError, match="KAOGEN_MAX_PIXELS='lots' is not a whole number"):
        load_rgb(face)
    monkeypatch.delenv("KAOGEN_MAX_PIXELS")
    # The CLI: one line, exit 1, no traceback, nothing written.
    (tmp_path / "folder").mkdir()
    bomb.rename(tmp_path / "folder" / "bomb.png")
    with pytest.raises(KaogenError, match="20000x20000"):
        ImageFolderDataset(tmp_path / "folder")
    out = tmp_path / "out.gif"
    r = CliRunner().invoke(cli, ["paint", "--method", "l2p", str(tmp_path / "folder" / "bomb.png"), "-o", str(out)])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert len(r.output.strip().splitlines()) == 1 and r.output.startswith("Error: ")
    assert "KAOGEN_MAX_PIXELS" in r.output
    assert "Traceback" not in r.output and not out.exists() and not list(tmp_path.glob(".out*"))


def test_odd_images_load_to_sensible_rgb_or_are_refused(tmp_path):
    from kaogen.images import load_rgb, open_rgb

    ramp = np.tile(np.arange(0, 201, 8, dtype=np.uint8), (4, 1))                 # 4 x 26: 0, 8, ..., 200
    cases = {
        "cmyk.jpg": Image.new("CMYK", (8, 8), (0, 255, 255, 0)),                 # pure red in CMYK
        "gray16.png": Image.fromarray(np.full((8, 8), 32896, np.uint16)),       # 16-bit mid grey
        "float255.tif": Image.fromarray(ramp.astype(np.float32), "F"),           # float data in 0..255
        "float01.tif": Image.fromarray(ramp.astype(np.float32) / 255, "F"),     # float data in 0..1
        "int32.tif": Image.fromarray(ramp.astype(np.int32), "I"),
    }
    for name, img in cases.items():
        img.save(tmp_path / name)
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.paste(1, (0, 0, 4, 8))
    pal.save(tmp_path / "pal.png", transparency=0)                                  # right half transparent
    ex = Image.Exif()
    ex[0x0112] = 6                                                                  # "rotate 90 CW to view"
    Image.new("RGB", (40, 20), (0, 0, 255)).save(tmp_path / "exif.jpg", exif=ex)

    near = lambda px, want: all(abs(a - b) <= 6 for a, b in zip(px, want))  # noqa: E731
    assert near(open_rgb(tmp_path / "cmyk.jpg").getpixel((0, 0)), (255, 0, 0))
    assert open_rgb(tmp_path / "gray16.png").getpixel((0, 0)) == (128, 128, 128)
    for name in ("float255.tif", "int32.tif", "float01.tif"):                       # values kept, not stretched
        assert [open_rgb(tmp_path / name).getpixel((x, 0))[0] for x in (0, 10, 25)] == [0, 80, 200], name
    p = open_rgb(tmp_path / "pal.png")
    assert p.getpixel((0, 0)) == (0, 255, 0) and p.getpixel((7, 0)) == (255, 255, 255)   # over white
    assert load_rgb(tmp_path / "exif.jpg").shape == (3, 40, 20)
    data = (tmp_path / "exif.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("not a picture")
    for name, why in (("trunc.jpg", "damaged or truncated"), ("text.png", "not an image")):
        with pytest.raises(KaogenError, match=why) as e:
            load_rgb(tmp_path / name)
        assert "\n" not in str(e.value)


def test_labels_are_ascii_digits_only(tmp_path):
    """`str.isdigit` accepts other scripts' digits ("١" is U+0661, ARABIC-INDIC DIGIT ONE): a label cell
    holding one is refused like any other bad value, not read as 1 (found by mutation testing)."""
    from kaogen.data.metadata import read_labels

    p = tmp_path / "labels.csv"
    p.write_text("image,gender,status,set\n00000000.jpg,\u0661,0,train\n00000001.jpg,1,2,train\n", encoding="utf-8")
    rows, problems = read_labels(p)
    assert [r[0] for r in rows] == ["00000001.jpg"] and len(problems) == 1 and "not in 0..1" in problems[0]
