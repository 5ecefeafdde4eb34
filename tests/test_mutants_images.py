"""kaogen/images.py at its boundaries, found by mutation testing (benchmarks/mutation.sh): the pixel
limit (exactly at it is allowed), how the limit is read, rounding to 8 bits, sizes given as (H, W),
grids, image listing, and the EXIF rotation of a phone photo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from kaogen.errors import KaogenError
from kaogen.images import (DEFAULT_MAX_PIXELS, ImageTooLarge, check_pixels, image_grid, image_size, list_images,
                           load_rgb, max_pixels_limit, save_image, tensor_to_uint8)


def test_the_pixel_limit_allows_exactly_the_limit(monkeypatch):
    monkeypatch.delenv("KAOGEN_MAX_PIXELS", raising=False)
    check_pixels((10, 10), 100)
    with pytest.raises(ImageTooLarge):
        check_pixels((101, 1), 100)
    check_pixels((10_000, 10_000))                      # 100,000,000: the default limit itself
    with pytest.raises(ImageTooLarge):
        check_pixels((10_000, 10_001))


def test_how_the_pixel_limit_is_read(monkeypatch):
    monkeypatch.delenv("KAOGEN_MAX_PIXELS", raising=False)
    assert max_pixels_limit() == DEFAULT_MAX_PIXELS == 100_000_000
    assert max_pixels_limit(7) == 7 and max_pixels_limit(1) == 1
    for bad in (0, -3, True, 2.5, "9"):
        with pytest.raises(KaogenError):
            max_pixels_limit(bad)
    for env, want in (("2_000", 2000), ("1,500", 1500), (" 42 ", 42), ("1", 1), ("  ", DEFAULT_MAX_PIXELS)):
        monkeypatch.setenv("KAOGEN_MAX_PIXELS", env)
        assert max_pixels_limit() == want, env
        assert max_pixels_limit(5) == 5                 # the argument wins over the environment
    for env in ("0", "-1", "lots", "1.5"):
        monkeypatch.setenv("KAOGEN_MAX_PIXELS", env)
        with pytest.raises(KaogenError, match="KAOGEN_MAX_PIXELS"):
            max_pixels_limit()


def test_image_size_of_good_broken_and_large_files(tmp_path):
    p = tmp_path / "a.png"
    Image.new("RGB", (7, 3), (1, 2, 3)).save(p)
    assert image_size(p) == (7, 3) and image_size(p, max_pixels=21) == (7, 3) and image_size(p, max_pixels=20) is None
    (tmp_path / "b.png").write_bytes(p.read_bytes()[:30])
    assert image_size(tmp_path / "b.png") is None and image_size(tmp_path / "none.png") is None


def test_eight_bit_rounding_and_layouts():
    x = torch.tensor([0.0, 1.0, 0.5, 0.2 / 255, 0.6 / 255, -1.0, 2.0]).view(1, 1, 7).expand(3, 1, 7)
    assert tensor_to_uint8(x)[0, :, 0].tolist() == [0, 255, 128, 0, 1, 0, 255]
    assert tensor_to_uint8(x).shape == (1, 7, 3)                                     # CHW -> HWC
    assert tensor_to_uint8(torch.zeros(2, 7, 3)).shape == (2, 7, 3)                  # HWC stays
    one = tensor_to_uint8(torch.full((1, 2, 2), 1.0))
    assert one.shape == (2, 2, 3) and (one == 255).all()                             # gray -> RGB
    assert tensor_to_uint8(np.full((2, 2, 1), 0.5, np.float32)).shape == (2, 2, 3)


def test_sizes_are_height_then_width_and_saving(tmp_path):
    p = tmp_path / "a.png"
    Image.new("RGB", (8, 6), (10, 20, 30)).save(p)
    assert load_rgb(p).shape == (3, 6, 8)
    assert load_rgb(p, 4).shape == (3, 4, 4) and load_rgb(p, (5, 9)).shape == (3, 5, 9)
    x = load_rgb(p)
    assert x[:, 0, 0].mul(255).round().tolist() == [10, 20, 30]
    out = save_image(tmp_path / "b.PNG", x)
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (8, 6) and img.getpixel((0, 0)) == (10, 20, 30)
    save_image(tmp_path / "c.jpg", (np.ones((6, 8, 3)) * 200).astype(np.uint8), quality=100)
    with Image.open(tmp_path / "c.jpg") as img:
        assert img.format == "JPEG" and abs(img.getpixel((3, 3))[0] - 200) <= 1
    big, small = (tmp_path / "q95.jpg"), (tmp_path / "q10.jpg")
    noise = np.random.RandomState(0).randint(0, 256, (32, 32, 3)).astype(np.uint8)
    save_image(big, noise)
    save_image(small, noise, quality=10)
    assert small.stat().st_size < big.stat().st_size                                # quality reaches JPEG
    with pytest.raises(KaogenError, match="suffix"):
        save_image(tmp_path / "d.xyz", x)


def test_grid_fills_the_short_last_row_with_white():
    imgs = torch.zeros(5, 3, 2, 3)
    g = image_grid(imgs, 2)
    assert g.shape == (3, 3 * 2, 2 * 3)
    assert (g[:, 4:, 3:] == 1).all() and (g[:, 4:, :3] == 0).all() and (g[:, :4] == 0).all()
    assert image_grid(imgs, 5).shape == (3, 2, 15)


def test_list_images_recursive_sorted_without_hidden_or_other_files(tmp_path):
    for name in ("b.JPG", "a.png", "sub/c.webp", ".hidden.png", "sub/.x.tmp-1.jpg", "notes.txt", "d.tiff"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "dir.png").mkdir()
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == \
        ["a.png", "b.JPG", "d.tiff", "sub/c.webp"]


def test_a_phone_photo_is_turned_upright(tmp_path):
    """A photo stored sideways with EXIF orientation 6 (rotate 90 degrees clockwise to view) loads
    upright: taller than wide, its stored top-left corner at the top right."""
    stored = np.zeros((4, 6, 3), np.uint8)
    stored[0:2, 0:2] = (255, 0, 0)
    img = Image.fromarray(stored)
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "phone.jpg", exif=exif, quality=100)
    x = load_rgb(tmp_path / "phone.jpg")
    assert x.shape == (3, 6, 4)
    assert x[0, 0, 3] > 0.7 and x[0, 0, 0] < 0.3
