"""The IIIF downloader end to end against a loopback server that plants faults."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from kaogen.cli.main import cli
from kaogen.data.download import DownloadOptions, download

REPO = Path(__file__).resolve().parents[1]


def face_bytes(i: int, mode: str = "RGB", fmt: str = "JPEG") -> bytes:
    img = Image.new("RGB", (32, 32), ((i * 37) % 256, (i * 91) % 256, 128)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


class IIIFServer:
    """Plays an IIIF server. The identifier's name picks the behaviour:
    ok, missing (404), flaky (500 then OK), busy (429 with Retry-After then OK), slow (sleeps past
    the client timeout once), trunc (truncated body once), html (non-image body once), gray
    (grayscale PNG), delay (always 50 ms: for the kill test)."""

    def __init__(self):
        self.hits: Counter = Counter()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
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

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def make_metadata(folder: Path, kinds: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    urls = [f"https://iiif.example.org/iiif/NRE/{k}-{i}.tif/10,10,100,100/256,256/0/default.jpg"
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
               "--mirror", srv.url, "--workers", "2", "--no-progress"]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        folder = root / "images_256"
        deadline = time.time() + 60
        finished = lambda: {p.name for p in folder.glob("*.jpg") if not p.name.startswith(".")}  # noqa: E731
        while time.time() < deadline and len(finished()) < 8:
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
