"""The data layer's boundaries, found by mutation testing (benchmarks/mutation.sh): each test pins a
behaviour a user sees (which faces land in which split, how many attempts a download makes, which
label rows are refused) that a one-token change in kaogen/data/ used to leave unnoticed."""

from __future__ import annotations

import random

import pytest

from kaogen.data.metadata import Record
from kaogen.data.splits import assign_splits


# ------------------------------------------------------------------------------------------ splits

def _records(sizes: dict[str, int]) -> list[Record]:
    out, k = [], 0
    for work, n in sizes.items():
        for _ in range(n):
            out.append(Record(f"{k:08d}.jpg", 0, 0, "train" if k % 3 else "test", {"work": work} if work else {}))
            k += 1
    return out


def _seed_putting_first(names: list[str], first: list[str]) -> int:
    """A seed whose shuffled work order (the documented `random.Random(seed)` over the sorted works)
    starts with `first`: the cases below then know which work by-work considers first."""
    for seed in range(10_000):
        order = sorted(names)
        random.Random(seed).shuffle(order)
        if order[: len(first)] == first:
            return seed
    raise AssertionError("no seed")


def _sides(out: dict[str, str], recs: list[Record]) -> dict[str, str]:
    return {r.tags.get("work", ""): out[r.image] for r in recs}


# fractions (train, dev, test), works in the order they are considered -> the side of each work.
# 100 faces: a side asked for 10 takes whole works while it has fewer than 10 and stays within
# 10 * 1.5 + 1 = 16 (its first work whatever its size).
BY_WORK_CASES = [
    ((0.8, 0.1, 0.1), {"A": 4, "B": 12, "C": 84}, {"A": "test", "B": "test", "C": "dev"}),     # 16 <= 16: taken
    ((0.8, 0.1, 0.1), {"A": 4, "B": 13, "C": 83}, {"A": "test", "B": "dev", "C": "train"}),    # 17 > 16: next side
    ((0.8, 0.1, 0.1), {"A": 10, "B": 5, "C": 85}, {"A": "test", "B": "dev", "C": "train"}),    # test full at 10
    ((0.9, 0.1, 0.0), {"A": 4, "B": 12, "C": 84}, {"A": "dev", "B": "dev", "C": "train"}),     # the same for dev
    ((0.9, 0.1, 0.0), {"A": 4, "B": 13, "C": 83}, {"A": "dev", "B": "train", "C": "train"}),
    ((0.9, 0.1, 0.0), {"A": 10, "B": 5, "C": 85}, {"A": "dev", "B": "train", "C": "train"}),
    ((0.9, 0.1, 0.0), {"A": 30, "B": 5, "C": 65}, {"A": "dev", "B": "train", "C": "train"}),   # first work: any size
    ((0.7, 0.2, 0.1), {"A": 30, "B": 25, "C": 45}, {"A": "test", "B": "dev", "C": "train"}),
    ((0.7, 0.2, 0.1), {"A": 5, "B": 40, "C": 55}, {"A": "test", "B": "dev", "C": "train"}),    # 45 > 16: dev takes it
]


@pytest.mark.parametrize("fractions, sizes, want", BY_WORK_CASES)
def test_by_work_takes_whole_works_up_to_half_again_what_a_side_asks_for(fractions, sizes, want):
    recs = _records(sizes)
    seed = _seed_putting_first(list(sizes), list(sizes))
    assert _sides(assign_splits(recs, "by-work", seed=seed, fractions=fractions), recs) == want


def test_split_defaults_are_the_official_split_and_seed_0():
    recs = _records({f"w{i}": 3 + i for i in range(12)})
    assert assign_splits(recs) == {r.image: r.split for r in recs}
    for strategy in ("by-work", "within-work"):
        assert assign_splits(recs, strategy) == assign_splits(recs, strategy, seed=0)
        assert assign_splits(recs, strategy) != assign_splits(recs, strategy, seed=1)   # the seed matters


def test_a_published_by_work_split_never_changes():
    """Splits are deterministic given the seed: the same records give the same split in every
    release (faces without a work tag form one group, "(unknown)", sorted with the others)."""
    recs = _records({"": 7, "B": 9, "Zed": 3, "(a": 5, "M": 11, "Y": 4, "b": 6, "[": 5})
    got = _sides(assign_splits(recs, "by-work", seed=0, fractions=(0.6, 0.2, 0.2)), recs)
    assert got == {"": "test", "B": "dev", "Zed": "dev", "(a": "train", "M": "train", "Y": "test", "b": "train",
                   "[": "train"}
    got = _sides(assign_splits(recs, "by-work", seed=3), recs)
    assert got == {"": "train", "B": "train", "Zed": "dev", "(a": "test", "M": "train", "Y": "train", "b": "train",
                   "[": "dev"}


# -------------------------------------------------------------------------------------- download

import email.utils  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

from kaogen.data import download as D  # noqa: E402


