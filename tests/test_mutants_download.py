"""The downloader's boundaries, found by mutation testing (benchmarks/mutation.sh data/download): which
version a root's existing images are held against (and so which are fetched again, or whether the
root is refused), what one HTTP request reports, what a stored face is, and how the thread pool
starts and stops. Every server is a loopback one; no test sleeps on a backoff."""

from __future__ import annotations

import importlib
import io
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest
from PIL import Image

from kaogen.data.download import DownloadOptions, download
from kaogen.errors import KaogenError

from conftest import LoopbackServer
from test_download import NEW, OLD, IIIFServer, face_bytes, make_metadata, official_root

D = importlib.import_module("kaogen.data.download")


def _opts(root, srv, **kw) -> DownloadOptions:
    return DownloadOptions(**{"root": str(root), "mirror": srv.url, "progress": False, "retries": 0, "workers": 2,
                              **kw})


def _root_state(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ which version a root's images are from

def test_a_kaogen_root_is_held_against_its_stamped_version(tmp_path):
    """A root kaogen downloaded for 1.2, then asked for 1.3: its stamp says the images are 1.2's, so
    exactly the faces whose URL differs (2: re-cut, 4: withdrawn) are removed, the others kept."""
    old, new = make_metadata(tmp_path / "old", OLD), make_metadata(tmp_path / "new", NEW)
    root = tmp_path / "root"
    with IIIFServer() as srv:
        first = download(_opts(root, srv, metadata=str(old), version="1.2"))
        assert first.complete and first.previous is None
        again = download(_opts(root, srv, metadata=str(old), version="1.2"))
        assert again.previous == "1.2" and again.replaced == [] and again.reconciled() is None
        report = download(_opts(root, srv, metadata=str(new), version="1.3"))
    assert report.previous == "1.2" and report.replaced == ["00000002.jpg", "00000004.jpg"]
    assert report.version == "1.3" and report.complete and report.fetched == 2 and report.present == 4


def test_a_run_cut_short_after_writing_the_targets_urls_is_taken_up(tmp_path):
    """A run for 1.3 killed after it removed the changed faces and wrote 1.3's urls.txt, before its
    stamp: the root's urls.txt is the target's, so its images are 1.3's (nothing more is removed) and
    the run completes."""
    old, new = make_metadata(tmp_path / "old", OLD), make_metadata(tmp_path / "new", NEW)
    root = tmp_path / "root"
    with IIIFServer() as srv:
        download(_opts(root, srv, metadata=str(old), version="1.2"))
        for name in ("00000002.jpg", "00000004.jpg"):          # what the cut-short run had done
            (root / "images_256" / name).unlink()
        (root / "urls.txt").write_bytes((new / "urls.txt").read_bytes())
        kept = (root / "images_256" / "00000003.jpg").read_bytes()
        report = download(_opts(root, srv, metadata=str(new), version="1.3"))
    assert report.previous == "1.3" and report.replaced == []
    assert report.complete and report.fetched == 2 and report.present == 4
    assert (root / "images_256" / "00000003.jpg").read_bytes() == kept


def test_a_stamped_root_whose_urls_changed_otherwise_is_refused_unchanged(tmp_path):
    """A stamped root whose urls.txt was overwritten since (by another tool) with something that is
    not the target's: which URL each image came from is unknown, so it is refused, naming the fresh
    command, and nothing in it changes."""
    old, new = make_metadata(tmp_path / "old", OLD), make_metadata(tmp_path / "new", NEW)
    other = make_metadata(tmp_path / "other", ["ok", "old", "old"])
    root = tmp_path / "root"
    with IIIFServer() as srv:
        download(_opts(root, srv, metadata=str(old), version="1.2"))
        (root / "urls.txt").write_bytes((other / "urls.txt").read_bytes())
        before = _root_state(root)
        with pytest.raises(KaogenError) as e:
            download(_opts(root, srv, metadata=str(new), version="1.3"))
    assert "holds images fetched for KaoKore 1.2" in str(e.value)
    assert "kaogen data download --root NEW_ROOT --version 1.3" in str(e.value)
    assert _root_state(root) == before


def test_a_stamped_root_whose_urls_txt_was_deleted_is_taken_up_for_its_own_version(tmp_path):
    """A stamped 1.2 root whose urls.txt was deleted (or rewritten) since: the stamp's digest says
    the images were fetched from 1.2's own urls.txt, so asking for 1.2 again keeps every image and
    fetches nothing; asking for 1.3 is refused (which URL each image came from is not the target's),
    naming the fresh command, and changes nothing."""
    old, new = make_metadata(tmp_path / "old", OLD), make_metadata(tmp_path / "new", NEW)
    root = tmp_path / "root"
    with IIIFServer() as srv:
        download(_opts(root, srv, metadata=str(old), version="1.2"))
        (root / "urls.txt").unlink()
        before = _root_state(root)
        with pytest.raises(KaogenError, match="holds images fetched for KaoKore 1.2"):
            download(_opts(root, srv, metadata=str(new), version="1.3"))
        assert _root_state(root) == before
        again = download(_opts(root, srv, metadata=str(old), version="1.2"))
    assert again.previous == "1.2" and again.replaced == [] and again.fetched == 0 and again.complete
    assert (root / "urls.txt").read_bytes() == (old / "urls.txt").read_bytes()


def test_an_unstamped_urls_txt_says_where_each_image_came_from(tmp_path):
    """The official layout with urls.txt and no stamp: its images are held against that urls.txt; it
    is named "an unstamped urls.txt" unless it is the target's own, then the target's version."""
    old, new = make_metadata(tmp_path / "old", OLD), make_metadata(tmp_path / "new", NEW)
    with IIIFServer() as srv:
        official_root(tmp_path / "a", old, with_urls=True)
        report = download(_opts(tmp_path / "a", srv, metadata=str(new), version="1.3"))
        assert report.previous == "an unstamped urls.txt" and report.replaced == ["00000002.jpg", "00000004.jpg"]
        assert report.reconciled().startswith("existing images were fetched for KaoKore an unstamped urls.txt: 2 ")
        official_root(tmp_path / "b", new, with_urls=True)
        report = download(_opts(tmp_path / "b", srv, metadata=str(new), version="1.3"))
        assert report.previous == "1.3" and report.replaced == [] and report.fetched == 0 and report.complete


def test_the_official_layout_is_told_by_its_tags_too(tmp_path):
    """Without urls.txt or stamp the root's version is told by labels.csv and original_tags.txt: the
    same labels with other tags are another version's faces, refused offline (naming no version);
    the same labels and tags are the target's, adopted."""
    old, new = make_metadata(tmp_path / "old", OLD), make_metadata(tmp_path / "new", OLD)
    (old / "original_tags.txt").write_text("00000002.jpg:向き=横;原典=病草子\n", encoding="utf-8")
    (new / "original_tags.txt").write_text("00000002.jpg:向き=正面;原典=病草子\n", encoding="utf-8")
    root = tmp_path / "root"
    official_root(root, old, with_urls=False)
    before = _root_state(root)
    with IIIFServer() as srv:
        with pytest.raises(KaogenError) as e:
            download(_opts(root, srv, metadata=str(new), version="1.3"))
        assert "holds another KaoKore version's images" in str(e.value) and "--version OLD_VERSION" in str(e.value)
        assert _root_state(root) == before
        report = download(_opts(root, srv, metadata=str(old), version="1.3"))
    assert report.previous == "1.3" and report.present == 6 and report.fetched == 0


def _official_files(tmp_path, versions: dict[str, tuple[list[str], str | None, bool]]) -> dict[str, bytes]:
    """The official repository's files per version: {version: (kinds, original_tags text, urls.txt served)}."""
    files = {}
    for version, (kinds, tags, with_urls) in versions.items():
        meta = make_metadata(tmp_path / f"v{version}", kinds)
        if tags is not None:
            (meta / "original_tags.txt").write_text(tags, encoding="utf-8")
        folder = D.VERSION_FOLDERS[version]
        for name in ("labels.csv", "original_tags.txt") + (("urls.txt",) if with_urls else ()):
            if (meta / name).is_file():
                files[f"/meta/{folder}/{name}"] = (meta / name).read_bytes()
    return files


def test_online_every_other_version_is_compared(tmp_path, monkeypatch):
    """Asked for 1.0 (the first version) over the official layout of 1.3's faces: the versions after
    the target are compared too, and the root is named 1.3 and reconciled."""
    files = _official_files(tmp_path, {"1.0": (NEW, None, True), "1.3": (OLD, None, True)})
    root = tmp_path / "root"
    official_root(root, tmp_path / "v1.3", with_urls=False)
    with IIIFServer(files) as srv:
        monkeypatch.setattr(D, "OFFICIAL_REPO", srv.url + "/meta")
        report = download(_opts(root, srv, version="1.0"))
    assert report.previous == "1.3" and report.replaced == ["00000002.jpg", "00000004.jpg"] and report.complete


def test_online_versions_with_the_same_labels_are_told_apart_by_their_tags(tmp_path, monkeypatch):
    """1.0 and 1.1 have the same labels.csv but not the same original_tags.txt: a root holding 1.1's
    tags is named 1.1, not 1.0."""
    files = _official_files(tmp_path, {"1.0": (OLD, "00000000.jpg:向き=横\n", True),
                                       "1.1": (OLD, "00000000.jpg:向き=正面\n", True),
                                       "1.3": (NEW, None, True)})
    root = tmp_path / "root"
    official_root(root, tmp_path / "v1.1", with_urls=False)
    with IIIFServer(files) as srv:
        monkeypatch.setattr(D, "OFFICIAL_REPO", srv.url + "/meta")
        report = download(_opts(root, srv, version="1.3"))
    assert report.previous == "1.1"


def test_online_a_matching_version_without_urls_is_named_in_the_refusal(tmp_path, monkeypatch):
    """The root's labels are 1.0's but 1.0's urls.txt cannot be fetched: refused, naming 1.0 and the
    command that keeps it, and the root unchanged."""
    files = _official_files(tmp_path, {"1.0": (OLD, None, False), "1.3": (NEW, None, True)})
    root = tmp_path / "root"
    official_root(root, tmp_path / "v1.0", with_urls=False)
    before = _root_state(root)
    with IIIFServer(files) as srv:
        monkeypatch.setattr(D, "OFFICIAL_REPO", srv.url + "/meta")
        with pytest.raises(KaogenError) as e:
            download(_opts(root, srv, version="1.3"))
    assert f"{root} holds KaoKore 1.0's images" in str(e.value)
    assert f"kaogen data download --root {root} --version 1.0" in str(e.value)
    assert _root_state(root) == before


# ------------------------------------------------------------------------------------ one HTTP request

class _Odd(LoopbackServer):
    """/plain: a body without Content-Length (closed to end it); /chunked: a chunked body that also
    claims a longer Content-Length; /short: Content-Length longer than the body; /drop: the connection
    closed without an answer; /hang: headers never sent; /600: status 600."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path == "/plain":
                    self.protocol_version = "HTTP/1.0"
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(b"no length")
                    self.close_connection = True
                elif self.path == "/chunked":
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.send_header("Content-Length", "999")
                    self.end_headers()
                    self.wfile.write(b"4\r\nbody\r\n0\r\n\r\n")
                elif self.path == "/short":
                    self.send_response(200)
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    self.wfile.write(b"only ten b")
                    self.close_connection = True
                elif self.path == "/drop":
                    self.close_connection = True
                elif self.path == "/hang":
                    time.sleep(1.0)
                    self.close_connection = True
                else:
                    self.send_response(int(self.path.strip("/")))
                    self.send_header("Content-Length", "0")
                    self.end_headers()

        super().__init__(Handler)


def test_what_one_request_reports():
    """A body without Content-Length is read to its end; a body shorter than announced, a dropped
    connection and a read timeout are transient with a reason the report can show; a status beyond
    5xx (600) is not a server error and is not retried."""
    with _Odd() as srv:
        assert D._get(srv.url + "/plain", 5) == b"no length"
        with pytest.raises(D._Transient, match=r"^truncated body \(4 of 999 bytes\)$"):
            D._get(srv.url + "/chunked", 5)
        with pytest.raises(D._Transient, match=r"^truncated body \(10 bytes\)$"):
            D._get(srv.url + "/short", 5)
        with pytest.raises(D._Transient, match=r"^connection error: RemoteDisconnected$"):
            D._get(srv.url + "/drop", 5)
        with pytest.raises(D._Transient, match=r"^timed out$"):
            D._get(srv.url + "/hang", 0.2)
        with pytest.raises(D._Permanent, match=r"^HTTP 600$"):
            D._get(srv.url + "/600", 5)
        with pytest.raises(D._Transient, match=r"^HTTP 599$"):
            D._get(srv.url + "/599", 5)


def test_a_connect_timeout_is_reported_as_timed_out():
    """A host that never accepts (its listen queue full) times out on connect: the reason is
    "timed out", like a read timeout, not a connection error."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):                      # fill the accept queue: later SYNs are dropped
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.05)
        with pytest.raises(D._Transient) as e:
            D._get(f"http://127.0.0.1:{port}/x", 0.3)
        if str(e.value).startswith("connection error"):
            pytest.skip(f"this kernel did not drop the SYN ({e.value})")
        assert str(e.value) == "timed out"
    finally:
        for s in fillers:
            s.close()
        lst.close()


