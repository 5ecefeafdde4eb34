"""`kaogen data pages`: the detection data set hidden in KaoKore's urls.txt.

Every urls.txt line asks an IIIF Image API server for one face: `PREFIX/x,y,w,h/SIZE/0/default.jpg`,
where PREFIX (base + identifier, parsed from the right) is one page scan. Grouping the lines by
PREFIX gives the pages and, in each, the faces' boxes in full-size page pixels.

For each page: read `PREFIX/info.json` (`width`, `height`; Image API 1, 2 or 3), fetch the page once
at full size (`full/full/0/default.jpg` for 1.x and 2.x, `full/max/0/default.jpg` for 3.0; a server
whose info.json declares maxWidth / maxHeight / maxArea may send less, scaled), check it against
info.json, scale it so that its long side is `long_side` pixels and map every face region onto it:

    sx, sy = w' / W, h' / H                       (W, H: info.json; w', h': the written page)
    bbox   = (x sx, y sy, w sx, h sy)             after clipping (x, y, w, h) to [0, W] x [0, H]

(v1.3 has regions that start at negative coordinates or run past the edge). Output, in ROOT/pages/:

    images/page-NNNNNNNN.jpg   one per page, named by the KaoKore number of its first face
    info/page-NNNNNNNN.json    what info.json said (resume needs no request for finished pages)
    pages.json                 COCO: info, images (+ full size, IIIF service, work, splits),
                               annotations (bbox, + KaoKore index, labels, work, full-size region),
                               categories [face]
    pages_report.json          counts and permanent failures (pages and faces), as the face downloader's

Splits of pages, never of faces (the official face splits put faces of one page on several sides):
`by-page` (pages at random), `by-work` (whole works), `within-work` (each work's pages split):
every image entry holds `splits: {strategy: train | dev | test}`.

Resumable and verified as `kaogen data download`: a page present, decodable and of the expected
size is not fetched again; writes are atomic; transient errors are retried with backoff; a page
that is not an image, too large to decode safely, whose info.json lies about its size, or a face
region outside its page, is a one-line permanent failure in the report, and the rest goes on.
"""

from __future__ import annotations

import io
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kaogen.atomic import atomic_path, atomic_write_text, clean_stale_temporaries
from kaogen.data.download import DownloadOptions, _get, _Permanent, _Transient, fetch_metadata, run_parallel, with_retries
from kaogen.data.iiif import IIIFImageURL
from kaogen.data.metadata import read_labels, read_stamp, read_tags, read_urls
from kaogen.data.splits import assign_splits
from kaogen.errors import KaogenError

PAGES_DIR = "pages"
COCO_FILE = "pages.json"
REPORT_FILE = "pages_report.json"
SPLIT_STRATEGIES = ("by-page", "by-work", "within-work")
CATEGORIES = [{"id": 1, "name": "face", "supercategory": "face"}]


@dataclass
class PagesOptions:
    root: str                       # KaoKore root (its urls.txt / labels.csv, or --metadata)
    long_side: int = 1333           # pages are scaled so that their long side is this many pixels
    workers: int = 4                # parallel connections
    mirror: str | None = None       # replaces scheme://host of every IIIF request
    metadata: str | None = None     # local metadata folder (copied into the root, as `data download`)
    out: str | None = None          # default ROOT/pages
    timeout: float = 60.0           # seconds per request (full pages are megabytes)
    retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    seed: int = 0                   # page splits
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    progress: bool = True


@dataclass(frozen=True)
class Face:
    index: int                      # line of urls.txt = KaoKore number
    region: tuple[int, int, int, int]   # x, y, w, h in full-size page pixels, as the URL asks (unclipped)
    url: str


@dataclass
class Page:
    prefix: str                     # IIIF base + identifier
    faces: list[Face] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"page-{self.faces[0].index:08d}"


@dataclass
class PageInfo:
    width: int                      # full size, as info.json says
    height: int
    version: int                    # Image API major version: 1, 2 or 3
    limits: dict = field(default_factory=dict)   # maxWidth / maxHeight / maxArea when declared

    @property
    def size_token(self) -> str:
        return "max" if self.version >= 3 else "full"


@dataclass
class PageFailure:
    page: str
    url: str
    reason: str


@dataclass
class PagesReport:
    pages: int = 0                  # pages in urls.txt
    faces: int = 0                  # faces on them (non-empty URLs)
    fetched: int = 0
    present: int = 0
    failed: list[PageFailure] = field(default_factory=list)
    face_problems: list[str] = field(default_factory=list)   # regions that cannot be a box on their page
    annotations: int = 0            # boxes written to pages.json
    retries: int = 0
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.failed and self.fetched + self.present == self.pages

    def summary(self) -> str:
        s = (f"{self.fetched} pages fetched, {self.present} already present, {len(self.failed)} failed of "
             f"{self.pages}; {self.annotations} face boxes of {self.faces} ({self.retries} retries, {self.seconds:.1f} s)")
        if self.face_problems:
            s += f"; {len(self.face_problems)} face regions skipped"
        return s