class _Stop(threading.Event):
    """A stop event that records the delays with_retries waits and never sleeps."""

    def __init__(self):
        super().__init__()
        self.delays: list[float] = []

    def wait(self, timeout=None):
        self.delays.append(timeout)
        return self.is_set()


@pytest.fixture
def no_sleep(monkeypatch):
    """time.sleep recorded, never slept: the retry tests below pass a stop event, so a change that
    sleeps as well (or instead) fails them at once instead of sleeping for real (which made each
    mutant of with_retries cost a minute under mutation testing)."""
    slept: list[float] = []
    monkeypatch.setattr(D.time, "sleep", slept.append)
    return slept


def _calls(*outcomes):
    """fn() that raises or returns the outcomes in turn, counting its calls."""
    seq = list(outcomes)
    calls = []

    def fn():
        calls.append(1)
        out = seq.pop(0) if len(seq) > 1 else seq[0]
        if isinstance(out, BaseException):
            raise out
        return out
    return fn, calls


def test_retries_0_still_makes_one_attempt(no_sleep):
    fn, calls = _calls("body")
    assert D.with_retries(fn, D.DownloadOptions(root="r", retries=0)) == "body" and len(calls) == 1
    fn, calls = _calls(D._Transient("HTTP 503"))
    with pytest.raises(D._Permanent) as e:
        D.with_retries(fn, D.DownloadOptions(root="r", retries=0), stop=_Stop())
    assert len(calls) == 1 and str(e.value) == "HTTP 503 (gave up after 1 attempts)"


@pytest.mark.parametrize("retries", [1, 3])
def test_retries_are_counted_and_back_off_exponentially_up_to_the_cap(retries, monkeypatch, no_sleep):
    monkeypatch.setattr(D.random, "random", lambda: 0.5)            # the jitter factor is then exactly 1
    fn, calls = _calls(D._Transient("timed out"))
    counter, stop = [0], _Stop()
    opts = D.DownloadOptions(root="r", retries=retries, backoff=0.5, max_backoff=1.5)
    with pytest.raises(D._Permanent, match=rf"^timed out \(gave up after {retries + 1} attempts\)$"):
        D.with_retries(fn, opts, counter, stop)
    assert len(calls) == retries + 1 and counter == [retries]
    assert stop.delays == [0.5, 1.0, 1.5][:retries]                   # 0.5 * 2 ** attempt, capped at 1.5
    fn, calls = _calls(D._Transient("HTTP 500"), D._Transient("HTTP 500"), "ok")
    counter = [0]
    assert D.with_retries(fn, D.DownloadOptions(root="r", retries=2, backoff=0.0), counter, _Stop()) == "ok"
    assert len(calls) == 3 and counter == [2] and no_sleep == []    # with a stop event: its wait, no sleep


@pytest.mark.parametrize("jitter, factor", [(0.0, 0.5), (0.999, 1.499)])
def test_backoff_jitter_stays_between_half_and_one_and_a_half_times_the_delay(jitter, factor, monkeypatch, no_sleep):
    """The documented jitter: each delay is backoff * 2 ** attempt times a factor in [0.5, 1.5), so a
    thousand clients that failed together do not retry together, and none waits more than 1.5 times
    (dividing by the factor instead would make the delays up to twice as long)."""
    monkeypatch.setattr(D.random, "random", lambda: jitter)
    fn, calls = _calls(D._Transient("timed out"))
    stop = _Stop()
    with pytest.raises(D._Permanent):
        D.with_retries(fn, D.DownloadOptions(root="r", retries=3, backoff=1.0), stop=stop)
    assert stop.delays == pytest.approx([factor, 2 * factor, 4 * factor])


def test_retry_after_is_honoured_and_capped(no_sleep):
    fn, calls = _calls(D._Transient("HTTP 429", wait=7.0), "ok")
    stop = _Stop()
    assert D.with_retries(fn, D.DownloadOptions(root="r", retries=1, backoff=100.0), stop=stop) == "ok"
    assert stop.delays == [7.0]                                       # Retry-After, not the backoff
    fn, calls = _calls(D._Transient("HTTP 429", wait=500.0), "ok")
    stop = _Stop()
    D.with_retries(fn, D.DownloadOptions(root="r", retries=1, max_backoff=60.0), stop=stop)
    assert stop.delays == [60.0] and no_sleep == []                  # a stop event's wait, not a sleep too
    fn, calls = _calls(D._Transient("HTTP 429", wait=0.25), "ok")     # without a stop event: time.sleep
    assert D.with_retries(fn, D.DownloadOptions(root="r", retries=1)) == "ok" and no_sleep == [0.25]


def test_a_permanent_error_or_a_stop_ends_the_retries(no_sleep):
    fn, calls = _calls(D._Permanent("HTTP 404"))
    with pytest.raises(D._Permanent, match="^HTTP 404$"):
        D.with_retries(fn, D.DownloadOptions(root="r", retries=5), stop=_Stop())
    assert len(calls) == 1
    fn, calls = _calls(D._Transient("HTTP 500"))
    stop = _Stop()
    stop.set()
    with pytest.raises(D._Permanent, match="^interrupted$"):
        D.with_retries(fn, D.DownloadOptions(root="r", retries=5), stop=stop)
    assert len(calls) == 1