# ------------------------------------------------------------------------------------- a stored face

def _png(mode: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), (200, 40, 90)).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(mode: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), (200, 40, 90)).convert(mode).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.mark.parametrize("data", [_png("RGB"), _png("L"), _jpeg("L"), _jpeg("RGB")], ids=["png", "gray-png",
                                                                                           "gray-jpeg", "jpeg"])
def test_every_stored_face_is_an_rgb_jpeg_with_the_servers_pixels(tmp_path, data):
    """Whatever the server sends (a PNG, a grayscale JPEG), images_S/NNNNNNNN.jpg is an RGB JPEG with
    the picture's pixels (within JPEG's error at quality 95); an RGB JPEG is kept byte for byte. A
    re-encoded face is written at quality 95: its quantisation tables are quality 95's (not Pillow's
    default 75, nor another quality)."""
    dest = tmp_path / "00000000.jpg"
    D._store_image(data, dest)
    with Image.open(dest) as img:
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (24, 16)
        got = img.getpixel((12, 8))
        tables = img.quantization
    ref = io.BytesIO()
    Image.new("RGB", (24, 16)).save(ref, format="JPEG", quality=95)
    assert tables == Image.open(ref).quantization
    want = Image.open(io.BytesIO(data)).convert("RGB").getpixel((12, 8))
    assert all(abs(a - b) <= 3 for a, b in zip(got, want)), (got, want)
    if data == _jpeg("RGB"):
        assert dest.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["00000000.jpg"]           # no temporary left