# ------------------------------------------------------------------------------------ geometry

def parse_region(region: str) -> tuple[int, int, int, int]:
    """`x,y,w,h` of an IIIF region -> ints (x, y may be negative: v1.3 has some)."""
    parts = region.split(",")
    try:
        x, y, w, h = (int(float(p)) for p in parts)
    except ValueError:
        raise KaogenError(f"region {region!r} is not x,y,w,h") from None
    if len(parts) != 4 or w <= 0 or h <= 0:
        raise KaogenError(f"region {region!r} is not x,y,w,h with a positive size")
    return x, y, w, h


def clip_xywh(box, width: int, height: int) -> tuple[float, float, float, float] | None:
    """(x, y, w, h) clipped to a width x height page; None when nothing of it is on the page."""
    x, y, w, h = box
    x0, y0 = max(0.0, float(x)), max(0.0, float(y))
    x1, y1 = min(float(width), float(x + w)), min(float(height), float(y + h))
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def scaled_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """The size of a width x height page scaled so that its long side is `long_side`."""
    s = long_side / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def to_scaled(box, full: tuple[int, int], scaled: tuple[int, int]) -> list[float]:
    """A full-size (x, y, w, h) -> the same box on the scaled page."""
    sx, sy = scaled[0] / full[0], scaled[1] / full[1]
    x, y, w, h = box
    return [x * sx, y * sy, w * sx, h * sy]


def group_pages(urls: list[str]) -> tuple[list[Page], list[str]]:
    """urls.txt lines -> pages (ordered by their first face) and one note per unusable line."""
    pages: dict[str, Page] = {}
    problems = []
    for i, raw in enumerate(urls):
        if not raw:
            continue                                   # withdrawn face: numbering kept, no box
        try:
            u = IIIFImageURL.parse(raw)
            region = parse_region(u.region)
        except KaogenError as e:
            problems.append(f"{i:08d}.jpg: {e}")
            continue
        pages.setdefault(u.prefix, Page(u.prefix)).faces.append(Face(i, region, raw))
    return sorted(pages.values(), key=lambda p: p.faces[0].index), problems


# ------------------------------------------------------------------------------------ IIIF

def parse_info(data: bytes, url: str) -> PageInfo:
    """An info.json body -> PageInfo; KaogenError when it is not one."""
    try:
        d = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KaogenError(f"{url} is not JSON") from None
    if not isinstance(d, dict):
        raise KaogenError(f"{url} is not an IIIF info.json object")
    w, h = d.get("width"), d.get("height")
    if not (isinstance(w, int) and isinstance(h, int)) or isinstance(w, bool) or w < 1 or h < 1:
        raise KaogenError(f"{url} has no positive integer width and height")
    ctx = d.get("@context", "")
    ctx = " ".join(ctx) if isinstance(ctx, list) else str(ctx)
    if "image/3" in ctx or d.get("type") == "ImageService3":
        version = 3
    elif "image/1" in ctx:
        version = 1
    else:
        version = 2
    limits = {k: d[k] for k in ("maxWidth", "maxHeight", "maxArea") if isinstance(d.get(k), int) and d[k] > 0}
    return PageInfo(w, h, version, limits)


def served_size(info: PageInfo) -> tuple[int, int]:
    """The size a `full/max` (or `full/full`) request must return, given info.json's limits."""
    w, h = info.width, info.height
    lim = info.limits
    s = 1.0
    if "maxWidth" in lim:
        s = min(s, lim["maxWidth"] / w)
    if "maxHeight" in lim or "maxWidth" in lim:          # maxHeight defaults to maxWidth (Image API 3)
        s = min(s, lim.get("maxHeight", lim.get("maxWidth")) / h)
    if "maxArea" in lim:
        s = min(s, (lim["maxArea"] / (w * h)) ** 0.5)
    return (w, h) if s >= 1 else (max(1, int(w * s)), max(1, int(h * s)))


def service_url(prefix: str, mirror: str | None) -> str:
    if not mirror:
        return prefix
    return str(IIIFImageURL(prefix, "full", "max", "0", "default", "jpg").with_mirror(mirror)).rsplit("/full/max/", 1)[0]


def full_page_url(prefix: str, info: PageInfo, mirror: str | None = None) -> str:
    return f"{service_url(prefix, mirror)}/full/{info.size_token}/0/default.jpg"


