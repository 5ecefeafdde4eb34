"""Reading any picture a user hands us, and writing images atomically.

`load_rgb` accepts every size, aspect and mode Pillow decodes (grayscale, RGBA/LA over white,
palette, 16-bit and float, CMYK), applies EXIF rotation, and raises a one-line KaogenError for
missing, truncated or non-image files. Tensor boundary: images are float32 (3, H, W) in [0, 1].
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from kaogen.atomic import atomic_path
from kaogen.errors import KaogenError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert a decoded PIL image of any mode to 8-bit RGB (alpha composited over `background`)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        if img.mode == "F":
            hi = max(float(a.max()), 1.0) if a.max() > 1.0 else 1.0
        img = Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, background + (255,))
        img = Image.alpha_composite(base, rgba)
    return img.convert("RGB")


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """Open, fully decode, EXIF-rotate and convert `path` to RGB; one-line error if it can't."""
    path = Path(path)
    if not path.exists():
        raise KaogenError(f"image {path} does not exist")
    if path.is_dir():
        raise KaogenError(f"{path} is a folder, not an image")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = to_rgb(img)
    except UnidentifiedImageError:
        raise KaogenError(f"{path} is not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated / corrupt data
        raise KaogenError(f"{path} is damaged or truncated: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if rgb.width < 1 or rgb.height < 1:
        raise KaogenError(f"{path} has no pixels")
    return rgb


def pil_to_tensor(img: Image.Image):
    """8-bit RGB PIL image -> float32 tensor (3, H, W) in [0, 1]."""
    import torch

    a = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div_(255.0)


def tensor_to_uint8(x) -> np.ndarray:
    """Float tensor (3, H, W) or (H, W, 3) in [0, 1] -> uint8 array (H, W, 3)."""
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


def load_rgb(path: str | os.PathLike, size: int | tuple[int, int] | None = None):
    """Load any image as float32 (3, H, W) in [0, 1]; `size` resizes (square int or (H, W))."""
    img = open_rgb(path)
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
        kw = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
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