def test_a_body_that_is_no_image_or_too_large_says_so(tmp_path, monkeypatch):
    """The report's reasons: "body is not a decodable image" (transient: retried), and a picture over
    the pixel limit names "the body" and the limit (permanent)."""
    with pytest.raises(D._Transient, match=r"^body is not a decodable image$"):
        D._store_image(b"<html>maintenance</html>", tmp_path / "a.jpg")
    monkeypatch.setenv("KAOGEN_MAX_PIXELS", "100")
    with pytest.raises(D._Permanent, match=r"^the body is 24x16 = 384 pixels, over kaogen's limit of 100"):
        D._store_image(_png("RGB"), tmp_path / "b.jpg")
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------ the pool

def test_workers_caps_the_parallel_connections(tmp_path):
    """--workers 1 means one request at a time (a server that asks for it is obeyed); 3 means three."""
    for workers in (1, 3):
        running, peak, lock = [0], [0], threading.Lock()

        def work(job):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.03)
            with lock:
                running[0] -= 1
            return job

        out = list(D.run_parallel(list(range(9)), work, workers, threading.Event(), False, "img", "x"))
        assert sorted(job for job, _, _ in out) == list(range(9)) and peak[0] == workers


def test_the_progress_bar_counts_jobs_and_shows_failures(tmp_path, capsys):
    """With progress on, the bar ends at N/N with the failures and retries the postfix gives."""
    def work(job):
        if job == 2:
            raise D._Permanent("HTTP 404")
        return job

    failed = []
    for job, result, error in D.run_parallel(list(range(5)), work, 2, threading.Event(), True, "img", "faces",
                                             lambda: {"failed": len(failed), "retries": 7}):
        if error is not None:
            failed.append(job)
    err = capsys.readouterr().err
    assert failed == [2] and "5/5" in err and "failed=1" in err and "retries=7" in err
    list(D.run_parallel([1, 2], lambda j: j, 1, threading.Event(), True, "img", "faces"))   # no postfix: fine
    assert "2/2" in capsys.readouterr().err


