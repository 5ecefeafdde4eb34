"""Download KaoKore: metadata from the official repository (or a local folder), faces over IIIF.

    download(DownloadOptions(root="kaokore", version="1.3", size=256, workers=8))

* Images go to `ROOT/images_S/%08d.jpg`, named by their line number in urls.txt, RGB JPEG.
* Resumable: a file already present and decodable is not fetched again; temporaries of a killed
  run are removed; every file is written atomically and checked to decode first.
* Retries with exponential backoff on timeouts, connection errors, truncated bodies, bodies that
  are not images, and 5xx; 429 honours Retry-After. 4xx other than 408/429 are permanent.
* Permanent failures go to `ROOT/download_report_S.json` and the summary.
"""

from __future__ import annotations

import email.utils
import http.client
import io
import json
import random
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from kaogen.atomic import atomic_path, atomic_write_bytes, atomic_write_text, clean_stale_temporaries
from kaogen.data.iiif import image_url
from kaogen.data.metadata import METADATA_FILES, image_dir, read_urls
from kaogen.errors import KaogenError

OFFICIAL_REPO = "https://raw.githubusercontent.com/rois-codh/kaokore/master"
VERSION_FOLDERS = {"1.0": "dataset", "1.1": "dataset_v1.1", "1.2": "dataset_v1.2", "1.3": "dataset_v1.3"}
REQUIRED_METADATA = ("labels.csv", "urls.txt")
USER_AGENT = "kaogen/0.1 (KaoKore downloader; IIIF Image API)"


@dataclass
class DownloadOptions:
    root: str                       # KaoKore root folder (created if needed)
    version: str = "1.3"            # dataset version: 1.0, 1.1, 1.2, 1.3
    size: int = 256                 # requested size S -> ROOT/images_S/
    workers: int = 8                # parallel connections
    metadata: str | None = None     # local folder with the metadata files (offline, tests)
    mirror: str | None = None       # replaces scheme://host of every image URL
    timeout: float = 30.0           # seconds per request
    retries: int = 5                # attempts after the first one, for transient errors
    backoff: float = 1.0            # first retry delay in seconds, doubled each time
    max_backoff: float = 60.0       # cap on one delay (also caps Retry-After)
    progress: bool = True           # tqdm bar


@dataclass
class Failure:
    image: str
    url: str
    reason: str


@dataclass
class DownloadReport:
    total: int = 0                  # images listed in urls.txt
    fetched: int = 0                # downloaded by this run
    present: int = 0                # already on disk and decodable
    failed: list[Failure] = field(default_factory=list)
    retries: int = 0                # transient errors retried
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.failed and self.fetched + self.present == self.total

    def summary(self) -> str:
        rate = self.fetched / self.seconds if self.seconds > 0 else 0.0
        s = (f"{self.fetched} fetched, {self.present} already present, {len(self.failed)} failed "
             f"of {self.total} ({rate:.1f} images/s, {self.retries} retries)")
        return s


class _Permanent(Exception):
    pass


class _Transient(Exception):
    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.wait = wait


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _get(url: str, timeout: float) -> bytes:
    """One HTTP GET; raises _Transient or _Permanent with a short reason."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = r.read()
            expected = r.headers.get("Content-Length")
            if expected is not None and expected.isdigit() and len(data) != int(expected):
                raise _Transient(f"truncated body ({len(data)} of {expected} bytes)")
            return data
    except urllib.error.HTTPError as e:
        if e.code == 429 or e.code == 408 or 500 <= e.code < 600:
            raise _Transient(f"HTTP {e.code}", _retry_after(e.headers.get("Retry-After"))) from None
        raise _Permanent(f"HTTP {e.code}") from None
    except http.client.IncompleteRead as e:
        raise _Transient(f"truncated body ({len(e.partial)} bytes)") from None
    except (socket.timeout, TimeoutError):
        raise _Transient("timed out") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, (socket.timeout, TimeoutError)):
            raise _Transient("timed out") from None
        raise _Transient(f"connection error: {e.reason}") from None
    except (ConnectionError, http.client.HTTPException, OSError) as e:
        raise _Transient(f"connection error: {type(e).__name__}") from None


def with_retries(fn, opts: DownloadOptions, counter: list[int] | None = None, stop: threading.Event | None = None):
    """Call `fn()` until it succeeds, a _Permanent error, or `opts.retries` transient ones."""
    for attempt in range(opts.retries + 1):
        try:
            return fn()
        except _Transient as e:
            if attempt == opts.retries:
                raise _Permanent(f"{e} (gave up after {opts.retries + 1} attempts)") from None
            if counter is not None:
                counter[0] += 1
            delay = e.wait if e.wait is not None else opts.backoff * (2 ** attempt) * (0.5 + random.random())
            delay = min(delay, opts.max_backoff)
            if stop is not None and stop.wait(delay):
                raise _Permanent("interrupted") from None
            elif stop is None:
                time.sleep(delay)


def decodes(path: Path) -> bool:
    """True when `path` is a fully decodable image."""
    try:
        with Image.open(path) as img:
            img.load()
        return True
    except Exception:
        return False


def _store_image(data: bytes, dest: Path) -> None:
    """Decode `data`; keep RGB JPEG bytes as they are, re-encode anything else as RGB JPEG."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception:
        raise _Transient("body is not a decodable image") from None
    if img.format == "JPEG" and img.mode == "RGB":
        atomic_write_bytes(dest, data)
        return
    from kaogen.images import to_rgb

    with atomic_path(dest) as tmp:
        to_rgb(img).save(tmp, format="JPEG", quality=95)