def test_retry_after_header_values():
    assert D._retry_after(None) is None and D._retry_after("") is None and D._retry_after("soon") is None
    assert D._retry_after(" 12 ") == 12.0 and D._retry_after("0") == 0.0
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= D._retry_after(future) <= 31
    assert D._retry_after(email.utils.formatdate(time.time() - 300, usegmt=True)) == 0.0
    e = D._Transient("HTTP 429", 3.0)
    assert str(e) == "HTTP 429" and e.wait == 3.0 and D._Transient("x").wait is None


class _Codes:
    """A loopback server: /CODE answers that HTTP status (with Retry-After: 4 on 429 and 503)."""

    def __enter__(self):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path == "/ua":                    # echoes the User-Agent it was sent
                    body = self.headers.get("User-Agent", "").encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                code = int(self.path.strip("/"))
                if code == 200:
                    self.send_response(200)
                    self.send_header("Content-Length", "4")
                    self.end_headers()
                    self.wfile.write(b"body")
                    return
                self.send_response(code)
                if code in (429, 503):
                    self.send_header("Retry-After", "4")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_which_http_errors_are_retried():
    with _Codes() as srv:
        assert D._get(srv.url + "/200", 5) == b"body"
        assert D._get(srv.url + "/ua", 5) == D.USER_AGENT.encode()     # IIIF servers see who asks
        for code in (408, 429, 500, 503, 599):
            with pytest.raises(D._Transient) as e:
                D._get(f"{srv.url}/{code}", 5)
            assert str(e.value) == f"HTTP {code}" and e.value.wait == (4.0 if code in (429, 503) else None)
        for code in (400, 403, 404, 410, 499):
            with pytest.raises(D._Permanent, match=f"^HTTP {code}$"):
                D._get(f"{srv.url}/{code}", 5)
    with pytest.raises(D._Transient, match="^connection error"):
        D._get(srv.url + "/200", 5)                                   # the server is gone


def test_download_summary_and_reconciliation_lines():
    r = D.DownloadReport(total=10, fetched=3, present=4, failed=[D.Failure("a", "u", "HTTP 404")], retries=2,
                         seconds=2.0, withdrawn=["x", "y"])
    assert r.summary() == ("3 fetched, 4 already present, 1 failed of 8 (1.5 images/s, 2 retries); "
                           "2 withdrawn (empty lines of urls.txt, numbering kept)")
    assert not r.complete
    assert "(6.0 images/s" in D.DownloadReport(fetched=3, seconds=0.5).summary()
    r.failed = []
    assert not r.complete
    r.present = 5
    assert r.complete
    assert D.DownloadReport(total=2, fetched=2).summary() == \
        "2 fetched, 0 already present, 0 failed of 2 (0.0 images/s, 0 retries)"
    assert D.DownloadReport(version="1.3").reconciled() is None
    assert D.DownloadReport(version="1.3", previous="1.3").reconciled() is None
    same = D.DownloadReport(version="1.3", previous="1.3", replaced=["00000002.jpg"]).reconciled()
    other = D.DownloadReport(version="1.3", previous="1.0").reconciled()
    assert same.startswith("existing images were fetched for KaoKore 1.3: 1 whose URL differs")
    assert other.startswith("existing images were fetched for KaoKore 1.0: 0 whose URL differs")


def test_metadata_requests_use_the_timeout(monkeypatch):
    seen = []
    monkeypatch.setattr(D, "_get", lambda url, timeout: seen.append((url, timeout)) or b"x")
    assert D._fetch_official("1.3", "labels.csv", D.DownloadOptions(root="r", timeout=3.5)) == b"x"
    assert seen == [(f"{D.OFFICIAL_REPO}/dataset_v1.3/labels.csv", 3.5)]


def test_negative_fractions_are_refused_even_when_they_sum_to_one():
    recs = _records({"A": 5, "B": 5, "C": 5})
    for fr in ((1.2, -0.1, -0.1), (0.5, 0.6, -0.1), (-0.5, 0.75, 0.75), (0.5, 0.5)):
        for strategy in ("official", "by-work", "within-work"):
            with pytest.raises(Exception, match="fractions"):
                assign_splits(recs, strategy, fractions=fr)


# -------------------------------------------------------------------------------------- metadata

from kaogen.data import metadata as M  # noqa: E402
from kaogen.errors import KaogenError  # noqa: E402