def test_ctrl_c_cancels_what_has_not_started_and_waits_for_what_runs():
    """Ctrl-C (KeyboardInterrupt) during a download: the stop event is set (retries end), jobs not
    started are cancelled (a handful, not all 40, ever run), and when it propagates nothing is still
    running; leaving the loop early also waits for the running jobs."""
    started, running, lock = [], [0], threading.Lock()

    def work(job):
        with lock:
            started.append(job)
            running[0] += 1
        try:
            if job == 0:
                raise KeyboardInterrupt
            time.sleep(0.02)
            return job
        finally:
            with lock:
                running[0] -= 1

    stop = threading.Event()
    with pytest.raises(KeyboardInterrupt):
        for _ in D.run_parallel(list(range(40)), work, 2, stop, False, "img", "x"):
            pass
    assert stop.is_set() and running[0] == 0 and len(started) < 10
    started.clear()
    gen = D.run_parallel(list(range(1, 9)), work, 4, threading.Event(), False, "img", "x")
    next(gen)
    gen.close()                                   # the caller stops reading (e.g. an error of its own)
    assert running[0] == 0


# ---------------------------------------------------------------------------------------- the images

def test_one_worker_another_size_and_lines_that_are_not_iiif_urls(tmp_path):
    """--workers 1 is allowed (0 is refused); --size 512 writes ROOT/images_512/ and asks 512 px,
    while 256 keeps each URL's own size (Keio's !200,200); a line of urls.txt that is no IIIF URL is
    a permanent failure of that face with its line and reason, the lines after it are fetched; the
    report counts exactly the retries made and names the withdrawn faces; the report file records it."""
    meta = make_metadata(tmp_path / "meta", ["ok", "ok", "ok", "flaky", ""])
    lines = (meta / "urls.txt").read_text().splitlines()
    lines[1] = lines[1].replace("/256,256/", "/!200,200/")
    lines[2] = "not a url"
    (meta / "urls.txt").write_text("\n".join(lines) + "\n")
    root = tmp_path / "root"
    with IIIFServer() as srv:
        with pytest.raises(KaogenError, match="--workers"):
            download(_opts(root, srv, metadata=str(meta), workers=0))
        report = download(_opts(root, srv, metadata=str(meta), workers=1, retries=1, backoff=0.0))
        assert report.fetched == 3 and [(f.image, f.url) for f in report.failed] == [("00000002.jpg", "not a url")]
        assert "not an http(s) IIIF URL" in report.failed[0].reason
        assert report.retries == 1 and report.withdrawn == ["00000004.jpg"]
        assert any("/!200,200/0/default.jpg" in p for p in srv.hits) and any("/256,256/" in p for p in srv.hits)
        srv.hits.clear()
        big = download(_opts(root, srv, metadata=str(meta), workers=1, size=512, retries=1, backoff=0.0))
        assert big.fetched == 3 and big.retries == 1 and sorted(p.name for p in (root / "images_512").iterdir()) == [
            "00000000.jpg", "00000001.jpg", "00000003.jpg"]
        assert sorted(p.split("/")[-3] for p in srv.hits) == ["!512,512", "512,512", "512,512"]
    import json

    rep = json.loads((root / "download_report_512.json").read_text())
    assert rep["fetched"] == 3 and rep["complete"] is False and rep["total"] == 5 and rep["withdrawn"] == 1
    assert rep["failed"][0]["image"] == "00000002.jpg" and rep["version"] == "1.3"