# ---------------------------------------------------------------------------------------- metadata

def fetch_metadata(opts: DownloadOptions) -> Path:
    """Put the metadata files of `opts.version` into the root (copy from --metadata, or fetch)."""
    if opts.version not in VERSION_FOLDERS:
        raise KaogenError(f"unknown KaoKore version {opts.version!r}: use one of {', '.join(VERSION_FOLDERS)}")
    root = Path(opts.root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = root / "kaokore_version.txt"
    if opts.metadata:
        src = Path(opts.metadata)
        if not src.is_dir():
            raise KaogenError(f"--metadata folder {src} does not exist")
        missing = [n for n in REQUIRED_METADATA if not (src / n).is_file()]
        if missing:
            raise KaogenError(f"--metadata folder {src} lacks {', '.join(missing)}")
        for name in METADATA_FILES:
            if (src / name).is_file() and (src.resolve() != root.resolve()):
                with atomic_path(root / name) as tmp:
                    shutil.copyfile(src / name, tmp)
    elif stamp.is_file() and stamp.read_text().strip() == opts.version and all(
        (root / n).is_file() for n in REQUIRED_METADATA
    ):
        pass  # already there from an earlier run: resume offline
    else:
        folder = VERSION_FOLDERS[opts.version]
        for name in METADATA_FILES:
            url = f"{OFFICIAL_REPO}/{folder}/{name}"
            try:
                data = with_retries(lambda: _get(url, opts.timeout), opts)
            except _Permanent as e:
                if name in REQUIRED_METADATA:
                    raise KaogenError(f"cannot fetch KaoKore {opts.version} metadata {url}: {e}") from None
                continue
            atomic_write_bytes(root / name, data)
    atomic_write_text(stamp, opts.version + "\n")
    return root


# ------------------------------------------------------------------------------------------ images

def download_images(opts: DownloadOptions) -> DownloadReport:
    """Fetch every image of urls.txt that is missing or broken; write the report; return it."""
    root = Path(opts.root)
    urls = read_urls(root / "urls.txt")
    if not urls:
        raise KaogenError(f"{root / 'urls.txt'} is missing or empty")
    if opts.workers < 1:
        raise KaogenError("--workers must be at least 1")
    out = image_dir(root, opts.size)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(out)

    jobs: list[tuple[str, str]] = []
    report = DownloadReport(total=len(urls))
    for i, raw in enumerate(urls):
        name = f"{i:08d}.jpg"
        try:
            # 256 is the official size: keep each URL's own size (Keio's ask for !200,200).
            url = image_url(raw, size=None if opts.size == 256 else opts.size, mirror=opts.mirror)
        except KaogenError as e:
            report.failed.append(Failure(name, raw, str(e)))
            continue
        jobs.append((name, url))

    counter = [0]
    stop = threading.Event()

    def work(name: str, url: str) -> str:
        dest = out / name
        if dest.is_file() and decodes(dest):
            return "present"
        with_retries(lambda: _store_image(_get(url, opts.timeout), dest), opts, counter, stop)
        return "fetched"

    start = time.perf_counter()
    bar = None
    if opts.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit="img", desc=f"images_{opts.size}", dynamic_ncols=True)
    pool = ThreadPoolExecutor(max_workers=opts.workers)
    try:
        futures = {pool.submit(work, n, u): (n, u) for n, u in jobs}
        for fut in as_completed(futures):
            name, url = futures[fut]
            try:
                if fut.result() == "present":
                    report.present += 1
                else:
                    report.fetched += 1
            except _Permanent as e:
                report.failed.append(Failure(name, url, str(e)))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(failed=len(report.failed), retries=counter[0], refresh=False)
    except KeyboardInterrupt:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        if bar is not None:
            bar.close()
    report.retries = counter[0]
    report.seconds = time.perf_counter() - start
    report.failed.sort(key=lambda f: f.image)
    write_report(root, opts.size, report)
    return report


def write_report(root: Path, size: int, report: DownloadReport) -> Path:
    path = Path(root) / f"download_report_{size}.json"
    data = {**asdict(report), "complete": report.complete}
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return path


def download(opts: DownloadOptions) -> DownloadReport:
    """Metadata, then images: the whole `kaogen data download`."""
    fetch_metadata(opts)
    return download_images(opts)
