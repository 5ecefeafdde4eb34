"""`kaogen data pages` against a loopback IIIF server serving synthetic pages with real sample faces."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from kaogen.cli.main import cli
from kaogen.data.pages import PagesOptions, build_pages, clip_xywh, scaled_size
from kaogen.detect.synthetic import load_faces, synthetic_page

from conftest import LoopbackServer

REPO = Path(__file__).resolve().parents[1]
HOST = "https://iiif.example.org"          # what urls.txt names; --mirror points it at the loopback server


def jpeg(img: Image.Image, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=95) if fmt == "JPEG" else img.save(buf, format=fmt)
    return buf.getvalue()


class PageServer(LoopbackServer):
    """An IIIF Image API server on 127.0.0.1 for `pages` {identifier: PIL image} (identifiers may hold
    slashes). `versions` {identifier: 2 | 3} picks info.json's shape (default 2) and the full-size
    token it accepts (`full` for 2, `max` for 3). Faults by identifier: `lies` (info.json's size is
    wrong), `notimage` (the page body is HTML), `huge` (info.json says 40000 x 30000), `delay` seconds
    before every answer. Serves info.json, full pages and `x,y,w,h/S,S` region requests."""

    def __init__(self, pages: dict[str, Image.Image], versions=None, lies=(), notimage=(), huge=(), delay=0.0):
        self.pages, self.versions = pages, dict(versions or {})
        self.lies, self.notimage, self.huge, self.delay = set(lies), set(notimage), set(huge), delay
        self.hits: Counter = Counter()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, body: bytes, ctype: str):
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                with server.lock:
                    server.hits[self.path] += 1
                if server.delay:
                    time.sleep(server.delay)
                path = self.path.removeprefix("/iiif/")
                if path.endswith("/info.json"):
                    ident = path[: -len("/info.json")]
                    if ident not in server.pages:
                        return self.send_error(404)
                    w, h = server.pages[ident].size
                    if ident in server.lies:
                        w, h = w + 100, h
                    if ident in server.huge:
                        w, h = 40000, 30000
                    v = server.versions.get(ident, 2)
                    ctx = f"http://iiif.io/api/image/{v}/context.json"
                    d = {"@context": ctx, "width": w, "height": h,
                         **({"id": ident, "type": "ImageService3", "profile": "level1"} if v == 3 else
                            {"@id": ident, "protocol": "http://iiif.io/api/image", "profile": [
                                "http://iiif.io/api/image/2/level1.json"]})}
                    return self.reply(json.dumps(d).encode(), "application/json")
                parts = path.split("/")
                ident, region, size = "/".join(parts[:-4]), parts[-4], parts[-3]
                if ident not in server.pages:
                    return self.send_error(404)
                img = server.pages[ident]
                if region == "full":
                    want = "max" if server.versions.get(ident, 2) == 3 else "full"
                    if size != want:
                        return self.send_error(400)
                    if ident in server.notimage:
                        return self.reply(b"<html>not a page</html>", "text/html")
                    return self.reply(jpeg(img), "image/jpeg")
                x, y, w, h = (int(v) for v in region.split(","))
                s = int(size.strip("!").split(",")[0])
                crop = img.crop((max(x, 0), max(y, 0), min(x + w, img.width), min(y + h, img.height)))
                return self.reply(jpeg(crop.resize((s, s))), "image/jpeg")

        super().__init__(Handler)


def make_world(folder: Path, samples: Path, n_pages: int = 4, size=(800, 600), faces_per_page: int = 4,
               face_px=(60, 120), outside: bool = False, seed: int = 0):
    """Synthetic full-size pages (identifiers `scroll/pN.tif`) and the KaoKore metadata naming their
    faces: urls.txt (one region per face, the first face of every page across an edge), labels.csv,
    original_tags.txt (two works). Returns (pages {ident: PIL}, boxes {ident: [(x, y, w, h)]}, meta dir).
    `outside` adds, on the first page, a face region wholly outside the page."""
    faces = load_faces(samples)
    pages, boxes, lines = {}, {}, []
    for p in range(n_pages):
        sp = synthetic_page(faces, size, n_faces=faces_per_page, face_px=face_px, seed=seed + p, off_page=1)
        ident = f"scroll/p{p}.tif"
        pages[ident], boxes[ident] = sp.image, sp.boxes
        for b in sp.boxes:
            lines.append((ident, b, p))
        if outside and p == 0:
            lines.append((ident, (size[0] + 10, 5, 50, 50), p))
    meta = folder / "meta"
    meta.mkdir(parents=True)
    with open(meta / "urls.txt", "w") as u, open(meta / "labels.csv", "w") as lab, \
            open(meta / "original_tags.txt", "w") as tags:
        lab.write("image,gender,status,set\n")
        for i, (ident, (x, y, w, h), p) in enumerate(lines):
            u.write(f"{HOST}/iiif/{ident}/{x},{y},{w},{h}/256,256/0/default.jpg\n")
            lab.write(f"{i:08d}.jpg,{i % 2},{i % 4},{'train' if i % 3 else 'test'}\n")
            tags.write(f"{i:08d}.jpg:原典={'源氏物語' if p % 2 else '病草子'};向き=横;所蔵=京都大学\n")
    return pages, boxes, meta


def load_coco(path: Path):
    from pycocotools.coco import COCO

    coco = COCO()
    with contextlib.redirect_stdout(io.StringIO()):
        coco.dataset = json.loads(path.read_text())
        coco.createIndex()
    return coco


@pytest.mark.parametrize("long_side", [400, 333, 1000])
def test_pages_recover_every_box_exactly(tmp_path, samples, long_side):
    pages, boxes, meta = make_world(tmp_path, samples, n_pages=3)
    versions = {"scroll/p1.tif": 3}
    with PageServer(pages, versions) as srv:
        report = build_pages(PagesOptions(root=str(tmp_path / "root"), metadata=str(meta), mirror=srv.url,
                                          long_side=long_side, workers=2, progress=False))
        assert report.complete and report.fetched == 3 and not report.face_problems, report
        # Image API 3 asks full/max, 2 asks full/full; each page is fetched once.
        assert srv.hits["/iiif/scroll/p1.tif/full/max/0/default.jpg"] == 1
        assert srv.hits["/iiif/scroll/p0.tif/full/full/0/default.jpg"] == 1
        assert not any("/full/full/" in p and "p1.tif" in p for p in srv.hits)
    out = tmp_path / "root" / "pages"
    coco = load_coco(out / "pages.json")
    assert len(coco.getImgIds()) == 3 and len(coco.getAnnIds()) == 12
    assert coco.dataset["categories"] == [{"id": 1, "name": "face", "supercategory": "face"}]
    clipped = 0
    for img in coco.loadImgs(coco.getImgIds()):
        ident = img["iiif"].rsplit("/iiif/", 1)[1]
        full = pages[ident]
        assert (img["full_width"], img["full_height"]) == full.size
        assert (img["width"], img["height"]) == scaled_size(*full.size, long_side)
        assert max(img["width"], img["height"]) == long_side
        page = Image.open(out / img["file_name"]).convert("RGB")
        assert page.size == (img["width"], img["height"])
        sx, sy = img["width"] / full.width, img["height"] / full.height
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        assert len(anns) == len(boxes[ident])
        for ann, true in zip(sorted(anns, key=lambda a: a["kaokore_index"]), boxes[ident]):
            x, y, w, h = clip_xywh(true, *full.size)
            clipped += (x, y, w, h) != tuple(map(float, true))
            assert ann["bbox"] == pytest.approx([x * sx, y * sy, w * sx, h * sy], abs=1e-9)
            assert ann["region"] == [x, y, w, h] and ann["area"] == pytest.approx(w * h * sx * sy)
            # the pixels under the box are the face's
            bx, by, bw, bh = ann["bbox"]
            mine = np.asarray(page.crop((round(bx), round(by), round(bx + bw), round(by + bh))).resize((32, 32)), float)
            theirs = np.asarray(full.crop((x, y, x + w, y + h)).resize((32, 32)), float)
            assert np.abs(mine - theirs).mean() < 12, (ident, ann["kaokore_index"])
            i = ann["kaokore_index"]
            assert ann["kaokore_image"] == f"{i:08d}.jpg" and ann["gender"] == i % 2 and ann["status"] == i % 4
            assert ann["work"] in ("源氏物語", "病草子")
    assert clipped == 3                      # one face per page runs across an edge, clipped to the page
    # splits are of pages: every page has exactly one side per strategy; a work on one side under by-work
    sides = {}
    for img in coco.dataset["images"]:
        assert set(img["splits"]) == {"by-page", "by-work", "within-work"}
        sides.setdefault(img["work"], set()).add(img["splits"]["by-work"])
    assert all(len(s) == 1 for s in sides.values())


def test_pages_bad_input_is_reported_and_nothing_else_lost(tmp_path, samples):
    pages, boxes, meta = make_world(tmp_path, samples, n_pages=4, outside=True)
    root = tmp_path / "root"
    with PageServer(pages, lies={"scroll/p1.tif"}, notimage={"scroll/p2.tif"}, huge={"scroll/p3.tif"}) as srv:
        r = CliRunner().invoke(cli, ["data", "pages", "--root", str(root), "--metadata", str(meta), "--mirror",
                                     srv.url, "--long-side", "400", "--no-progress", "--retries", "1",
                                     "--backoff", "0"])
        assert r.exit_code == 1, r.output
        assert srv.hits["/iiif/scroll/p3.tif/full/full/0/default.jpg"] == 0     # refused from info.json
    rep = json.loads((root / "pages" / "pages_report.json").read_text())
    reasons = {f["page"]: f["reason"] for f in rep["failed"]}
    assert set(reasons) == {"page-00000005", "page-00000009", "page-00000013"}
    assert "info.json says the page is 900x600" in reasons["page-00000005"] and "sent 800x600" in reasons["page-00000005"]
    assert "not a decodable image" in reasons["page-00000009"]
    assert "over kaogen's limit" in reasons["page-00000013"]
    assert all("\n" not in v for v in reasons.values())
    assert len(rep["face_problems"]) == 1 and "00000004.jpg: box (810, 5, 50, 50) is outside its page" in rep["face_problems"][0]
    coco = json.loads((root / "pages" / "pages.json").read_text())
    assert [i["name"] for i in coco["images"]] == ["page-00000000"] and len(coco["annotations"]) == 4
    assert "3 failed of 4" in r.output and "1 face regions skipped" in r.output


def test_pages_resume_after_a_kill(tmp_path, samples):
    pages, boxes, meta = make_world(tmp_path, samples, n_pages=8, size=(300, 200), faces_per_page=1,
                                    face_px=(40, 60))
    root = tmp_path / "root"
    with PageServer(pages, delay=0.15) as srv:
        cmd = [sys.executable, str(REPO / "cli.py"), "data", "pages", "--root", str(root), "--metadata", str(meta),
               "--mirror", srv.url, "--workers", "1", "--long-side", "200", "--no-progress"]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        folder = root / "pages" / "images"
        finished = lambda: {p.name for p in folder.glob("page-*.jpg")} if folder.is_dir() else set()  # noqa: E731
        complete = lambda: {n[:-4] for n in finished() if (root / "pages" / "info" / f"{n[:-4]}.json").is_file()}  # noqa: E731
        deadline = time.time() + 60
        while time.time() < deadline and len(complete()) < 2:     # a page is done with its image and info.json
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = complete()
        assert 2 <= len(done) < 8
        first = Counter(srv.hits)
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        assert f"{8 - len(done)} pages fetched, {len(done)} already present" in r.stdout
    coco = json.loads((root / "pages" / "pages.json").read_text())
    assert len(coco["images"]) == 8 and len(coco["annotations"]) == 8
    for img in coco["images"]:
        ident = img["iiif"].rsplit("/iiif/", 1)[1]
        asked = srv.hits[f"/iiif/{ident}/full/full/0/default.jpg"]
        assert asked == 1 if img["name"] in done else asked >= 1
        if img["name"] in done:           # not asked again, info.json neither
            assert srv.hits[f"/iiif/{ident}/info.json"] == first[f"/iiif/{ident}/info.json"] == 1
    assert not list((root / "pages" / "images").glob(".*"))
