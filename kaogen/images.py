"""Reading any picture a user hands us, and writing images atomically.

`load_rgb` accepts every size, aspect and mode Pillow decodes (grayscale, RGBA/LA over white,
palette, 16-bit and float, CMYK), applies EXIF rotation, and raises a one-line KaogenError for
missing, truncated or non-image files. Tensor boundary: images are float32 (3, H, W) in [0, 1].

Pixel limit: a picture with more than `max_pixels` pixels (default 100,000,000; the environment
variable KAOGEN_MAX_PIXELS or the `max_pixels=` argument raise it) is refused from its header,
before anything is decoded, so a few-KB "decompression bomb" never allocates its gigabytes.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from kaogen.atomic import atomic_path
from kaogen.errors import KaogenError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_ENV = "KAOGEN_MAX_PIXELS"
_PIL_LIMIT_LOCK = threading.Lock()


class ImageTooLarge(KaogenError):
    """A picture over the pixel limit (refused from its header, never decoded)."""


def max_pixels_limit(max_pixels: int | None = None) -> int:
    """The pixel limit in force: `max_pixels`, else $KAOGEN_MAX_PIXELS, else DEFAULT_MAX_PIXELS."""
    if max_pixels is None:
        env = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not env:
            return DEFAULT_MAX_PIXELS
        try:
            max_pixels = int(env.replace("_", "").replace(",", ""))
        except ValueError:
            raise KaogenError(f"{MAX_PIXELS_ENV}={env!r} is not a whole number of pixels") from None
        if max_pixels < 1:
            raise KaogenError(f"{MAX_PIXELS_ENV}={env!r} must be a positive number of pixels")
        return max_pixels
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise KaogenError(f"max_pixels must be a positive whole number, not {max_pixels!r}")
    return max_pixels


def check_pixels(size: tuple[int, int], max_pixels: int | None = None, what: str = "image") -> None:
    """Raise ImageTooLarge when a (width, height) is over the pixel limit."""
    limit = max_pixels_limit(max_pixels)
    w, h = size
    if w * h > limit:
        raise ImageTooLarge(
            f"{what} is {w}x{h} = {w * h:,} pixels, over kaogen's limit of {limit:,} "
            f"(a decompression bomb?): to read it anyway set {MAX_PIXELS_ENV}={w * h} "
            f"or pass max_pixels={w * h}"
        )


def open_checked(source, max_pixels: int | None = None, what: str | None = None) -> Image.Image:
    """`Image.open` (lazy: header only) with kaogen's pixel limit instead of Pillow's.

    Pillow's own check warns above 89 MP and refuses above 179 MP whatever kaogen's limit is; here
    the header's size is held against `max_pixels_limit(max_pixels)` before any pixel is decoded.
    The caller closes the image (or uses it as a context manager).
    """
    what = what or str(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(source)
        except Image.DecompressionBombError:
            if hasattr(source, "seek"):
                source.seek(0)
            with _PIL_LIMIT_LOCK:          # Pillow's limit is global: lift it only for this header read
                saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
                try:
                    img = Image.open(source)
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
    try:
        check_pixels(img.size, max_pixels, what)
    except KaogenError:
        img.close()
        raise
    return img


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert a decoded PIL image of any mode to 8-bit RGB (alpha composited over `background`)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        top = float(a.max()) if a.size else 0.0
        if img.mode.startswith("I;16"):
            hi = 65535.0
        elif img.mode == "F" and top <= 1.0:
            hi = 1.0                                   # float images in [0, 1]
        else:                                          # the smallest usual range that holds the data
            hi = 255.0 if top <= 255 else 65535.0 if top <= 65535 else top
        img = Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = (img.convert("LA") if img.mode == "La" else img).convert("RGBA")   # Pillow has no La -> RGBA
        base = Image.new("RGBA", rgba.size, background + (255,))
        img = Image.alpha_composite(base, rgba)
    return img.convert("RGB")


def open_rgb(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
    """Open, fully decode, EXIF-rotate and convert `path` to RGB; one-line error if it can't.

    Pictures over the pixel limit (see `max_pixels_limit`) are refused before decoding.
    """
    path = Path(path)
    if not path.exists():
        raise KaogenError(f"image {path} does not exist")
    if path.is_dir():
        raise KaogenError(f"{path} is a folder, not an image")
    if not os.access(path, os.R_OK):
        raise KaogenError(f"image {path} is not readable (permission denied)")
    try:
        with open_checked(path, max_pixels) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = to_rgb(img)
    except UnidentifiedImageError:
        raise KaogenError(f"{path} is not an image Pillow can read") from None
    except MemoryError:
        raise KaogenError(f"{path} is too large to decode in the memory available "
                          f"(lower {MAX_PIXELS_ENV} to refuse such files up front)") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated / corrupt data
        raise KaogenError(f"{path} is damaged or truncated: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if rgb.width < 1 or rgb.height < 1:
        raise KaogenError(f"{path} has no pixels")
    return rgb


def image_size(path: str | os.PathLike, max_pixels: int | None = None) -> tuple[int, int] | None:
    """(width, height) when `path` decodes completely within the pixel limit, else None."""
    try:
        with open_checked(path, max_pixels) as img:
            img.load()
            return img.size
    except Exception:
        return None


def pil_to_tensor(img: Image.Image):
    """8-bit RGB PIL image -> float32 tensor (3, H, W) in [0, 1]."""
    import torch

    a = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div_(255.0)


def tensor_to_uint8(x) -> np.ndarray:
    """Float tensor (3, H, W) or (1, H, W) (channels first, kaogen's tensor layout), or an array
    (H, W, 3) / (H, W, 1), in [0, 1] -> uint8 array (H, W, 3). A tensor whose first axis is 1 or 3 is
    always read as channels first."""
    import torch

    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu()
        if x.dim() == 3 and x.shape[0] in (1, 3):
            x = x.permute(1, 2, 0)
        x = x.numpy()
    a = np.clip(np.asarray(x, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return a


def load_rgb(path: str | os.PathLike, size: int | tuple[int, int] | None = None, max_pixels: int | None = None):
    """Load any image as float32 (3, H, W) in [0, 1]; `size` resizes (square int or (H, W)).

    `max_pixels` raises (or lowers) the pixel limit for this call; default $KAOGEN_MAX_PIXELS or 100 MP.
    """
    img = open_rgb(path, max_pixels)
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
        img = img.resize((w, h), Image.Resampling.LANCZOS)
    return pil_to_tensor(img)


def save_image(path: str | os.PathLike, x, quality: int = 95) -> Path:
    """Write a (3, H, W) tensor in [0, 1] or a uint8 array atomically; format from the suffix."""
    path = Path(path)
    a = x if isinstance(x, np.ndarray) and x.dtype == np.uint8 else tensor_to_uint8(x)
    img = Image.fromarray(a)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise KaogenError(f"cannot save {path}: unknown image suffix {path.suffix!r}")
    with atomic_path(path) as tmp:
        kw = {"quality": quality} if fmt in ("JPEG", "WEBP", "AVIF") else {}
        img.save(tmp, format=fmt, **kw)
    return path


def image_grid(imgs, columns: int):
    """(N, 3, H, W) in [0, 1] -> one (3, rows * H, columns * W) grid, short last row filled with white."""
    import torch

    pad = [torch.ones_like(imgs[0])]
    rows = [torch.cat(list(imgs[i:i + columns]) + pad * (columns - len(imgs[i:i + columns])), 2)
            for i in range(0, len(imgs), columns)]
    return torch.cat(rows, 1)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """All image files below `folder`, sorted (hidden files and temporaries ignored)."""
    folder = Path(folder)
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