def decode_page(data: bytes, info: PageInfo, what: str):
    """A full-page body -> RGB PIL, checked against info.json (pixel limit first, from the header)."""
    from kaogen.images import ImageTooLarge, open_checked, to_rgb

    try:
        img = open_checked(io.BytesIO(data), what=what)
        img.load()
    except ImageTooLarge as e:
        raise _Permanent(str(e)) from None
    except Exception:
        raise _Transient("the page is not a decodable image") from None
    want = served_size(info)
    got = img.size
    ok = got == want or (info.limits and abs(got[0] - want[0]) <= 1 and abs(got[1] - want[1]) <= 1)
    if not ok:
        raise _Permanent(f"info.json says the page is {info.width}x{info.height} (so {want[0]}x{want[1]} at full/"
                         f"{info.size_token}) but the server sent {got[0]}x{got[1]}: the boxes would not fit")
    return to_rgb(img)


def fetch_info(prefix: str, opts, counter=None, stop=None) -> PageInfo:
    """GET and parse PREFIX/info.json (with retries); the page's pixel count is checked first."""
    from kaogen.images import ImageTooLarge, check_pixels

    url = f"{service_url(prefix, opts.mirror)}/info.json"

    def once():
        try:
            return parse_info(_get(url, opts.timeout), url)
        except KaogenError as e:
            raise _Permanent(str(e)) from None
    info = with_retries(once, opts, counter, stop)
    try:
        check_pixels((info.width, info.height), what=f"page {prefix}")
    except ImageTooLarge as e:
        raise _Permanent(str(e)) from None
    return info


def fetch_page(prefix: str, opts, info: PageInfo | None = None, counter=None, stop=None):
    """(full-size RGB PIL as the server sends it, PageInfo) for one IIIF page; raises _Permanent."""
    info = info or fetch_info(prefix, opts, counter, stop)
    url = full_page_url(prefix, info, opts.mirror)
    img = with_retries(lambda: decode_page(_get(url, opts.timeout), info, url), opts, counter, stop)
    return img, info


def fetch_iiif_page(prefix: str, mirror: str | None = None, timeout: float = 60.0, retries: int = 3):
    """Library use (`kaogen detect URL`): (full-size RGB PIL, (width, height) of info.json); KaogenError."""
    opts = PagesOptions(root=".", mirror=mirror, timeout=timeout, retries=retries, backoff=0.5)
    try:
        img, info = fetch_page(prefix, opts)
    except _Permanent as e:
        raise KaogenError(f"{prefix}: {e}") from None
    return img, (info.width, info.height)


# ------------------------------------------------------------------------------------ build

def _page_splits(pages: list[Page], work_of: dict[str, str], seed: int, fractions) -> dict[str, dict[str, str]]:
    """{page name: {strategy: side}} for by-page, by-work and within-work."""
    from kaogen.data.metadata import Record

    recs = [Record(p.name, None, None, None, {"work": work_of.get(p.name, "")}) for p in pages]
    flat = [Record(p.name, None, None, None, {"work": "all"}) for p in pages]
    out: dict[str, dict[str, str]] = {p.name: {} for p in pages}
    for strategy, records, how in (("by-page", flat, "within-work"), ("by-work", recs, "by-work"),
                                   ("within-work", recs, "within-work")):
        for name, side in assign_splits(records, how, seed, fractions).items():
            out[name][strategy] = side
    return out


def _read_metadata(opts: PagesOptions) -> tuple[list[str], dict, dict]:
    root = Path(opts.root)
    if opts.metadata or not (root / "urls.txt").is_file():
        if not opts.metadata and not root.is_dir():
            raise KaogenError(f"KaoKore root {root} does not exist: run `kaogen data download --root {root}` "
                              f"first or pass --metadata DIR")
        st = read_stamp(root)
        fetch_metadata(DownloadOptions(root=str(root), metadata=opts.metadata, version=st.version if st else "1.3",
                                       timeout=opts.timeout, retries=opts.retries, backoff=opts.backoff))
    urls = read_urls(root / "urls.txt")
    if not any(urls):
        raise KaogenError(f"{root / 'urls.txt'} is missing or empty")
    labels = {}
    if (root / "labels.csv").is_file():
        rows, _ = read_labels(root / "labels.csv")
        labels = {n: (g, s) for n, g, s, _ in rows}
    return urls, labels, read_tags(root / "original_tags.txt")