def test_original_tags_lines_are_parsed_whole(tmp_path):
    """original_tags.txt as real editors leave it: a BOM, a line without a colon in the middle, values
    holding ':' and '=' (a URL, a formula), an unknown orientation and missing keys. Each face keeps
    every tag; a stray line is skipped, not the end of the file; a missing tag is "" (not None), an
    orientation we have no English name for stays as written."""
    p = tmp_path / "original_tags.txt"
    p.write_text("\ufeff00000000.jpg:向き=横;原典=病草子;出典=https://example.org/a?b=c;所蔵=京都大学\n"
                 "a stray line without the separator\n"
                 "\n"
                 "00000001.jpg:向き=斜め;制作年=12世紀:後半\n"
                 "00000002.jpg:\n", encoding="utf-8")
    tags = M.read_tags(p)
    assert set(tags) == {"00000000.jpg", "00000001.jpg", "00000002.jpg"}
    first = tags["00000000.jpg"]
    assert first["orientation"] == "profile" and first["work"] == "病草子" and first["holder"] == "京都大学"
    assert first["出典"] == "https://example.org/a?b=c" and first["period"] == ""
    second = tags["00000001.jpg"]
    assert second["orientation"] == "斜め" and second["period"] == "12世紀:後半" and second["work"] == ""
    assert tags["00000002.jpg"] == {"orientation": "", "work": "", "holder": "", "period": ""}
    assert M.read_tags(tmp_path / "absent.txt") == {}


def test_stamp_problem_names_every_changed_file(tmp_path):
    """When both stamped files changed after the download, the warning names both (so the user knows
    what another tool overwrote); an intact stamp or no stamp gives no warning."""
    (tmp_path / "labels.csv").write_text("image,gender,status,set\n")
    (tmp_path / "urls.txt").write_text("https://h/iiif/a/full/256,256/0/default.jpg\n")
    assert M.stamp_problem(tmp_path) is None
    (tmp_path / M.STAMP).write_text(M.stamp_text(tmp_path, "1.3"))
    assert M.stamp_problem(tmp_path) is None
    (tmp_path / "labels.csv").write_text("image,gender,status,set\n00000000.jpg,0,0,train\n")
    (tmp_path / "urls.txt").write_text("")
    msg = M.stamp_problem(tmp_path)
    assert "says KaoKore 1.3, but labels.csv, urls.txt changed since" in msg


def test_a_stamped_file_that_is_gone_counts_as_changed(tmp_path):
    """Deleting urls.txt after a download is a change the stamp reports (not a crash reading it), and
    load_metadata says which root it read."""
    (tmp_path / "labels.csv").write_text("image,gender,status,set\n00000000.jpg,0,0,train\n")
    (tmp_path / "urls.txt").write_text("https://h/iiif/a/full/256,256/0/default.jpg\n")
    (tmp_path / M.STAMP).write_text(M.stamp_text(tmp_path, "1.2"))
    (tmp_path / "urls.txt").unlink()
    st = M.read_stamp(tmp_path)
    assert st.version == "1.2" and st.changed == ["urls.txt"] and not st.valid
    assert M.file_digest(tmp_path / "urls.txt") is None
    meta = M.load_metadata(tmp_path)
    assert meta.root == tmp_path and meta.urls == [] and [r.image for r in meta.records] == ["00000000.jpg"]


def test_read_stamp_takes_the_version_line_and_only_sha256_lines(tmp_path):
    """The stamp's first line is the version and only `sha256 NAME HEX` lines are digests: other
    three-word lines, a two-word sha256 line and bytes that are not UTF-8 are ignored, not a crash
    and not a "changed" file; an empty stamp has version "" and no digests."""
    (tmp_path / "labels.csv").write_text("image,gender,status,set\n")
    assert M.read_stamp(tmp_path) is None
    digest = M.file_digest(tmp_path / "labels.csv")
    (tmp_path / M.STAMP).write_bytes(b" 1.2 \nsha256 labels.csv " + digest.encode() + b"\n"
                                     b"written by hand\nsha256 urls.txt\nnote \xff\xfe latin-1\n")
    st = M.read_stamp(tmp_path)
    assert st.version == "1.2" and st.digests == {"labels.csv": digest} and st.changed == [] and st.valid
    (tmp_path / M.STAMP).write_bytes(b"")
    st = M.read_stamp(tmp_path)
    assert st.version == "" and st.digests == {} and st.valid


def test_labels_at_the_edge_of_their_range(tmp_path):
    """gender is 0..1 and status 0..3: the first value past each end is refused (named by its column,
    on its line), the last one inside is kept."""
    p = tmp_path / "labels.csv"
    p.write_text("image,gender,status,set\n00000000.jpg,1,3,train\n00000001.jpg,2,0,train\n"
                 "00000002.jpg,0,4,dev\n")
    rows, problems = M.read_labels(p)
    assert rows == [("00000000.jpg", 1, 3, "train")]
    assert problems == ["labels.csv:3: skipped (gender '2' is not in 0..1)",
                        "labels.csv:4: skipped (status '4' is not in 0..3)"]


