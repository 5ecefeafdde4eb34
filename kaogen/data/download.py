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
import hashlib
import http.client
import io
import json
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path


from kaogen.atomic import atomic_path, atomic_write_bytes, atomic_write_text, clean_stale_temporaries
from kaogen.data.iiif import image_url
from kaogen.data.metadata import METADATA_FILES, STAMP, image_dir, read_stamp, read_urls, stamp_text
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
    total: int = 0                  # lines of urls.txt (file numbers), withdrawn ones included
    fetched: int = 0                # downloaded by this run
    present: int = 0                # already on disk and decodable
    failed: list[Failure] = field(default_factory=list)
    retries: int = 0                # transient errors retried
    seconds: float = 0.0
    withdrawn: list[str] = field(default_factory=list)  # empty lines of urls.txt: faces withdrawn, not failures
    version: str | None = None      # the KaoKore version of the root's metadata
    previous: str | None = None     # the version its existing images were fetched for
    replaced: list[str] = field(default_factory=list)   # images removed because their URL differs in `version`

    @property
    def complete(self) -> bool:
        return not self.failed and self.fetched + self.present == self.total - len(self.withdrawn)

    def summary(self) -> str:
        rate = self.fetched / self.seconds if self.seconds > 0 else 0.0
        s = (f"{self.fetched} fetched, {self.present} already present, {len(self.failed)} failed "
             f"of {self.total - len(self.withdrawn)} ({rate:.1f} images/s, {self.retries} retries)")
        if self.withdrawn:
            s += f"; {len(self.withdrawn)} withdrawn (empty lines of urls.txt, numbering kept)"
        return s

    def reconciled(self) -> str | None:
        """One line when existing images were held against another version's metadata."""
        if self.previous is None or (self.previous == self.version and not self.replaced):
            return None
        return (f"existing images were fetched for KaoKore {self.previous}: {len(self.replaced)} whose URL differs "
                f"in {self.version} were removed and fetched again, the others kept")


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


