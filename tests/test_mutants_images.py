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


# ---- a second mutation pass: Pillow's limit, every mode's scale, exact rounding, saving -------

import io  # noqa: E402
import struct  # noqa: E402
import warnings  # noqa: E402
import zlib  # noqa: E402
from fractions import Fraction  # noqa: E402

from kaogen.images import open_checked, open_rgb, to_rgb  # noqa: E402


def _png_header(w: int, h: int) -> bytes:
    """A PNG that is only its header (signature, IHDR, IEND): Image.open reads its size."""
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


def _gray(x) -> list[int]:
    return (x[0] * 255).round().int().flatten().tolist()


def test_separators_anywhere_in_the_pixel_limit(monkeypatch):
    """KAOGEN_MAX_PIXELS ignores '_' and ',' wherever they are (int() alone refuses '1__000')."""
    for env, want in (("1__000", 1000), ("_64_", 64), ("2,,5", 25)):
        monkeypatch.setenv("KAOGEN_MAX_PIXELS", env)
        assert max_pixels_limit() == want, env


def test_large_headers_meet_kaogens_limit_not_pillows(tmp_path, monkeypatch):
    """Between Pillow's warning (89 MP) and kaogen's limit (100 MP) a header opens without a
    warning; above Pillow's own refusal (179 MP) it opens when kaogen's limit allows it, from a
    file or from bytes in memory (the downloader's case); Pillow's limit for other code is left as
    it was; a refusal names the file or what the caller said it is."""
    monkeypatch.delenv("KAOGEN_MAX_PIXELS", raising=False)
    mid = tmp_path / "mid.png"
    mid.write_bytes(_png_header(9500, 10_000))                       # 95 MP
    big = tmp_path / "big.png"
    big.write_bytes(_png_header(20_000, 20_000))                     # 400 MP
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with open_checked(mid) as img:
            assert img.size == (9500, 10_000)
    for source in (big, io.BytesIO(big.read_bytes())):
        with open_checked(source, max_pixels=400_000_000) as img:
            assert img.size == (20_000, 20_000)
    with pytest.raises(Image.DecompressionBombError):               # Pillow still guards other code
        Image.open(big)
    for call, name in ((lambda: open_checked(big), str(big)), (lambda: load_rgb(big), str(big)),
                       (lambda: open_checked(io.BytesIO(big.read_bytes()), what="the body"), "the body"),
                       (lambda: open_checked(io.BytesIO(mid.read_bytes()), 1000, what="page 7"), "page 7")):
        with pytest.raises(ImageTooLarge) as e:
            call()
        assert str(e.value).startswith(f"{name} is "), str(e.value)


def _tiff(tmp_path, name: str, arr: np.ndarray, mode: str | None = None):
    p = tmp_path / name
    img = Image.fromarray(arr) if mode is None else Image.frombytes(mode, arr.shape[::-1], arr.tobytes())
    img.save(p)
    return p


def _nearest(v: int, top: int) -> int:
    """The 8-bit level nearest to v on a 0..top scale (halves up), in exact integers."""
    return (2 * v * 255 + top) // (2 * top)


def test_every_sixteen_bit_level_maps_to_the_nearest_eight_bit_one(tmp_path):
    """A 16-bit picture (PNG, or TIFF in either byte order) is on the 0..65535 scale: every one of
    the 65536 values loads to the nearest 8-bit level, and a dark one (all values <= 255) stays
    dark instead of being stretched."""
    v = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    want = [_nearest(int(k), 65535) for k in range(65536)]
    p = tmp_path / "all.png"
    Image.fromarray(v).save(p)
    assert _gray(load_rgb(p)) == want
    be = _tiff(tmp_path, "be.tif", v.astype(">u2"))                 # Motorola byte order: mode I;16B
    with Image.open(be) as img:
        assert img.mode == "I;16B"
    assert _gray(load_rgb(be)) == want
    dark = np.array([[0, 128, 255]], np.uint16)
    assert _gray(load_rgb(_tiff(tmp_path, "dark.tif", dark))) == [0, 0, 1]
    for mode, dt in (("I;16L", "<u2"), ("I;16N", "=u2"), ("I;16B", ">u2")):      # to_rgb of any 16-bit mode
        img = Image.frombytes(mode, (4, 1), np.array([0, 128, 51529, 65535], dt).tobytes())
        assert [to_rgb(img).getpixel((x, 0))[0] for x in range(4)] == [0, 0, 201, 255], mode


def test_integer_pictures_use_the_smallest_usual_scale(tmp_path):
    """32-bit integer pictures: up to 255 as 8-bit, up to 65535 on the 16-bit scale (whatever their
    largest value), beyond that scaled by their largest value; negatives are black."""
    cases = [([0, 100, 255], [0, 100, 255]),
             ([0, 256, 1000], [0, 1, 4]),                          # 16-bit scale, not stretched to 1000
             ([0, 128, 256], [0, 0, 1]),                           # 256 is already beyond 8 bits
             ([0, 51529, 65535], [0, 201, 255]),
             ([0, 51529, 65536], [0, 200, 255]),                   # beyond 16 bits: by the largest
             ([-100, 0, 200], [0, 0, 200])]
    for i, (vals, want) in enumerate(cases):
        p = _tiff(tmp_path, f"i{i}.tif", np.array([vals], np.int32))
        assert _gray(load_rgb(p)) == want, vals