def test_labels_csv_as_editors_leave_it(tmp_path):
    """A BOM (Excel's UTF-8), blank and comma-only lines anywhere (skipped, not problems, and not the
    end of the file), optional columns (a file with only image and set has no labels; one without
    set has no split), and an empty file refused as having no image column."""
    p = tmp_path / "labels.csv"
    p.write_text("\ufeffimage,gender,status,set\n00000000.jpg,0,1,train\n\n,,,\n00000001.jpg,1,,test\n",
                 encoding="utf-8")
    rows, problems = M.read_labels(p)
    assert rows == [("00000000.jpg", 0, 1, "train"), ("00000001.jpg", 1, None, "test")] and problems == []
    p.write_text("image,set\n00000000.jpg,dev\n")
    assert M.read_labels(p) == ([("00000000.jpg", None, None, "dev")], [])
    p.write_text("image,gender,status\n00000000.jpg,1,2\n")
    assert M.read_labels(p) == ([("00000000.jpg", 1, 2, None)], [])
    p.write_text("")
    with pytest.raises(KaogenError, match="no 'image' column"):
        M.read_labels(p)


def test_urls_txt_with_a_bom_and_the_default_image_folder(tmp_path):
    """urls.txt saved with a BOM still starts with its first URL (line 0 is image 00000000.jpg), and
    the default download folder is images_256, the official size."""
    (tmp_path / "urls.txt").write_text("\ufeffhttps://h/iiif/a/full/256,256/0/default.jpg\n\nhttps://h/b\n",
                                       encoding="utf-8")
    assert M.read_urls(tmp_path / "urls.txt") == ["https://h/iiif/a/full/256,256/0/default.jpg", "", "https://h/b"]
    assert M.read_urls(tmp_path / "absent.txt") == []
    assert M.image_dir(tmp_path) == tmp_path / "images_256" and M.image_dir(str(tmp_path), 512) == tmp_path / "images_512"


# ------------------------------------------------------------------------------------------ iiif

from kaogen.data.iiif import IIIFImageURL, image_url  # noqa: E402

_U = "https://iiif.example.org/iiif/NRE/a.tif/10,10,100,100/256,256/0/default.jpg"


def test_iiif_sizes_from_one_pixel_up_and_zero_refused():
    """Any positive size is asked as it is (1 px included); 0 and below are refused."""
    assert image_url(_U, 1).endswith("/10,10,100,100/1,1/0/default.jpg")
    assert str(IIIFImageURL.parse(_U).with_size(2)).endswith("/2,2/0/default.jpg")
    for bad in (0, -1):
        with pytest.raises(KaogenError, match="size must be positive"):
            image_url(_U, bad)


def test_iiif_mirror_forms():
    """--mirror as HOST:PORT (http assumed), with a path prefix and a trailing slash (one slash kept
    between prefix and path), or with https: only scheme and host change, the path is kept."""
    assert image_url(_U, mirror="127.0.0.1:8000") == \
        "http://127.0.0.1:8000/iiif/NRE/a.tif/10,10,100,100/256,256/0/default.jpg"
    assert image_url(_U, mirror="https://proxy.example.net/cache/") == \
        "https://proxy.example.net/cache/iiif/NRE/a.tif/10,10,100,100/256,256/0/default.jpg"
    for bad in ("http://", "://"):
        with pytest.raises(KaogenError, match="--mirror"):
            image_url(_U, mirror=bad)


def test_iiif_parse_boundaries():
    """The shortest IIIF URL (one identifier segment) parses, one segment fewer is refused; a
    trailing slash is ignored; only http(s) with a host is accepted, however long the path; dots in
    the last segment split off the format only (never a crash)."""
    u = IIIFImageURL.parse("http://h/id/full/max/0/default.png")
    assert (u.prefix, u.region, u.size, u.rotation, u.quality, u.format) == (
        "http://h/id", "full", "max", "0", "default", "png")
    assert str(IIIFImageURL.parse(_U + "/")) == _U
    assert IIIFImageURL.parse("http://h/a/b.c/full/max/0/gray.v2.jpg").quality == "gray.v2"
    for bad in ("http://h/full/max/0/default.png", "ftp://h/iiif/NRE/a.tif/full/max/0/default.jpg",
                "https:///iiif/NRE/a.tif/full/max/0/default.jpg", "http://h/id/full/max/0/default"):
        with pytest.raises(KaogenError, match="IIIF"):
            IIIFImageURL.parse(bad)
    assert image_url(_U, mirror="http://m/BOX") == "http://m/BOX/iiif/NRE/a.tif/10,10,100,100/256,256/0/default.jpg"


# -------------------------------------------------------------------------------------- datasets