def run_parallel(jobs: list, work, workers: int, stop: threading.Event, progress: bool, unit: str, desc: str,
                 postfix=None):
    """Run `work(job)` for every job on `workers` threads; yield (job, result, error) as they finish,
    error the _Permanent that ended a job (result None then). A progress bar when asked (`postfix()`
    gives its extra fields); Ctrl-C sets `stop` (retries end), cancels what has not started, waits
    for what runs, and re-raises."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit=unit, desc=desc, dynamic_ncols=True)
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = {pool.submit(work, job): job for job in jobs}
        for fut in as_completed(futures):
            try:
                yield futures[fut], fut.result(), None
            except _Permanent as e:
                yield futures[fut], None, e
            if bar is not None:
                bar.update(1)
                if postfix is not None:
                    bar.set_postfix(**postfix(), refresh=False)
    except KeyboardInterrupt:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        if bar is not None:
            bar.close()


def decodes(path: Path) -> bool:
    """True when `path` is a fully decodable image (within kaogen's pixel limit)."""
    from kaogen.images import image_size

    return image_size(path) is not None


def _store_image(data: bytes, dest: Path) -> None:
    """Decode `data`; keep RGB JPEG bytes as they are, re-encode anything else as RGB JPEG."""
    from kaogen.images import ImageTooLarge, open_checked, to_rgb

    try:
        img = open_checked(io.BytesIO(data), what="the body")   # refused from its header when too large
        img.load()
    except ImageTooLarge as e:
        raise _Permanent(str(e)) from None
    except Exception:
        raise _Transient("body is not a decodable image") from None
    if img.format == "JPEG" and img.mode == "RGB":
        atomic_write_bytes(dest, data)
        return
    with atomic_path(dest) as tmp:
        to_rgb(img).save(tmp, format="JPEG", quality=95)


# ---------------------------------------------------------------------------------------- metadata

_IMAGE_FILE = re.compile(r"^(\d{8})\.jpg$")


def _norm(data: bytes | None) -> bytes | None:
    """Content for comparing metadata files: no BOM, no CR, no trailing blank space."""
    if data is None:
        return None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.replace(b"\r\n", b"\n").rstrip()


def _urls_of(data: bytes) -> list[str]:
    return [line.strip() for line in _norm(data).decode("utf-8", errors="replace").splitlines()]


def _image_files(root: Path) -> dict[int, list[Path]]:
    """{line number: [ROOT/images_S/NNNNNNNN.jpg, ...]} over every size folder."""
    found: dict[int, list[Path]] = {}
    for folder in sorted(root.glob("images_*")):
        if folder.is_dir():
            for p in folder.iterdir():
                m = _IMAGE_FILE.match(p.name)
                if m:
                    found.setdefault(int(m.group(1)), []).append(p)
    return found


def _read_target(opts: DownloadOptions, root: Path) -> dict[str, bytes]:
    """The metadata files of `opts.version`: from --metadata, from the root (resume), or fetched."""
    if opts.metadata:
        src = Path(opts.metadata)
        if not src.is_dir():
            raise KaogenError(f"--metadata folder {src} does not exist")
        missing = [n for n in REQUIRED_METADATA if not (src / n).is_file()]
        if missing:
            raise KaogenError(f"--metadata folder {src} lacks {', '.join(missing)}")
        return {n: (src / n).read_bytes() for n in METADATA_FILES if (src / n).is_file()}
    st = read_stamp(root)
    if st is not None and st.version == opts.version and st.valid and st.digests and all(
        (root / n).is_file() for n in REQUIRED_METADATA
    ):
        return {n: (root / n).read_bytes() for n in METADATA_FILES if (root / n).is_file()}  # resume offline
    target = {}
    for name in METADATA_FILES:
        data = _fetch_official(opts.version, name, opts)
        if data is None:
            if name in REQUIRED_METADATA:
                url = f"{OFFICIAL_REPO}/{VERSION_FOLDERS[opts.version]}/{name}"
                raise KaogenError(f"cannot fetch KaoKore {opts.version} metadata {url}")
            continue
        target[name] = data
    return target


def _fetch_official(version: str, name: str, opts: DownloadOptions) -> bytes | None:
    url = f"{OFFICIAL_REPO}/{VERSION_FOLDERS[version]}/{name}"
    try:
        return with_retries(lambda: _get(url, opts.timeout), opts)
    except _Permanent:
        return None


@dataclass
class Reconciled:
    """What `fetch_metadata` found in the root before writing the target version's metadata."""
    previous: str | None = None         # version the existing images belong to (None: no images)
    replaced: list[str] = field(default_factory=list)  # images removed: their URL differs in the target
    kept: int = 0                       # existing images whose URL is the same in both versions


def _previous_urls(root: Path, target: dict[str, bytes], opts: DownloadOptions) -> tuple[list[str], str]:
    """The URL each existing image of the root was fetched from, and that version's name.

    Raises KaogenError (and changes nothing) when the root holds images whose version cannot be told.
    """
    st = read_stamp(root)
    urls_file, labels_file = root / "urls.txt", root / "labels.csv"
    if st is not None and "urls.txt" not in st.changed and urls_file.is_file():
        # kaogen's own root (labels.csv may have been overwritten since, e.g. by the official tool:
        # the images still are the ones urls.txt names).
        return read_urls(urls_file), st.version
    fresh = f"kaogen data download --root NEW_ROOT --version {opts.version}"
    if st is not None and urls_file.is_file() and _norm(urls_file.read_bytes()) == _norm(target["urls.txt"]):
        # An earlier run was cut short after writing the target's urls.txt (written last, after the
        # images whose URL differs were removed) and before its stamp.
        return read_urls(urls_file), opts.version
    if st is not None and st.digests.get("urls.txt") == hashlib.sha256(target["urls.txt"]).hexdigest():
        # urls.txt deleted or rewritten since the stamp, whose digest says the images were fetched
        # from the target's own urls.txt
        return _urls_of(target["urls.txt"]), st.version
    if st is not None:
        raise KaogenError(
            f"{root} holds images fetched for KaoKore {st.version}, but its urls.txt changed since, so which URL each "
            f"image came from is unknown; mixing it with KaoKore {opts.version} is refused: run `{fresh}`")
    if urls_file.is_file():  # no stamp: its urls.txt says where each image came from
        old = read_urls(urls_file)
        same = _norm(urls_file.read_bytes()) == _norm(target["urls.txt"])
        return old, opts.version if same else "an unstamped urls.txt"
    # The official download.py's layout: labels.csv, original_tags.txt, labels.metadata.*.txt, images_256/,
    # and no urls.txt. Tell its version by its metadata.
    if not labels_file.is_file():
        raise KaogenError(
            f"{root} holds images but no labels.csv, urls.txt or {STAMP} saying which KaoKore version they belong "
            f"to; mixing them with KaoKore {opts.version} is refused: move them away or run `{fresh}`")
    mine = {n: _norm((root / n).read_bytes()) for n in ("labels.csv", "original_tags.txt") if (root / n).is_file()}

    def matches(files: dict[str, bytes | None]) -> bool:
        return all(files.get(n) is None or _norm(files[n]) == data for n, data in mine.items()) and \
            files.get("labels.csv") is not None

    if matches(target):
        return _urls_of(target["urls.txt"]), opts.version
    found = None
    if not opts.metadata:  # online: compare with the other official versions
        for version in VERSION_FOLDERS:
            if version == opts.version:
                continue
            other = {n: _fetch_official(version, n, opts) for n in ("labels.csv", "original_tags.txt")}
            if matches(other):
                found = version
                urls = _fetch_official(version, "urls.txt", opts)
                if urls is not None:
                    return _urls_of(urls), version
                break
    which = f"KaoKore {found}" if found else "another KaoKore version"
    raise KaogenError(
        f"{root} holds {which}'s images (official download.py layout: no urls.txt or {STAMP}; its labels.csv is "
        f"not KaoKore {opts.version}'s), and they would not match {opts.version}'s labels: run "
        f"`kaogen data download --root {root} --version {found or 'OLD_VERSION'}` to keep that version, or "
        f"`{fresh}` for {opts.version}")


def fetch_metadata(opts: DownloadOptions) -> Reconciled:
    """Put the metadata files of `opts.version` into the root (copy from --metadata, or fetch).

    Images already in the root are held against the version they were fetched for (kaogen's stamp, or
    the metadata the root holds): those whose URL differs in `opts.version` are removed so that they
    are fetched again; a root whose version cannot be told is refused, unchanged.
    """
    if opts.version not in VERSION_FOLDERS:
        raise KaogenError(f"unknown KaoKore version {opts.version!r}: use one of {', '.join(VERSION_FOLDERS)}")
    root = Path(opts.root)
    if root.exists() and not root.is_dir():
        raise KaogenError(f"--root {root} is a file, not a folder")
    root.mkdir(parents=True, exist_ok=True)
    target = _read_target(opts, root)
    try:
        _urls_of(target["urls.txt"])
        target["urls.txt"].decode("utf-8")
    except UnicodeDecodeError:
        raise KaogenError(f"urls.txt of KaoKore {opts.version} is not UTF-8 text") from None
    result = Reconciled()
    images = _image_files(root)
    if images:
        old, result.previous = _previous_urls(root, target, opts)
        new = _urls_of(target["urls.txt"])
        for i, paths in sorted(images.items()):
            before = old[i] if i < len(old) else ""
            after = new[i] if i < len(new) else ""
            if before and before == after:
                result.kept += 1
                continue
            result.replaced.append(f"{i:08d}.jpg")
            for path in paths:       # removed before the new metadata is written: a crash leaves a
                path.unlink()        # consistent root (old metadata, a few images missing)
    for name in sorted(METADATA_FILES, key=lambda n: n == "urls.txt"):   # urls.txt last, then the stamp
        dest = root / name
        if name in target:
            if not dest.is_file() or dest.read_bytes() != target[name]:
                atomic_write_bytes(dest, target[name])
        elif dest.is_file():
            dest.unlink()            # the other version's file: the target has none
    atomic_write_text(root / STAMP, stamp_text(root, opts.version))
    return result


# ------------------------------------------------------------------------------------------ images

def download_images(opts: DownloadOptions, reconciled: Reconciled | None = None) -> DownloadReport:
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
    st = read_stamp(root)
    report.version = st.version if st is not None else None
    for i, raw in enumerate(urls):
        name = f"{i:08d}.jpg"
        if not raw:                  # a withdrawn face: the line stays so that numbering is kept
            report.withdrawn.append(name)
            continue
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
        return "fetched"   # pragma: no mutate (equivalent: only "present" is compared, anything else counts as fetched)

    start = time.perf_counter()
    for (name, url), how, error in run_parallel(jobs, lambda job: work(*job), opts.workers, stop, opts.progress, "img",
                                                f"images_{opts.size}",
                                                lambda: {"failed": len(report.failed), "retries": counter[0]}):
        if error is not None:
            report.failed.append(Failure(name, url, str(error)))
        elif how == "present":
            report.present += 1
        else:
            report.fetched += 1
    report.retries = counter[0]
    report.seconds = time.perf_counter() - start
    if reconciled is not None:
        report.previous, report.replaced = reconciled.previous, reconciled.replaced
    report.failed.sort(key=lambda f: f.image)
    write_report(root, opts.size, report)
    return report


def write_report(root: Path, size: int, report: DownloadReport) -> Path:
    path = Path(root) / f"download_report_{size}.json"
    data = {**asdict(report), "complete": report.complete}
    data["withdrawn"] = len(report.withdrawn)   # the names are the empty lines of urls.txt
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return path


def download(opts: DownloadOptions) -> DownloadReport:
    """Metadata, then images: the whole `kaogen data download`."""
    rec = fetch_metadata(opts)
    report = download_images(opts, rec)
    return report