def test_images_of_an_unstamped_root(tmp_path):
    """download_images on a root that has urls.txt but no kaogen stamp (the official layout): the
    report's version is unknown (None), not a crash."""
    root = make_metadata(tmp_path / "root", ["ok"])
    with IIIFServer() as srv:
        report = D.download_images(_opts(root, srv))
    assert report.version is None and report.fetched == 1 and report.complete


# -------------------------------------------------------------------------------------- the metadata

def test_metadata_is_fetched_once_then_read_from_the_root(tmp_path, monkeypatch):
    """Online: 1.3's files come from the official repository (an optional one it lacks is skipped,
    a required one it lacks is refused naming the URL); a second run for the same version, the
    repository unreachable, resumes from the root's own stamped copy."""
    meta = make_metadata(tmp_path / "meta", ["ok", "ok"])
    files = {f"/meta/dataset_v1.3/{n}": (meta / n).read_bytes() for n in ("labels.csv", "urls.txt")}
    root = tmp_path / "root"
    with IIIFServer(files) as srv:
        monkeypatch.setattr(D, "OFFICIAL_REPO", srv.url + "/meta")
        with pytest.raises(KaogenError, match=r"cannot fetch KaoKore 1\.2 metadata .*/meta/dataset_v1\.2/labels\.csv"):
            download(_opts(tmp_path / "other", srv, version="1.2"))
        assert download(_opts(root, srv)).fetched == 2
        assert sorted(p.name for p in root.iterdir()) == ["download_report_256.json", "images_256",
                                                          "kaokore_version.txt", "labels.csv", "urls.txt"]
        monkeypatch.setattr(D, "OFFICIAL_REPO", "http://127.0.0.1:9/meta")       # nothing listens there
        again = download(_opts(root, srv))
    assert again.present == 2 and again.complete