def test_face_batches_of_mixed_sizes_are_refused_by_the_registered_collate(monkeypatch):
    """_register_collate (run at import) is what makes torch's default collate refuse a batch of
    faces of different sizes in one line naming resolution= (dict and torchvision forms), instead
    of torch's stack error; registered again from scratch it does the same."""
    import torch
    from torch.utils.data._utils.collate import default_collate, default_collate_fn_map

    from kaogen.data import datasets as DS

    for cls in (DS.FaceItem, DS.FaceSample):
        monkeypatch.delitem(default_collate_fn_map, cls, raising=False)
    DS._register_collate()
    items = [DS.FaceItem(image=torch.zeros(3, 4, 4), name="a"), DS.FaceItem(image=torch.zeros(3, 5, 5), name="b")]
    with pytest.raises(KaogenError, match="resolution="):
        default_collate(items)
    samples = [DS.FaceSample((torch.zeros(3, 4, 4), 0)), DS.FaceSample((torch.zeros(3, 5, 5), 1))]
    with pytest.raises(KaogenError, match="resolution="):
        default_collate(samples)
    same = default_collate([DS.FaceItem(image=torch.zeros(3, 4, 4), name="a")] * 2)
    assert same["image"].shape == (2, 3, 4, 4) and same["name"] == ["a", "a"]


def test_image_folder_items_keep_the_pixel_limit_transform_and_relative_name(tmp_path, monkeypatch):
    """An item is read under the dataset's own max_pixels (not only when listing), goes through the
    transform, and is named by its path below the root."""
    import torch
    from PIL import Image

    from kaogen.data.datasets import ImageFolderDataset

    (tmp_path / "sub").mkdir()
    Image.new("RGB", (200, 100), (10, 20, 30)).save(tmp_path / "sub" / "face.png")
    monkeypatch.setenv("KAOGEN_MAX_PIXELS", "19999")
    ds = ImageFolderDataset(tmp_path, resolution=8, max_pixels=20_000, transform=lambda x: x * 2)
    item = ds[0]
    assert item["name"] == "sub/face.png" and item["image"].shape == (3, 8, 8)
    assert torch.allclose(item["image"][:, 0, 0], torch.tensor([20, 40, 60]) / 255.0, atol=0.02)


def _tiny_root(root, rows):
    """A KaoKore root of 8 x 8 faces: rows of (gender, status, set) -> labels.csv, urls.txt, images_256/."""
    from PIL import Image

    (root / "images_256").mkdir(parents=True)
    lines = ["image,gender,status,set"]
    for i, (g, s, split) in enumerate(rows):
        lines.append(f"{i:08d}.jpg,{g},{s},{split}")
        Image.new("RGB", (8, 8), (30 * i, 100, 200)).save(root / "images_256" / f"{i:08d}.jpg")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    (root / "urls.txt").write_text("".join(f"https://h/iiif/{i}/full/256,256/0/default.jpg\n" for i in range(len(rows))))
    return root


def test_both_labels_and_transforms_reach_the_items(tmp_path):
    """labels="both": the torchvision form's target is (gender, status), the dict form carries both;
    a transform is applied to the dict form's image tensor."""
    from kaogen.data.datasets import KaoKoreDataset

    root = _tiny_root(tmp_path / "k", [(0, 3, "train"), (1, 2, "train"), (1, 0, "test")])
    tv = KaoKoreDataset(root, split="train", labels="both", format="torchvision")
    assert [tv[i][1] for i in range(len(tv))] == [(0, 3), (1, 2)]
    d = KaoKoreDataset(root, split="all", labels="both", transform=lambda x: x[:1])
    item = d[2]
    assert item["gender"] == 1 and item["status"] == 0 and item["image"].shape == (1, 8, 8)
    assert item["name"] == "00000002.jpg" and item["work"] == "" and item["orientation"] == ""


def test_square_resize_keeps_the_centre():
    """A wide or tall picture is cropped to its central square (the bands at both ends go), then
    resized; a square of the right size is returned as it is; None keeps any picture."""
    from PIL import Image

    from kaogen.data.datasets import square_resize

    wide = Image.new("RGB", (12, 8), (0, 255, 0))
    wide.paste((255, 0, 0), (0, 0, 2, 8))
    wide.paste((0, 0, 255), (10, 0, 12, 8))
    out = square_resize(wide, 8)
    assert out.size == (8, 8) and {out.getpixel((x, y)) for x in range(8) for y in range(8)} == {(0, 255, 0)}
    tall = wide.rotate(90, expand=True)                                   # 8 x 12, bands at top and bottom
    out = square_resize(tall, 4)
    assert out.size == (4, 4) and all(max(abs(a - b) for a, b in zip(out.getpixel((x, y)), (0, 255, 0))) < 8
                                      for x in range(4) for y in range(4))
    assert square_resize(wide, None) is wide
    sq = Image.new("RGB", (5, 5))
    assert square_resize(sq, 5) is sq and square_resize(sq, 1).size == (1, 1)


