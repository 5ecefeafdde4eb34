"""IIIF Image API URLs: `{base}/{identifier}/{region}/{size}/{rotation}/{quality}.{format}`.

Identifiers may contain slashes (Keio's `NRE/110X-445-3-3/tif/3_004.tif`), so a URL is parsed from
the right: the last four path segments are region, size, rotation and quality.format; everything
before them is base + identifier, which we keep as one opaque prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import urlsplit, urlunsplit

from kaogen.errors import KaogenError


@dataclass(frozen=True)
class IIIFImageURL:
    prefix: str     # scheme://host/path/to/identifier (no trailing slash)
    region: str     # "full", "square", "x,y,w,h", "pct:..."
    size: str       # "256,256", "!200,200", "max", "full", "w,", ",h", "pct:n"
    rotation: str   # "0", "90", "!0", ...
    quality: str    # "default", "color", "gray", "bitonal"
    format: str     # "jpg", "png", ...

    @classmethod
    def parse(cls, url: str) -> "IIIFImageURL":
        url = url.strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise KaogenError(f"not an http(s) IIIF URL: {url!r}")
        segs = parts.path.rstrip("/").split("/")
        if len(segs) < 6 or "." not in segs[-1]:  # '', base..., identifier, region, size, rotation, quality.fmt
            raise KaogenError(f"not an IIIF Image API URL (need .../region/size/rotation/quality.format): {url!r}")
        quality, fmt = segs[-1].rsplit(".", 1)
        prefix = urlunsplit((parts.scheme, parts.netloc, "/".join(segs[:-4]), "", ""))
        return cls(prefix, segs[-4], segs[-3], segs[-2], quality, fmt)

    def __str__(self) -> str:
        return f"{self.prefix}/{self.region}/{self.size}/{self.rotation}/{self.quality}.{self.format}"

    def with_size(self, size: int) -> "IIIFImageURL":
        """The same region scaled to `size`: `S,S` for an exact size, `!S,S` for best-fit requests."""
        if size <= 0:
            raise KaogenError(f"image size must be positive, not {size}")
        return replace(self, size=f"!{size},{size}" if self.size.startswith("!") else f"{size},{size}")

    def with_mirror(self, mirror: str) -> "IIIFImageURL":
        """Replace scheme and host (keeping the path) with those of `mirror`, e.g. a local proxy."""
        m = urlsplit(mirror if "://" in mirror else f"http://{mirror}")
        if not m.netloc:
            raise KaogenError(f"--mirror must look like http://HOST[:PORT], not {mirror!r}")
        p = urlsplit(self.prefix)
        base = m.path.rstrip("/")
        return replace(self, prefix=urlunsplit((m.scheme, m.netloc, base + p.path, "", "")))


def image_url(url: str, size: int | None = None, mirror: str | None = None) -> str:
    """Rewrite one IIIF URL for `size` and `mirror` (either may be None)."""
    u = IIIFImageURL.parse(url)
    if size is not None:
        u = u.with_size(size)
    if mirror:
        u = u.with_mirror(mirror)
    return str(u)