def test_switching_versions_rewrites_the_metadata_and_every_size_folder(tmp_path):
    """Going from 1.2 to 1.3: a face whose URL changed or that 1.3 withdrew is removed from every
    images_S/ folder, files named otherwise (and a file named like a folder) are left alone; the target's files
    replace the old ones and a file the target lacks (labels.metadata.en.txt) is removed."""
    old, new = make_metadata(tmp_path / "old", OLD), make_metadata(tmp_path / "new", NEW)
    (old / "labels.metadata.en.txt").write_text("gender: 0 male, 1 female\n")
    root = tmp_path / "root"
    with IIIFServer() as srv:
        download(_opts(root, srv, metadata=str(old), version="1.2"))
        download(_opts(root, srv, metadata=str(old), version="1.2", size=512))
        (root / "images_512" / "notes.txt").write_text("mine")
        (root / "images_none").write_text("a file, not a folder")
        report = download(_opts(root, srv, metadata=str(new), version="1.3"))
    assert report.replaced == ["00000002.jpg", "00000004.jpg"]
    assert sorted(p.name for p in (root / "images_512").iterdir()) == [
        "00000000.jpg", "00000001.jpg", "00000003.jpg", "00000005.jpg", "notes.txt"]
    assert (root / "urls.txt").read_bytes() == (new / "urls.txt").read_bytes()
    assert (root / "labels.csv").read_bytes() == (new / "labels.csv").read_bytes()
    assert not (root / "labels.metadata.en.txt").exists() and (root / "images_none").is_file()
    assert (root / "kaokore_version.txt").read_text().startswith("1.3\n")