def test_dataset_resolution_and_label_filters(tmp_path):
    """resolution is a positive int (1 allowed; 0, a float, a bool refused); labels="gender" leaves
    out faces without a gender and "none" keeps them; a withdrawn face is counted, not missing."""
    from kaogen.data.datasets import KaoKoreDataset

    root = _tiny_root(tmp_path / "k", [(0, 3, "train"), ("", 2, "train"), (1, "", "train"), (0, 0, "train")])
    (root / "urls.txt").write_text("https://h/iiif/0/full/256,256/0/default.jpg\nhttps://h/iiif/1/full/256,256/0/default.jpg\n"
                                   "https://h/iiif/2/full/256,256/0/default.jpg\n\n")
    for bad in (0, -3, 2.0, True):
        with pytest.raises(KaogenError, match="resolution"):
            KaoKoreDataset(root, labels="none", resolution=bad)
    assert KaoKoreDataset(root, labels="none", resolution=1)[0]["image"].shape == (3, 1, 1)
    g = KaoKoreDataset(root, labels="gender")
    assert [r.image for r in g.records] == ["00000000.jpg", "00000002.jpg"] and g.withdrawn == 1 and g.missing == 0
    s = KaoKoreDataset(root, labels="status")
    assert [r.image for r in s.records] == ["00000000.jpg", "00000001.jpg"]
    n = KaoKoreDataset(root, labels="none")
    assert len(n) == 3 and n.withdrawn == 1
    assert [r.image for r in KaoKoreDataset(root, labels="both").records] == ["00000000.jpg"]


