"""The IIIF downloader end to end against a loopback server that plants faults."""

from __future__ import annotations

import importlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

import pytest

from kaogen.cli.main import cli
from kaogen.data.datasets import KaoKoreDataset
from kaogen.data.download import DownloadOptions, download

from conftest import LoopbackServer
download_module = importlib.import_module("kaogen.data.download")
REPO = Path(__file__).resolve().parents[1]


def face_bytes(i: int, mode: str = "RGB", fmt: str = "JPEG") -> bytes:
    img = Image.new("RGB", (32, 32), ((i * 37) % 256, (i * 91) % 256, 128)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


class IIIFServer(LoopbackServer):
    """Plays an IIIF server. The identifier's name picks the behaviour:
    ok, missing (404), flaky (500 then OK), busy (429 with Retry-After then OK), slow (sleeps past
    the client timeout once), trunc (truncated body once), html (non-image body once), gray
    (grayscale PNG), delay (always 50 ms: for the kill test)."""

    def __init__(self, files: dict[str, bytes] | None = None):
        self.hits: Counter = Counter()
        self.lock = threading.Lock()
        self.files = files or {}        # other paths (e.g. /meta/dataset/labels.csv): served as they are, else 404
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if not self.path.startswith("/iiif/"):
                    with server.lock:
                        server.hits[self.path] += 1
                    if self.path not in server.files:
                        return self.send_error(404)
                    body = server.files[self.path]
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                parts = self.path.split("/")
                ident = parts[-5]
                kind, num = ident.split("-")[0], int(ident.split("-")[1].split(".")[0])
                with server.lock:
                    server.hits[self.path] += 1
                    n = server.hits[self.path]
                body = face_bytes(num)
                if kind == "missing":
                    return self.send_error(404)
                if kind == "flaky" and n == 1:
                    return self.send_error(500)
                if kind == "busy" and n == 1:
                    self.send_response(429)
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    return
                if kind == "slow" and n == 1:
                    time.sleep(0.6)
                if kind == "delay":
                    time.sleep(0.05)
                if kind == "html" and n == 1:
                    body = b"<html>maintenance</html>"
                if kind == "gray":
                    body = face_bytes(num, "L", "PNG")
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if kind == "trunc" and n == 1:
                    self.wfile.write(body[: len(body) // 3])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        super().__init__(Handler)


def make_metadata(folder: Path, kinds: list[str]) -> Path:
    """urls.txt and labels.csv; a kind "" is a withdrawn face (an empty line; its label row stays)."""
    folder.mkdir(parents=True, exist_ok=True)
    urls = [f"https://iiif.example.org/iiif/NRE/{k}-{i}.tif/10,10,100,100/256,256/0/default.jpg" if k else ""
            for i, k in enumerate(kinds)]
    (folder / "urls.txt").write_text("\n".join(urls) + "\n")
    rows = ["image,gender,status,set"] + [f"{i:08d}.jpg,{i % 2},{i % 4},train" for i in range(len(kinds))]
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_download_survives_faults_and_reports_permanent_failures(tmp_path):
    kinds = ["ok", "missing", "flaky", "busy", "slow", "trunc", "html", "gray", "ok", "ok"]
    meta = make_metadata(tmp_path / "meta", kinds)
    root = tmp_path / "root"
    with IIIFServer() as srv:
        opts = DownloadOptions(root=str(root), metadata=str(meta), mirror=srv.url, workers=4, timeout=0.3,
                               retries=3, backoff=0.01, progress=False)
        report = download(opts)
        assert report.fetched == 9 and report.present == 0 and report.retries >= 5
        assert [(f.image, f.reason) for f in report.failed] == [("00000001.jpg", "HTTP 404")]
        assert not report.complete
        for i, k in enumerate(kinds):
            p = root / "images_256" / f"{i:08d}.jpg"
            if k == "missing":
                assert not p.exists()
                continue
            with Image.open(p) as img:
                assert img.mode == "RGB" and img.format == "JPEG" and img.size == (32, 32)
        assert "HTTP 404" in (root / "download_report_256.json").read_text()
        assert not list((root / "images_256").glob(".*"))          # no temporaries left
        hits_before = sum(srv.hits.values())
        again = download(opts)                                     # resume: nothing but the 404 is asked again
        assert again.present == 9 and again.fetched == 0
        assert sum(srv.hits.values()) - hits_before == 1
        # --size asks the same region at another size.
        download(DownloadOptions(**{**opts.__dict__, "size": 512}))
        assert any("/10,10,100,100/512,512/0/default.jpg" in p for p in srv.hits)
    # CLI: verify and info agree with the disk; exit codes say whether everything is there.
    r = CliRunner().invoke(cli, ["data", "verify", "--root", str(root)])
    assert r.exit_code == 1 and "missing 00000001.jpg" in r.output and "9 good, 1 missing, 0 corrupt" in r.output
    r = CliRunner().invoke(cli, ["data", "info", "--root", str(root), "--json"])
    assert r.exit_code == 0 and '"images_on_disk": 9' in r.output


def test_download_resumes_after_a_kill(tmp_path):
    n = 40
    meta = make_metadata(tmp_path / "meta", ["delay"] * n)
    root = tmp_path / "root"
    with IIIFServer() as srv:
        cmd = [sys.executable, str(REPO / "cli.py"), "data", "download", "--root", str(root), "--metadata", str(meta),
               "--mirror", srv.url, "--workers", "2", "--no-progress", "--backoff", "0"]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        folder = root / "images_256"
        deadline = time.time() + 60
        finished = lambda: {p.name for p in folder.glob("*.jpg") if not p.name.startswith(".")}  # noqa: E731
        while time.time() < deadline and len(finished()) < 8 and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = finished()           # temporaries (".NAME.tmp-XXXX.jpg") of writes the kill cut short are not done
        assert 8 <= len(done) < n
        first = Counter(srv.hits)
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert r.returncode == 0, r.stderr
        assert f"{len(done)} already present" in r.stdout
        # Files finished before the kill were not fetched again.
        for name in done:
            path = next(p for p in srv.hits if f"-{int(name[:8])}.tif" in p)
            assert srv.hits[path] == first[path] == 1
        assert len(list(folder.glob("*.jpg"))) == n and not list(folder.glob(".*"))


def test_download_bad_input(tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["data", "download", "--root", str(tmp_path / "r"), "--metadata", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "does not exist" in r.output and "Traceback" not in r.output
    (tmp_path / "m").mkdir()
    r = runner.invoke(cli, ["data", "download", "--root", str(tmp_path / "r"), "--metadata", str(tmp_path / "m")])
    assert r.exit_code == 1 and "lacks labels.csv, urls.txt" in r.output
    r = runner.invoke(cli, ["data", "verify", "--root", str(tmp_path / "nowhere")])
    assert r.exit_code == 1 and "does not exist" in r.output


# ------------------------------------------------------------------------------- versions, withdrawn

def official_root(root: Path, meta: Path, with_urls: bool) -> dict[str, bytes]:
    """A root as the official download.py leaves it for the version in `meta`: labels.csv (and the other
    metadata files, never urls.txt, unless `with_urls`) and images_256/%08d.jpg, no kaogen stamp.
    Each face's colour is 200 + its number, unlike any face the server sends."""
    (root / "images_256").mkdir(parents=True)
    for name in ("labels.csv", "original_tags.txt") + (("urls.txt",) if with_urls else ()):
        if (meta / name).is_file():
            (root / name).write_bytes((meta / name).read_bytes())
    images = {}
    for i, url in enumerate((meta / "urls.txt").read_text().splitlines()):
        if url:
            images[f"{i:08d}.jpg"] = face_bytes(200 + i)
            (root / "images_256" / f"{i:08d}.jpg").write_bytes(images[f"{i:08d}.jpg"])
    return images


OLD = ["ok", "ok", "old", "ok", "old", "ok"]            # a fake older version: 6 faces
NEW = ["ok", "ok", "ok", "ok", "", "ok", "ok"]          # the target: 2 re-cut (new URL), 4 withdrawn, 6 added


def test_official_root_with_urls_gets_exactly_the_changed_images_again(tmp_path):
    old = make_metadata(tmp_path / "v_old", OLD)
    new = make_metadata(tmp_path / "v_new", NEW)
    (new / "labels.csv").write_text((new / "labels.csv").read_text().replace(",train\n", ",dev\n", 1))
    root = tmp_path / "root"
    before = official_root(root, old, with_urls=True)
    with IIIFServer() as srv:
        r = CliRunner().invoke(cli, ["data", "download", "--root", str(root), "--metadata", str(new), "--mirror",
                                     srv.url, "--no-progress", "--retries", "0"])
        assert r.exit_code == 0, r.output
        assert "2 whose URL differs" in r.output and "1 withdrawn" in r.output
        # Only the faces whose URL changed (2) or that are new (6) were asked for.
        asked = sorted(int(p.split("-")[1].split(".")[0]) for p in srv.hits)
        assert asked == [2, 6]
    folder = root / "images_256"
    for name in ("00000000.jpg", "00000001.jpg", "00000003.jpg", "00000005.jpg"):   # same URL: kept as they were
        assert (folder / name).read_bytes() == before[name]
    assert (folder / "00000002.jpg").read_bytes() == face_bytes(2)                  # new URL: fetched again
    assert not (folder / "00000004.jpg").exists()                                    # withdrawn in the target
    assert (root / "labels.csv").read_bytes() == (new / "labels.csv").read_bytes()
    assert (root / "kaokore_version.txt").read_text().startswith("1.3\n")
    r = CliRunner().invoke(cli, ["data", "verify", "--root", str(root)])
    assert r.exit_code == 0 and "6 good, 0 missing, 0 corrupt (1 more withdrawn" in r.output, r.output
    # The official tool writing its labels.csv over this root afterwards is caught by verify.
    (root / "labels.csv").write_bytes((old / "labels.csv").read_bytes())
    r = CliRunner().invoke(cli, ["data", "verify", "--root", str(root)])
    assert r.exit_code == 1 and "labels.csv changed since" in r.output
    with pytest.warns(UserWarning, match="labels.csv changed since"):
        KaoKoreDataset(root, split="all", labels="none")


def test_official_root_without_urls_is_refused_offline_and_unchanged(tmp_path):
    old = make_metadata(tmp_path / "v_old", OLD)
    new = make_metadata(tmp_path / "v_new", NEW)
    (new / "labels.csv").write_text((new / "labels.csv").read_text() + "00000009.jpg,0,0,test\n")
    root = tmp_path / "root"
    before = official_root(root, old, with_urls=False)
    labels = (root / "labels.csv").read_bytes()
    r = CliRunner().invoke(cli, ["data", "download", "--root", str(root), "--metadata", str(new),
                                 "--mirror", "http://127.0.0.1:9", "--no-progress", "--backoff", "0"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit)
    assert len(r.output.strip().splitlines()) == 1 and r.output.startswith("Error: ")
    assert "not KaoKore 1.3's" in r.output and f"kaogen data download --root {root} --version" in r.output
    assert (root / "labels.csv").read_bytes() == labels and not (root / "kaokore_version.txt").exists()
    assert {p.name: p.read_bytes() for p in (root / "images_256").iterdir()} == before
    # The same version's metadata is recognised: the root is adopted, its images kept.
    r = CliRunner().invoke(cli, ["data", "download", "--root", str(root), "--metadata", str(old), "--version", "1.0",
                                 "--mirror", "http://127.0.0.1:9", "--no-progress", "--backoff", "0"])
    assert r.exit_code == 0 and "0 fetched, 6 already present" in r.output, r.output
    assert (root / "kaokore_version.txt").read_text().startswith("1.0\n")


def test_official_root_without_urls_is_named_and_reconciled_online(tmp_path, monkeypatch):
    old = make_metadata(tmp_path / "v_old", OLD)
    new = make_metadata(tmp_path / "v_new", NEW)
    (new / "labels.csv").write_text((new / "labels.csv").read_text() + "00000009.jpg,0,0,test\n")
    files = {f"/meta/dataset/{n}": (old / n).read_bytes() for n in ("labels.csv", "urls.txt")}       # "1.0"
    files.update({f"/meta/dataset_v1.3/{n}": (new / n).read_bytes() for n in ("labels.csv", "urls.txt")})
    root = tmp_path / "root"
    before = official_root(root, old, with_urls=False)
    with IIIFServer(files) as srv:
        monkeypatch.setattr(download_module, "OFFICIAL_REPO", srv.url + "/meta")
        report = download(DownloadOptions(root=str(root), mirror=srv.url, progress=False, retries=0))
        assert report.previous == "1.0" and report.replaced == ["00000002.jpg", "00000004.jpg"]
        assert report.complete and len(report.withdrawn) == 1
        assert sorted(int(p.split("-")[1].split(".")[0]) for p in srv.hits if p.startswith("/iiif/")) == [2, 6]
    assert (root / "images_256" / "00000000.jpg").read_bytes() == before["00000000.jpg"]
    assert (root / "images_256" / "00000002.jpg").read_bytes() == face_bytes(2)


def test_withdrawn_faces_are_not_failures(tmp_path):
    kinds = ["ok", "", "ok", "", "ok"]            # v1.0 / v1.1 style: empty lines, numbering kept
    meta = make_metadata(tmp_path / "meta", kinds)
    root = tmp_path / "root"
    with IIIFServer() as srv:
        args = ["data", "download", "--root", str(root), "--metadata", str(meta), "--mirror", srv.url, "--no-progress",
                "--backoff", "0"]       # a fault retried at once: a broken fetch fails fast, not after 30 s of backoff
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 0, r.output
        assert "3 fetched, 0 already present, 0 failed of 3" in r.output and "2 withdrawn" in r.output
        r = CliRunner().invoke(cli, args)           # and again: still complete
        assert r.exit_code == 0 and "3 already present" in r.output
    names = sorted(p.name for p in (root / "images_256").iterdir())
    assert names == ["00000000.jpg", "00000002.jpg", "00000004.jpg"]       # file names keep the line numbers
    with Image.open(root / "images_256" / "00000004.jpg") as img:
        assert img.getpixel((0, 0)) == Image.open(io.BytesIO(face_bytes(4))).convert("RGB").getpixel((0, 0))
    rep = (root / "download_report_256.json").read_text()
    assert '"complete": true' in rep and '"failed": []' in rep and '"withdrawn": 2' in rep
    r = CliRunner().invoke(cli, ["data", "verify", "--root", str(root)])
    assert r.exit_code == 0 and "3 good, 0 missing" in r.output and "2 more withdrawn" in r.output, r.output
    r = CliRunner().invoke(cli, ["data", "info", "--root", str(root), "--json"])
    assert '"urls": 3' in r.output and '"withdrawn_urls": 2' in r.output and '"unlabelled_urls": 0' in r.output
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")              # no "missing" warning for withdrawn faces
        ds = KaoKoreDataset(root, split="all", labels="none")
    assert [r.image for r in ds.records] == names and ds.withdrawn == 2 and ds.missing == 0


def test_download_refuses_bombs_from_the_server(tmp_path):
    meta = make_metadata(tmp_path / "meta", ["ok"])
    with IIIFServer() as srv, pytest.MonkeyPatch.context() as mp:
        mp.setenv("KAOGEN_MAX_PIXELS", "100")       # the 32x32 faces are over it
        report = download(DownloadOptions(root=str(tmp_path / "root"), metadata=str(meta), mirror=srv.url,
                                          progress=False, retries=3, backoff=0.01))
        assert len(report.failed) == 1 and "over kaogen's limit of 100" in report.failed[0].reason
        assert sum(srv.hits.values()) == 1            # permanent: not retried
    assert not list((tmp_path / "root" / "images_256").iterdir())