def test_float_pictures_round_exactly_and_keep_their_scale(tmp_path):
    """Float pictures: in [0, 1] each value goes to its exactly nearest level (also values a hair
    below a half, where float32 arithmetic rounds up); above 1 they are on the 0..255 scale;
    NaN, infinities and negatives are black, without numpy warnings."""
    ties = []
    for k in range(0, 255, 17):
        half = np.float32((k + 0.5) / 255)
        below = np.nextafter(half, np.float32(0)) if Fraction(float(half)) * 255 >= Fraction(2 * k + 1, 2) else half
        ties.append(below)
    a = np.array([ties], np.float32)
    want = [int(Fraction(float(x)) * 255 + Fraction(1, 2)) for x in a.flatten()]
    assert want == list(range(0, 255, 17))
    assert _gray(load_rgb(_tiff(tmp_path, "ties.tif", a))) == want
    for i, (vals, want) in enumerate((([0.0, 1.5, 100.0], [0, 2, 100]), ([0.0, 1.5, 2.0], [0, 2, 2]))):
        assert _gray(load_rgb(_tiff(tmp_path, f"f{i}.tif", np.array([vals], np.float32)))) == want, vals
    odd = np.array([[-np.inf, np.inf, np.nan, -0.5, 0.5, 1.0]], np.float32)
    p = _tiff(tmp_path, "odd.tif", odd)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _gray(load_rgb(p)) == [0, 0, 0, 0, 128, 255]


def test_to_rgb_of_an_empty_picture():
    """A picture with no pixels converts to an empty RGB picture (no crash in the scale search)."""
    for mode in ("F", "I", "I;16"):
        out = to_rgb(Image.new(mode, (0, 3)))
        assert out.mode == "RGB" and out.size == (0, 3)


def test_every_alpha_mode_is_composited_over_white():
    """Premultiplied RGBa and La and palette-with-alpha PA: a clear pixel is white, an opaque one
    keeps its colour (La could not be converted at all: Pillow has no La -> RGBA)."""
    pa = Image.new("PA", (2, 1))
    pa.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    pa.putpixel((0, 0), (1, 0))
    pa.putpixel((1, 0), (1, 255))
    rgba = Image.new("RGBa", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (200, 10, 10, 255))
    la = Image.new("La", (2, 1), (0, 0))
    la.putpixel((1, 0), (80, 255))
    for img, opaque in ((pa, (200, 10, 10)), (rgba, (200, 10, 10)), (la, (80, 80, 80))):
        out = to_rgb(img)
        assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((1, 0)) == opaque, img.mode


def test_every_eight_bit_level_survives_tensor_to_uint8():
    """k/255 -> k for every level (the scale is 255, not 256)."""
    x = torch.arange(256, dtype=torch.float32).div(255).view(1, 1, 256)
    assert tensor_to_uint8(x)[0, :, 0].tolist() == list(range(256))


def test_load_rgb_resizes_like_the_training_set(tmp_path):
    """load_rgb(path, size) gives the pixels the dataset gives a face at that resolution (both
    LANCZOS), so a target at the training size looks like the training faces."""
    from kaogen.data.datasets import square_resize
    from kaogen.images import pil_to_tensor

    rng = np.random.RandomState(0)
    p = tmp_path / "face.png"
    Image.fromarray(rng.randint(0, 256, (24, 24, 3)).astype(np.uint8)).save(p)
    assert torch.equal(load_rgb(p, 10), pil_to_tensor(square_resize(open_rgb(p), 10)))


def test_save_image_of_arrays_and_webp_quality(tmp_path):
    """A float array (H, W, 3) in [0, 1] is saved as its 8-bit pixels, like a tensor; `quality`
    reaches WEBP and AVIF as it does JPEG (AVIF was written at Pillow's 75 whatever was asked)."""
    a = np.zeros((2, 3, 3))
    a[0, 0] = (1.0, 0.5, 0.2)
    with Image.open(save_image(tmp_path / "a.png", a)) as img:
        assert img.getpixel((0, 0)) == (255, 128, 51) and img.getpixel((1, 1)) == (0, 0, 0)
    noise = np.random.RandomState(1).randint(0, 256, (32, 32, 3)).astype(np.uint8)
    from PIL import features
    for fmt in ("WEBP", "AVIF") if features.check("avif") else ("WEBP",):
        ext = fmt.lower()
        hi, lo = save_image(tmp_path / f"hi.{ext}", noise), save_image(tmp_path / f"lo.{ext}", noise, quality=10)
        top = save_image(tmp_path / f"top.{ext}", noise, quality=100)
        assert lo.stat().st_size < hi.stat().st_size < top.stat().st_size, fmt     # 10 < 95 (default) < 100
        with Image.open(hi) as img:
            assert img.format == fmt


def test_a_grid_of_one_picture_is_padded_with_white():
    g = image_grid(torch.zeros(1, 3, 2, 2), 3)
    assert g.shape == (3, 2, 6) and (g[:, :, :2] == 0).all() and (g[:, :, 2:] == 1).all()