def test_metadata_refusals(tmp_path):
    """An unknown version, a --root that is a file and a urls.txt that is not UTF-8 are refused
    before anything is written."""
    meta = make_metadata(tmp_path / "meta", ["ok"])
    with pytest.raises(KaogenError, match="unknown KaoKore version '2.0'"):
        D.fetch_metadata(DownloadOptions(root=str(tmp_path / "r"), metadata=str(meta), version="2.0"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(KaogenError, match="is a file"):
        D.fetch_metadata(DownloadOptions(root=str(tmp_path / "file"), metadata=str(meta)))
    (meta / "urls.txt").write_bytes(b"https://h/\xff\xfe/iiif\n")
    with pytest.raises(KaogenError, match="not UTF-8"):
        D.fetch_metadata(DownloadOptions(root=str(tmp_path / "r2"), metadata=str(meta)))
    assert not (tmp_path / "r").exists() and not (tmp_path / "r2" / "urls.txt").exists()


def test_metadata_saved_by_windows_tools_is_still_the_same_metadata(tmp_path):
    """A root whose urls.txt and labels.csv were saved with a BOM, CRLF line ends and trailing blank
    lines (Excel, Notepad) holds the same metadata as the target's: its version is recognised and
    no image is fetched again."""
    new = make_metadata(tmp_path / "new", NEW)
    with IIIFServer() as srv:
        for name, with_urls in (("a", True), ("b", False)):
            root = tmp_path / name
            official_root(root, new, with_urls=with_urls)
            for f in ("urls.txt", "labels.csv"):
                if (root / f).is_file():
                    text = (root / f).read_bytes().replace(b"\n", b"\r\n")
                    (root / f).write_bytes(b"\xef\xbb\xbf" + text + b"\r\n  \r\n")
            report = download(_opts(root, srv, metadata=str(new), version="1.3"))
            assert report.previous == "1.3" and report.replaced == [] and report.fetched == 0, name
            assert report.complete and report.present == 6


def test_a_broken_image_on_disk_is_fetched_again(tmp_path):
    """Resume keeps a face only when it decodes: one cut in half on disk is fetched again."""
    meta = make_metadata(tmp_path / "meta", ["ok", "ok", "ok"])
    root = tmp_path / "root"
    with IIIFServer() as srv:
        download(_opts(root, srv, metadata=str(meta)))
        p = root / "images_256" / "00000001.jpg"
        p.write_bytes(p.read_bytes()[:40])
        again = download(_opts(root, srv, metadata=str(meta)))
    assert again.fetched == 1 and again.present == 2 and again.complete
    assert p.read_bytes() == face_bytes(1)


def test_download_obeys_workers_and_shows_its_progress(tmp_path, monkeypatch, capsys):
    """Through download(): --workers 1 means one request at a time; with progress on, stderr shows
    the images_S bar counting img, ending at N/N, with the failures and retries so far."""
    meta = make_metadata(tmp_path / "meta", ["ok", "ok", "missing", "flaky"])
    running, peak, lock = [0], [0], threading.Lock()
    real_get = D._get

    def counting_get(url, timeout):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            time.sleep(0.02)
            return real_get(url, timeout)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(D, "_get", counting_get)
    with IIIFServer() as srv:
        report = download(_opts(tmp_path / "root", srv, metadata=str(meta), workers=1, retries=1, backoff=0.0,
                                progress=True))
    assert report.fetched == 3 and len(report.failed) == 1 and report.retries == 1 and peak[0] == 1
    err = capsys.readouterr().err
    assert "images_256" in err and "4/4" in err and "img/s" in err and "failed=1" in err and "retries=1" in err


def test_ctrl_c_during_a_download_ends_the_retries_at_once(tmp_path, monkeypatch):
    """Ctrl-C while another face waits to retry (a 30 s backoff): the wait ends at once (the stop
    event, never a plain sleep), and KeyboardInterrupt reaches the caller."""
    meta = make_metadata(tmp_path / "meta", ["ok", "flaky"])
    first_failed = threading.Event()
    slept: list[float] = []
    monkeypatch.setattr(D.time, "sleep", slept.append)

    def get(url, timeout):
        if "flaky-1" in url:
            first_failed.set()
            raise D._Transient("HTTP 503")
        first_failed.wait(5)
        raise KeyboardInterrupt

    monkeypatch.setattr(D, "_get", get)
    with IIIFServer() as srv:
        t0 = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            download(_opts(tmp_path / "root", srv, metadata=str(meta), workers=2, retries=3, backoff=30.0))
    assert time.perf_counter() - t0 < 10 and slept == []


def test_the_roots_own_metadata_is_reused_only_when_its_stamp_vouches_for_it(tmp_path, monkeypatch):
    """Resume reads the root's metadata instead of the repository only when the stamp is for the
    version asked, lists digests and every stamped file is unchanged and present; otherwise the
    official files are fetched again (a labels.csv edited since is put back)."""
    meta = make_metadata(tmp_path / "meta", ["ok", "ok"])
    files = {f"/meta/{folder}/{n}": (meta / n).read_bytes() for folder in ("dataset_v1.2", "dataset_v1.3")
             for n in ("labels.csv", "urls.txt")}
    root = tmp_path / "root"
    with IIIFServer(files) as srv:
        monkeypatch.setattr(D, "OFFICIAL_REPO", srv.url + "/meta")
        fetched = lambda: sum(n for p, n in srv.hits.items() if p.startswith("/meta/"))  # noqa: E731
        download(_opts(root, srv))
        n = fetched()
        download(_opts(root, srv))
        assert fetched() == n                                        # stamped, intact: read from the root
        download(_opts(root, srv, version="1.2"))
        assert fetched() > n                                         # another version: fetched
        n = fetched()
        (root / "labels.csv").write_text("image,gender,status,set\n")
        download(_opts(root, srv, version="1.2"))
        assert fetched() > n and (root / "labels.csv").read_bytes() == (meta / "labels.csv").read_bytes()
        n = fetched()
        (root / "kaokore_version.txt").write_text("1.2\n")          # an old stamp without digests
        download(_opts(root, srv, version="1.2"))
        assert fetched() > n
        n = fetched()
        (root / "urls.txt").unlink()
        for face in (root / "images_256").iterdir():
            face.unlink()
        (root / "kaokore_version.txt").write_text(D.stamp_text(root, "1.2"))   # stamps labels.csv only
        download(_opts(root, srv, version="1.2"))
        assert fetched() > n and (root / "urls.txt").read_bytes() == (meta / "urls.txt").read_bytes()


def test_the_report_file_is_readable_json(tmp_path):
    """download_report_S.json: one field a line (indent 2), non-ASCII kept as written (a Japanese URL
    stays legible), a final newline; complete and the withdrawn count are in it."""
    import json

    report = D.DownloadReport(total=3, fetched=1, failed=[D.Failure("00000001.jpg", "画像", "not an http(s) IIIF URL")],
                              withdrawn=["00000002.jpg"], version="1.3")
    path = D.write_report(tmp_path, 512, report)
    text = path.read_text(encoding="utf-8")
    assert path == tmp_path / "download_report_512.json" and text.endswith("}\n")
    assert '\n  "fetched": 1,\n' in text and '"url": "画像"' in text
    data = json.loads(text)
    assert data["complete"] is False and data["withdrawn"] == 1 and data["failed"][0]["image"] == "00000001.jpg"
    assert data["version"] == "1.3" and data["total"] == 3 and data["present"] == 0


def test_failures_are_listed_by_image_with_their_url_and_the_time_is_the_runs(tmp_path, monkeypatch):
    """Failures finish in any order but are reported sorted by image, each with the URL asked; the
    report's seconds is the run's wall time."""
    meta = make_metadata(tmp_path / "meta", ["missing"] * 4)

    def get(url, timeout):
        i = int(url.split("missing-")[1].split(".")[0])
        time.sleep(0.03 * (4 - i))                 # the first faces fail last
        raise D._Permanent("HTTP 404")

    monkeypatch.setattr(D, "_get", get)
    with IIIFServer() as srv:
        t0 = time.perf_counter()
        report = download(_opts(tmp_path / "root", srv, metadata=str(meta), workers=4))
        wall = time.perf_counter() - t0
    assert [f.image for f in report.failed] == [f"{i:08d}.jpg" for i in range(4)]
    assert [f.url for f in report.failed] == [
        f"{srv.url}/iiif/NRE/missing-{i}.tif/10,10,100,100/256,256/0/default.jpg" for i in range(4)]
    assert 0.09 <= report.seconds <= wall


def test_a_root_below_folders_that_do_not_exist_yet_is_created(tmp_path):
    """--root a/b/c where a/ does not exist: the folders are created (like mkdir -p)."""
    meta = make_metadata(tmp_path / "meta", ["ok"])
    root = tmp_path / "new" / "deeper" / "root"
    with IIIFServer() as srv:
        report = download(_opts(root, srv, metadata=str(meta)))
    assert report.complete and (root / "images_256" / "00000000.jpg").is_file()


def test_version_switch_edges_stray_images_counts_and_a_crash_midway(tmp_path, monkeypatch):
    """Images numbered past the end of urls.txt (old or new) are removed and fetched if the target
    has them; fetch_metadata counts the kept ones; a crash while the new metadata is written leaves
    the old urls.txt in place (it is written after every other file), so the next run still knows
    which version the images are."""
    old, new = make_metadata(tmp_path / "old", OLD), make_metadata(tmp_path / "new", NEW)
    for d in (old, new):
        (d / "labels.metadata.en.txt").write_text(f"{d.name}\n")
    root = tmp_path / "root"
    with IIIFServer() as srv:
        download(_opts(root, srv, metadata=str(old), version="1.2"))
        for i in (6, 7):                                   # 6 == len(old urls), 7 == len(new urls)
            (root / "images_256" / f"{i:08d}.jpg").write_bytes(face_bytes(300 + i))
        real = D.atomic_write_bytes

        def crash_on_en(dest, data):
            if dest.name == "labels.metadata.en.txt":
                raise OSError("disk full")
            return real(dest, data)

        monkeypatch.setattr(D, "atomic_write_bytes", crash_on_en)
        with pytest.raises(OSError):
            D.fetch_metadata(_opts(root, srv, metadata=str(new), version="1.3"))
        assert (root / "urls.txt").read_bytes() == (old / "urls.txt").read_bytes()
        monkeypatch.setattr(D, "atomic_write_bytes", real)
        rec = D.fetch_metadata(_opts(root, srv, metadata=str(new), version="1.3"))
        assert rec.kept == 4 and rec.previous == "1.2"
    old2 = tmp_path / "again"
    with IIIFServer() as srv:
        download(_opts(old2, srv, metadata=str(old), version="1.2"))
        for i in (6, 7):
            (old2 / "images_256" / f"{i:08d}.jpg").write_bytes(face_bytes(300 + i))
        report = download(_opts(old2, srv, metadata=str(new), version="1.3"))
    assert report.replaced == ["00000002.jpg", "00000004.jpg", "00000006.jpg", "00000007.jpg"]
    assert not (old2 / "images_256" / "00000007.jpg").exists()
    assert (old2 / "images_256" / "00000006.jpg").read_bytes() == face_bytes(6)


def test_a_urls_txt_with_bytes_that_are_not_utf8_is_read_line_for_line():
    """urls.txt is read leniently (a stray byte from another tool's encoding becomes U+FFFD): the
    line count, which numbers the faces, is kept and the readable lines are as written, instead of a
    UnicodeDecodeError traceback."""
    urls = D._urls_of(b"\xef\xbb\xbfhttps://h/a.jpg\r\nhttps://h/\xff\xfe.jpg\n\nhttps://h/c.jpg\n")
    assert urls == ["https://h/a.jpg", "https://h/\ufffd\ufffd.jpg", "", "https://h/c.jpg"]