def test_dataset_warns_when_the_metadata_changed_after_the_download(tmp_path):
    """A root whose labels.csv was rewritten after kaogen stamped it: the dataset still loads, with a
    warning that faces and labels may not match; an intact stamp loads silently."""
    import warnings

    from kaogen.data.datasets import KaoKoreDataset

    root = _tiny_root(tmp_path / "k", [(0, 3, "train"), (1, 2, "train")])
    (root / M.STAMP).write_text(M.stamp_text(root, "1.3"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(KaoKoreDataset(root, labels="none")) == 2
    (root / "labels.csv").write_text((root / "labels.csv").read_text().replace("1,2,train", "1,1,train"))
    with pytest.warns(UserWarning, match="labels.csv changed since"):
        ds = KaoKoreDataset(root, labels="status")
    assert [r.status for r in ds.records] == [3, 1]


def _tagged_root(root, works: list[str]):
    """_tiny_root with one face per entry of `works` (all official train), each face's experts' tags
    in original_tags.txt: its work (原典), holder (所蔵) and period (制作年)."""
    root = _tiny_root(root, [(i % 2, i % 4, "train") for i in range(len(works))])
    (root / "original_tags.txt").write_text(
        "".join(f"{i:08d}.jpg:向き=正面;原典={w};所蔵=蔵{i};制作年={1500 + i}年\n" for i, w in enumerate(works)),
        encoding="utf-8")
    return root


def test_dataset_defaults_are_train_both_labels_official_seed_0_and_no_decoding(tmp_path):
    """KaoKoreDataset(root) is the documented default: the official train split, both labels, split
    seed 0, fractions 0.8/0.1/0.1, and files are only checked to exist (check=False): a file that
    does not decode is not opened at construction, so it stays in and nothing is reported broken."""
    from kaogen.data.datasets import KaoKoreDataset
    from kaogen.data.splits import DEFAULT_FRACTIONS

    root = _tiny_root(tmp_path / "k", [(0, 3, "train"), (1, 2, "train"), (1, 0, "test")])
    (root / "images_256" / "00000001.jpg").write_bytes(b"not a jpeg")
    ds = KaoKoreDataset(root)
    assert [r.image for r in ds.records] == ["00000000.jpg", "00000001.jpg"] and ds.corrupt == []
    assert set(ds[0]) == {"image", "name", "gender", "status", "orientation", "work", "holder", "period"}
    with pytest.warns(UserWarning, match="1 broken"):
        checked = KaoKoreDataset(root, check=True)
    assert [r.image for r in checked.records] == ["00000000.jpg"] and checked.corrupt == ["00000001.jpg"]
    # the split seed and fractions: by-work over 12 works, default against explicit arguments
    works = [f"W{i:02d}" for i in range(12)]
    root = _tagged_root(tmp_path / "w", works)
    names = lambda d: [r.image for r in d.records]  # noqa: E731
    base = names(KaoKoreDataset(root, strategy="by-work"))
    assert base == names(KaoKoreDataset(root, strategy="by-work", seed=0, fractions=DEFAULT_FRACTIONS))
    assert base != names(KaoKoreDataset(root, strategy="by-work", seed=1))


def test_dataset_split_follows_its_seed_and_fractions_exactly(tmp_path):
    """The dataset's faces are the ones assign_splits gives for the seed and fractions passed, for
    each side (not another seed's, nor the default fractions')."""
    from kaogen.data.datasets import KaoKoreDataset
    from kaogen.data.metadata import load_metadata

    root = _tagged_root(tmp_path / "w", [f"W{i:02d}" for i in range(16)])
    recs = load_metadata(root).records
    for seed, fractions in ((3, (0.5, 0.25, 0.25)), (7, (0.25, 0.5, 0.25))):
        sides = assign_splits(recs, "by-work", seed, fractions)
        for split in ("train", "dev", "test"):
            want = sorted(k for k, v in sides.items() if v == split)
            got = [r.image for r in KaoKoreDataset(root, split=split, labels="none", strategy="by-work",
                                                    seed=seed, fractions=fractions).records]
            assert got == want, (seed, fractions, split)


def test_dataset_items_carry_all_four_expert_tags(tmp_path):
    from kaogen.data.datasets import KaoKoreDataset

    item = KaoKoreDataset(_tagged_root(tmp_path / "w", ["病草子", "男衾三郎絵詞"]), labels="none")[1]
    assert (item["orientation"], item["work"], item["holder"], item["period"]) == ("front", "男衾三郎絵詞", "蔵1", "1501年")


def test_dataset_reads_the_image_folder_of_its_size_and_keeps_the_metadata_problems(tmp_path):
    """size=200 reads images_200/ (v1.3's Keio size), not images_256/; rows the metadata skipped are
    listed on the dataset (ds.problems, one line each) as load_metadata reports them."""
    from kaogen.data.datasets import KaoKoreDataset
    from kaogen.data.metadata import load_metadata

    root = _tiny_root(tmp_path / "k", [(0, 3, "train"), (1, 2, "train")])
    (root / "images_256").rename(root / "images_200")
    with open(root / "labels.csv", "a") as f:
        f.write("00000009.jpg,7,1,train\n")
    ds = KaoKoreDataset(root, size=200, labels="none")
    assert len(ds) == 2 and ds.folder == root / "images_200"
    assert ds.problems == load_metadata(root).problems and len(ds.problems) == 1
    with pytest.warns(UserWarning, match="2 images missing"), pytest.raises(KaogenError, match="images_256"):
        KaoKoreDataset(root, labels="none")


def test_dataset_counts_every_withdrawn_face_and_keeps_the_faces_after_one(tmp_path):
    from kaogen.data.datasets import KaoKoreDataset

    root = _tiny_root(tmp_path / "k", [(0, 3, "train")] * 5)
    urls = (root / "urls.txt").read_text().splitlines()
    urls[1] = urls[3] = ""                                                   # faces 1 and 3 withdrawn
    (root / "urls.txt").write_text("\n".join(urls) + "\n")
    ds = KaoKoreDataset(root, labels="none")
    assert ds.withdrawn == 2 and [r.image for r in ds.records] == ["00000000.jpg", "00000002.jpg", "00000004.jpg"]


def test_dataset_warns_about_missing_faces_and_about_broken_ones_each_alone(tmp_path):
    """Missing files alone warn (with 0 broken); broken files alone (check=True) warn too; a
    complete, decodable root is silent."""
    import warnings

    from kaogen.data.datasets import KaoKoreDataset

    root = _tiny_root(tmp_path / "k", [(0, 3, "train")] * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(KaoKoreDataset(root, labels="none", check=True)) == 3
    (root / "images_256" / "00000002.jpg").unlink()
    with pytest.warns(UserWarning, match="1 images missing and 0 broken"):
        assert len(KaoKoreDataset(root, labels="none")) == 2
    root = _tiny_root(tmp_path / "b", [(0, 3, "train")] * 3)
    (root / "images_256" / "00000001.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.warns(UserWarning, match="0 images missing and 1 broken"):
        assert len(KaoKoreDataset(root, labels="none", check=True)) == 2


def test_square_resize_crops_at_the_floor_of_half_the_excess_and_resizes_with_lanczos():
    """A 15 x 8 picture (excess 7) is cropped from column 3 (7 // 2), an 8 x 15 one from row 3;
    the resize is Pillow's LANCZOS (which differs from its BICUBIC default on this noise)."""
    import numpy as np
    from PIL import Image

    from kaogen.data.datasets import square_resize

    cols = np.repeat((np.arange(15, dtype=np.uint8) * 16)[None, :, None], 8, axis=0).repeat(3, axis=2)
    wide = Image.fromarray(cols)
    assert np.asarray(square_resize(wide, 8))[0, :, 0].tolist() == [16 * x for x in range(3, 11)]
    tall = Image.fromarray(np.ascontiguousarray(cols.transpose(1, 0, 2)))
    assert np.asarray(square_resize(tall, 8))[:, 0, 0].tolist() == [16 * y for y in range(3, 11)]
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    lanczos = noise.resize((8, 8), Image.Resampling.LANCZOS)
    assert lanczos.tobytes() != noise.resize((8, 8)).tobytes()
    assert square_resize(noise, 8).tobytes() == lanczos.tobytes()


def test_image_folder_default_resolution_is_256(tmp_path):
    from PIL import Image

    from kaogen.data.datasets import ImageFolderDataset

    Image.new("RGB", (40, 30), (1, 2, 3)).save(tmp_path / "a.png")
    assert ImageFolderDataset(tmp_path)[0]["image"].shape == (3, 256, 256)