def build_pages(opts: PagesOptions) -> PagesReport:
    """The whole `kaogen data pages`: fetch what is missing, write pages.json and the report."""
    if opts.long_side < 32 or opts.long_side > 20000:
        raise KaogenError(f"--long-side must be in 32..20000, not {opts.long_side}")
    if opts.workers < 1:
        raise KaogenError("--workers must be at least 1")
    urls, labels, tags = _read_metadata(opts)
    out = Path(opts.out) if opts.out else Path(opts.root) / PAGES_DIR
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "info").mkdir(parents=True, exist_ok=True)
    for d in (out, out / "images", out / "info"):
        clean_stale_temporaries(d)
    pages, problems = group_pages(urls)
    report = PagesReport(pages=len(pages), faces=sum(len(p.faces) for p in pages), face_problems=problems)
    counter, stop = [0], threading.Event()

    def work(page: Page) -> tuple[str, PageInfo, tuple[int, int]]:
        img_path, info_path = out / "images" / f"{page.name}.jpg", out / "info" / f"{page.name}.json"
        info = None
        if info_path.is_file():
            try:
                d = json.loads(info_path.read_text())
                if d.get("prefix") == page.prefix:
                    info = PageInfo(d["width"], d["height"], d["version"], d.get("limits", {}))
            except (ValueError, KeyError, TypeError):
                info = None
        if info is not None:
            want = scaled_size(info.width, info.height, opts.long_side)
            from kaogen.images import image_size

            if image_size(img_path) == want:
                return "present", info, want
        img, info = fetch_page(page.prefix, opts, info, counter, stop)
        want = scaled_size(info.width, info.height, opts.long_side)
        from PIL import Image

        if img.size != want:
            img = img.resize(want, Image.Resampling.LANCZOS)
        with atomic_path(img_path) as tmp:
            img.save(tmp, format="JPEG", quality=95)
        atomic_write_text(info_path, json.dumps({"prefix": page.prefix, **asdict(info)}) + "\n")   # after the image
        return "fetched", info, want

    start = time.perf_counter()
    done: dict[str, tuple[PageInfo, tuple[int, int]]] = {}
    for page, result, error in run_parallel(pages, work, opts.workers, stop, opts.progress, "page", "pages"):
        if error is not None:
            report.failed.append(PageFailure(page.name, page.prefix, str(error)))
            continue
        how, info, size = result
        done[page.name] = (info, size)
        report.present += how == "present"
        report.fetched += how == "fetched"
    report.retries = counter[0]
    report.failed.sort(key=lambda f: f.page)
    coco = _coco(pages, done, labels, tags, opts, report)
    atomic_write_text(out / COCO_FILE, json.dumps(coco, ensure_ascii=False) + "\n")
    report.seconds = time.perf_counter() - start
    data = {**asdict(report), "complete": report.complete, "long_side": opts.long_side}
    atomic_write_text(out / REPORT_FILE, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return report


def _coco(pages, done, labels, tags, opts: PagesOptions, report: PagesReport) -> dict:
    st = read_stamp(opts.root)
    work_of = {}
    for p in pages:
        works = [tags.get(f"{f.index:08d}.jpg", {}).get("work", "") for f in p.faces]
        work_of[p.name] = max(set(works), key=works.count) if works else ""
    splits = _page_splits([p for p in pages if p.name in done], work_of, opts.seed, opts.fractions)
    images, annotations = [], []
    for page in pages:
        if page.name not in done:
            continue
        info, size = done[page.name]
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": f"images/{page.name}.jpg", "width": size[0], "height": size[1],
                       "full_width": info.width, "full_height": info.height, "iiif": page.prefix,
                       "name": page.name, "work": work_of[page.name], "splits": splits[page.name]})
        for f in page.faces:
            name = f"{f.index:08d}.jpg"
            clipped = clip_xywh(f.region, info.width, info.height)
            if clipped is None:
                report.face_problems.append(f"{name}: box {f.region} is outside its page "
                                            f"({info.width}x{info.height}, {page.name})")
                continue
            bbox = to_scaled(clipped, (info.width, info.height), size)
            gender, status = labels.get(name, (None, None))
            t = tags.get(name, {})
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "bbox": bbox,
                                "area": bbox[2] * bbox[3], "iscrowd": 0, "kaokore_index": f.index,
                                "kaokore_image": name, "gender": gender, "status": status,
                                "work": t.get("work", ""), "orientation": t.get("orientation", ""),
                                "region": list(clipped), "clipped": tuple(clipped) != tuple(map(float, f.region)),
                                "url": f.url})
    report.annotations = len(annotations)
    info = {"description": "KaoKore faces on their pages (kaogen data pages)", "version": st.version if st else "",
            "long_side": opts.long_side, "split_seed": opts.seed, "split_fractions": list(opts.fractions),
            "split_strategies": list(SPLIT_STRATEGIES)}
    return {"info": info, "licenses": [], "images": images, "annotations": annotations, "categories": CATEGORIES}
